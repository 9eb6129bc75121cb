// Channel: framed Cap'n Proto messages over one byte stream (a socket, a pipe).
//
//   harrow::Channel channel(kj::mv(stream));  // or Channel(eventPort, kj::mv(fd))
//   capnp::MallocMessageBuilder out;
//   out.initRoot<wire::Message>().setCallId(1);
//   channel.send(out);                        // queued; written at the end of this loop turn
//   co_await channel.flush();                 // optional: wait until it reached the kernel
//   KJ_IF_MAYBE(in, co_await channel.receive()) {
//     auto message = (*in)->getRoot<wire::Message>();
//   } else {
//     // the peer shut down its write side cleanly (EOF between two frames)
//   }
//
// Framing is Cap'n Proto's standard stream framing (see docs/PROTOCOL.md), so a channel talks to
// capnp::writeMessage()/readMessage() peers too.
//
// I/O: a channel over a socket (or any stream whose getFd() reports an fd), given the event port
// (ChannelOptions::eventPort, or the fd constructor), does its own I/O on that fd (runtime/fd_stream.h): the fd is watched for readability only, read() and sendmsg() are
// called directly, and write space is watched only while a write is blocked. That saves the
// wakeups KJ's fd streams cause on every write-space edge, and a syscall per message. Streams
// without an fd (in-memory pipes) go through the kj::AsyncIoStream interface.
//
// Writes are batched per burst of events: send() never writes; the first message queued on an
// idle channel schedules a write with kj::evalLast(), which runs once the events ready now have
// run and before the loop waits for I/O. A lone message thus still leaves in the same loop turn,
// while everything sent in that turn (100 returns, a window of stream items) leaves in one writev.
//
// Errors, all as kj::Exception:
//  - TransportClosed (isTransportClosed()): the stream failed: ECONNRESET, EOF inside a frame,
//    any other I/O error. Type DISCONNECTED.
//  - MalformedFrame (isMalformedFrame()): the peer sent something that is not a valid frame:
//    over maxFrameBytes, a bogus segment table, pointers that fail validation. Type FAILED. A frame
//    over the limit is described as harrow.MessageTooLarge (isMessageTooLarge() in
//    <harrow/engine/remote_error.h>); isMalformedFrame() is true for it as well. So it is for a
//    frame that fails its tag on a protected channel (protectFrames()), described as
//    harrow.AuthenticationFailed.
// After either, receive() keeps throwing the same error: the read side is unusable, because the
// stream is no longer at a frame boundary. Sending still works, so the owner may tell the peer
// why before it closes the channel.
//
// Cancellation: receive(), flush() and whenWritable() may be cancelled (KJ or scope
// cancellation) at any point without losing or corrupting data: the channel owns the stream I/O,
// callers only wait for it. Destroying the Channel first hands the stream, without waiting,
// whatever it takes at once of the messages waiting for the end of the loop turn (so a message
// sent just before is not lost); then it cancels in-flight I/O (KJ cancellation) and closes the
// stream; anything not yet written is dropped. As everywhere in KJ, promises a Channel returns
// must be completed or dropped before the Channel is destroyed.

#pragma once

#include <harrow/co/co.h>

#include <capnp/message.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/io.h>
#include <kj/refcount.h>
#include <kj/vector.h>

namespace harrow {

// True for the exception a channel throws when its transport broke (see above).
bool isTransportClosed(const kj::Exception& exception);

// True for the exception a channel throws when the peer sent a malformed frame.
bool isMalformedFrame(const kj::Exception& exception);

// Builds a TransportClosed exception: `why` says what happened.
kj::Exception transportClosed(kj::StringPtr why);

// The default frame limit: 64 MiB (docs/PROTOCOL.md, "Transport and framing").
constexpr size_t DEFAULT_MAX_FRAME_BYTES = 64u << 20;

// The size of `message` framed as Channel::send() frames it (segment table plus segments): what
// maxFrameBytes is compared with.
size_t frameBytes(capnp::MessageBuilder& message);

struct ChannelOptions {
  // The event loop's port. With it, a channel over a socket does its own I/O on the fd (below);
  // without it, it uses the stream's kj::AsyncIoStream interface. harrow's actors always pass it.
  kj::Maybe<kj::UnixEventPort&> eventPort;

  // Largest frame (segment table plus segments) either direction accepts. A larger incoming frame
  // is a MalformedFrame (harrow.MessageTooLarge); send() refuses to queue a larger one (the same
  // error). See also Channel::setMaxFrameBytes().
  size_t maxFrameBytes = DEFAULT_MAX_FRAME_BYTES;

  // Limits for reading received messages. Also applied while validating each frame on receipt.
  capnp::ReaderOptions readerOptions;

  // Walk every received message once, so that out-of-bounds or amplified pointers surface as a
  // MalformedFrame from receive() instead of an exception deep inside application code. Costs one
  // pass over each message.
  bool validate = true;

  // Backpressure: the channel counts as writable while fewer bytes than this are queued or being
  // written. send() never blocks; producers that may outrun the peer await whenWritable().
  size_t maxQueuedBytes = 1u << 20;

  // Size of the receive buffer; one read() fills it with as many frames as have arrived.
  size_t readBufferBytes = 64u << 10;
};

class FdStream;
class FrameSeal;
class SharedRing;

// The protocol's words for the shared-memory path (the engine's wire.capnp; docs/PROTOCOL.md,
// "Large frames through shared memory"): the channel moves the bytes, the engine says what the
// messages look like.
class SharedFrameCodec {
public:
  // Announces this side's new ring of `capacity` bytes (its fd travels with this message).
  virtual kj::Own<capnp::MessageBuilder> ringMessage(uint64_t capacity) = 0;
  // Stands for the frame of `length` bytes at `start` in this side's ring.
  virtual kj::Own<capnp::MessageBuilder> frameMessage(uint64_t start, uint64_t length) = 0;
  // Stands for the frame of `length` bytes at byte `start` of the sealed memfd that travels with
  // this message (<harrow/ipc/sealed_frame.h>): a frame too large for the ring.
  virtual kj::Own<capnp::MessageBuilder> fileMessage(uint64_t start, uint64_t length) = 0;
};

class Channel {
public:
  // Over `stream`. If it has an fd (getFd()) and this thread's event loop runs on a
  // kj::UnixEventPort (kj::setupAsyncIo()), the channel dup()s the fd, destroys `stream` (which
  // deregisters and, if it owned it, closes its fd) and does its own I/O on the dup. Only for
  // plain byte streams: a wrapper that transforms bytes must not report its inner fd.
  explicit Channel(kj::Own<kj::AsyncIoStream> stream, ChannelOptions options = {});

  // Over a socket (or pipe) fd the channel takes; made non-blocking and close-on-exec.
  Channel(kj::UnixEventPort& eventPort, kj::AutoCloseFd fd, ChannelOptions options = {});

  ~Channel() noexcept(false);
  KJ_DISALLOW_COPY(Channel);

  // ---- receiving ----

  // The next message, or nullptr on a clean EOF at a frame boundary. Throws TransportClosed or
  // MalformedFrame as described at the top. One receive() at a time. The reader points into the
  // channel's receive buffer (no copy) and keeps that buffer alive for as long as it lives.
  Co<kj::Maybe<kj::Own<capnp::MessageReader>>> receive();

  // The next message if a whole frame has already been read into the buffer: what receive()
  // would return at once, without a coroutine or a loop turn. nullptr if none is there (nor an
  // EOF or error: receive() reports those). Throws MalformedFrame as receive() does.
  kj::Maybe<kj::Own<capnp::MessageReader>> receiveBuffered();

  // ---- sending ----

  // Queues a copy of `message`. Everything queued goes out together (one writev) at the end of
  // the current loop turn, or, while a write is blocked, as soon as it completes. Throws the
  // transport's error if an earlier write failed, and refuses frames over maxFrameBytes and sends
  // after shutdownWrite().
  void send(capnp::MessageBuilder& message);

  // Same, without the copy: the channel keeps `message` until it has been written. A small frame
  // (up to 1 KiB) is copied all the same, and `message` freed at once.
  void send(kj::Own<capnp::MessageBuilder> message);

  // Resolves once everything queued before the call has been handed to the stream. Throws
  // TransportClosed if a write failed.
  kj::Promise<void> flush();

  // Bytes queued or being written.
  size_t queuedBytes() const { return queuedTotal - writtenTotal; }
  bool isWritable() const { return queuedBytes() < options.maxQueuedBytes; }

  // Bytes this channel has written and received (whole frames, framing included): plain
  // counters for the metrics (<harrow/engine/metrics.h>).
  uint64_t bytesSent() const { return writtenTotal; }
  uint64_t bytesReceived() const { return receivedTotal; }

  // Resolves when isWritable() (at once if it already is). Throws TransportClosed if a write
  // failed.
  kj::Promise<void> whenWritable();

  // Flushes, then shuts down the write side: the peer's receive() returns nullptr once it has read
  // everything. Later send() calls throw. Receiving continues to work.
  Co<void> shutdownWrite();

  // The underlying stream, e.g. for getsockopt(). Do not read or write it directly. For a channel
  // doing its own fd I/O (see above) this is a harrow::FdStream over the channel's fd, not the
  // stream the channel was built from.
  kj::AsyncIoStream& getStream() { return *stream; }

  // True if the channel does its own I/O on an fd (see above).
  bool usesFd() const { return fdStream != nullptr; }
  // Bytes held for reading: it follows what has arrived, never what a segment table claims.
  size_t bufferBytes() const;
  // Received bytes moved inside this process after they were read (compaction, a fresh buffer
  // while readers hold the old one): tests check it stays linear in what arrived.
  uint64_t bytesMovedOnReceipt() const { return receiveBytesMoved; }

  // The frame limit (ChannelOptions::maxFrameBytes), e.g. once the peers have agreed on one in
  // their hellos. Applies to frames received from now on and to every later send(). The reader
  // traversal limit grows with it (it is never below the frame's size in words), so that a frame
  // within the limit can also be read in full.
  void setMaxFrameBytes(size_t bytes);
  size_t maxFrameBytes() const { return options.maxFrameBytes; }

  // ---- docs/PROTOCOL.md, "Frame protection" ----

  // From now on every frame sent is followed by a tag from `outgoing` (and its segments are
  // encrypted, in ENCRYPT mode: <harrow/ipc/frame_seal.h>), and every frame received must carry
  // one that `incoming` accepts: one that does not (injected, dropped, reordered, replayed or
  // modified on the way) ends the read side as a malformed frame does. The handshake turns it on
  // once both proofs checked out, between two frames each way. Not with shared memory.
  void protectFrames(kj::Own<FrameSeal> outgoing, kj::Own<FrameSeal> incoming);
  bool framesProtected() const { return sealIn != nullptr; }

  // True for a channel over a Unix socket whose other end is a process of this user
  // (SO_PEERCRED): what may go without tags (docs/PROTOCOL.md, "Threat model").
  bool isSameUserUnixSocket() const;

  // ---- docs/PROTOCOL.md, "Large frames through shared memory" ----
  //
  // Over a Unix socket, frames above a threshold can go through a ring of shared memory (see
  // <harrow/ipc/shared_ring.h>) while the socket carries a small reference in their place, in
  // order with everything else. The engine turns it on once both hellos said they can.

  // True for a channel doing its own I/O on a Unix socket: fds can be passed.
  bool canPassFds() const;

  // From now on, frames sent with send(kj::Own<...>) of more than `threshold` bytes (and at most
  // `ringBytes`) go through this side's ring, created (and announced through `codec`)
  // with the first of them. When the ring is full
  // they wait, in order with everything sent after them, until the peer frees space
  // (sharedSpaceFreed()); they count as queued bytes (backpressure) meanwhile. Larger frames go
  // each in a sealed memfd of its own (<harrow/ipc/sealed_frame.h>), sealed (or, unless it was
  // built in one by a FrameFileBuilder, written) by send() itself, the reference and the fd
  // queued in its place (the socket, if no memfd can be made); on an idle channel they are
  // written at once rather than at the end of the loop turn.
  void sendLargeFramesThroughSharedMemory(kj::Own<SharedFrameCodec> codec, size_t threshold,
                                          size_t ringBytes);
  // Frames of more than this many bytes go as sealed memfds (see above); 0 while shared memory
  // is off. What FrameFileBuilder::allocateLargeSegmentsInFiles() wants.
  size_t sealedFrameBytes() const;
  // The peer freed space in this side's ring: writes waiting for it go on.
  void sharedSpaceFreed();

  // The peer announced its ring: map it (with the fd that came with the announcement). Throws
  // MalformedFrame if there is no such fd, a ring already, or the fd is no sealed memfd of at
  // least `capacity` bytes.
  void adoptSharedRing(uint64_t capacity);
  // The peer's frame at {start, length} of its ring, copied out and checked as a frame read from
  // the socket would be (size limit, segment table, validation). Throws MalformedFrame if the
  // reference is not the next frame, does not fit, or the frame is malformed. `notify` is set if
  // the peer waits for space: tell it (its sharedSpaceFreed()).
  kj::Own<capnp::MessageReader> receiveShared(uint64_t start, uint64_t length, bool& notify);
  // The peer's frame of `length` bytes at byte `start` of the sealed memfd that came with its
  // reference, mapped and read in place (no copy: the seals keep it from changing). The frame
  // limit is checked before anything is mapped, then the fd's seals and size, then the frame as
  // if read from the socket. Throws MalformedFrame (or MessageTooLarge) for a reference without
  // its fd, an fd that is not such a memfd, or a malformed frame; the fd is closed on every path.
  kj::Own<capnp::MessageReader> receiveSealedFrame(uint64_t start, uint64_t length);

  // What went through shared memory on this channel (tests, benchmarks).
  struct SharedMemoryCounts {
    uint64_t framesSent = 0;      // through this side's ring
    uint64_t framesReceived = 0;  // through the peer's ring
    uint64_t waitsForSpace = 0;   // times a frame waited for this side's ring to have room
    uint64_t filesSent = 0;       // of framesSent: in a sealed memfd of their own
    uint64_t filesReceived = 0;   // of framesReceived: the same
  };
  const SharedMemoryCounts& sharedMemoryCounts() const { return sharedCounts; }

private:
  class Buffer;
  struct Outgoing {
    // One framed message: the pieces to write, each keeping alive what it points into.
    kj::Array<kj::ArrayPtr<const kj::byte>> pieces;
    size_t bytes;
    // On a protected channel: the room for the frame's tag, reserved when the frame was made
    // (after its segment table, or after its copy; the last piece covers it) and written by
    // sealOutgoing(), so a tag costs no allocation of its own. `copy`: the frame copied whole
    // into a buffer of its own (see Layout), which is sealed in place.
    kj::byte* tagSpace = nullptr;
    kj::ArrayPtr<kj::byte> copy;
    // A message to go through the ring: `pieces` is empty until it has a place there.
    kj::Maybe<kj::Own<capnp::MessageBuilder>> large;
    kj::Maybe<kj::AutoCloseFd> fd;  // passed with these bytes (SCM_RIGHTS)
  };
  struct Waiter {
    uint64_t target;  // resolves when writtenTotal reaches this
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };

  kj::Own<kj::AsyncIoStream> stream;
  FdStream* fdStream = nullptr;  // `stream`, if the channel does its own fd I/O
  ChannelOptions options;

  // --- read side ---
  kj::Own<Buffer> buffer;       // frames arrive here; [begin, end) is unconsumed
  size_t begin = 0;
  size_t end = 0;
  bool eof = false;
  bool receiving = false;
  kj::Maybe<kj::Exception> readError;  // once set, receive() throws it forever
  // Streams without an fd: the read in flight. Owned here, not by receive(), so that cancelling
  // receive() cannot drop bytes the stream already handed over; the next receive() picks it up.
  // (The fd path reads synchronously and only waits for readability, which loses nothing.)
  kj::Maybe<kj::ForkedPromise<void>> pendingRead;

  // --- write side ---
  kj::Vector<Outgoing> queue;          // waiting for the next write
  uint64_t queuedTotal = 0;            // bytes ever queued
  uint64_t writtenTotal = 0;           // bytes ever written
  uint64_t receivedTotal = 0;          // bytes of whole frames ever received
  uint64_t receiveBytesMoved = 0;      // see bytesMovedOnReceipt()
  bool writing = false;                // a write is scheduled (see below) or in flight
  bool writeScheduled = false;         // the write waits in kj::evalLast() for the turn's end
  bool writeShut = false;
  kj::Maybe<kj::Exception> writeError;
  kj::Vector<Waiter> flushWaiters;     // ordered by target
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> writableWaiters;
  // --- shared memory ---
  kj::Maybe<kj::Own<SharedFrameCodec>> sharedCodec;  // set: large frames go through `ownRing`
  size_t sharedThreshold = 0;
  size_t sharedRingBytes = 0;
  kj::Maybe<kj::Own<SharedRing>> ownRing;    // ours, written; created with the first large frame
  kj::Maybe<kj::Own<SharedRing>> peerRing;   // the peer's, read
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> spaceWaiter;
  SharedMemoryCounts sharedCounts;
  bool sealedFramesFailed = false;  // a memfd could not be made: the warning was logged
  // --- frame protection ---
  kj::Maybe<kj::Own<FrameSeal>> sealOut;
  kj::Maybe<kj::Own<FrameSeal>> sealIn;

  kj::Maybe<kj::Promise<void>> writeTask;  // declared last: destroyed (cancelled) first

  // Read side.
  kj::Maybe<kj::Own<capnp::MessageReader>> tryParse(size_t& needed);
  kj::ArrayPtr<kj::byte> makeRoom(size_t needed);
  size_t standardBufferBytes() const;
  bool readNow(size_t needed);
  kj::Promise<void> readMore(size_t needed);
  [[noreturn]] void failRead(kj::Exception&& exception);

  // Write side.
  void checkFrameSize(size_t bytes);
  void sealOutgoing(Outgoing& outgoing);
  void enqueue(Outgoing&& outgoing);
  kj::Promise<void> writeQueued();
  kj::Promise<void> written(uint64_t bytes);
  kj::Array<kj::ArrayPtr<const kj::byte>> takeBatch(kj::Vector<Outgoing>& batch, uint64_t& bytes,
                                                    size_t count);
  size_t placeLargeFrames();
  // How a frame is laid out for writing: its segments where they are (PLAIN); the same with room
  // for a tag after them (TAG_ROOM); or copied whole, tag room included, into one piece
  // (WHOLE_COPY: small frames on a protected channel, where a copy is cheaper than the iovecs
  // and MAC updates of separate pieces, and every frame in ENCRYPT mode, which must not encrypt
  // the sender's message).
  enum class Layout { PLAIN, TAG_ROOM, WHOLE_COPY };
  Layout layoutFor(size_t bytes) const;
  static Outgoing frame(kj::Own<capnp::MessageBuilder> message, size_t bytes,
                        Layout layout = Layout::PLAIN);
  static Outgoing copied(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments, size_t bytes,
                         size_t tagBytes);
  Outgoing sealedFrame(kj::Own<capnp::MessageBuilder> message, size_t bytes);
  size_t withinFdLimit(size_t ready) const;
  // The readers receive() and the shared-memory path hand out, each holding what keeps its
  // frame's bytes (`keep`: the receive buffer, a private copy, a mapping) in the same allocation.
  template <typename Keep>
  kj::Own<capnp::MessageReader> sharedFrameReader(kj::ArrayPtr<const capnp::word> words, Keep keep);
  template <typename Keep>
  kj::Own<capnp::MessageReader> checkedReader(kj::ArrayPtr<const capnp::word> words,
                                              size_t frameBytes, Keep keep,
                                              kj::Maybe<kj::Exception>& error);
  void writeFailed(kj::Exception&& exception);
  void wakeWaiters();
};

}  // namespace harrow
