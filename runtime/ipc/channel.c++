#include <harrow/ipc/channel.h>

#include <harrow/co/errors.h>
#include <harrow/ipc/fd_stream.h>
#include <harrow/ipc/frame_seal.h>
#include <harrow/ipc/sealed_frame.h>
#include <harrow/ipc/shared_ring.h>

#include <capnp/any.h>
#include <capnp/serialize.h>
#include <kj/debug.h>

#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

namespace harrow {
namespace {

// ErrorKind::AUTHENTICATION_FAILED (runtime/co/errors.h), for a frame rather than a handshake:
// its message starts with this.
constexpr kj::StringPtr FRAME_TAG_FAILED = "a frame failed its tag"_kj;

bool isFrameTagFailure(const kj::Exception& exception) {
  return is(exception, ErrorKind::AUTHENTICATION_FAILED) &&
         exception.getDescription()
             .slice(errorPrefix(ErrorKind::AUTHENTICATION_FAILED).size())
             .startsWith(FRAME_TAG_FAILED);
}

// capnp's own readers refuse more segments than this; so do we, before allocating anything.
constexpr uint32_t MAX_SEGMENTS = 512;

// Fds passed with one write at most (see Channel::withinFdLimit()).
constexpr size_t FDS_PER_WRITE = FdStream::MAX_RECEIVED_FDS / 2;

kj::Exception frameTooLarge(kj::StringPtr why) {
  return makeError(ErrorKind::MESSAGE_TOO_LARGE, why);
}

kj::Exception malformedFrame(kj::StringPtr why) {
  return makeError(ErrorKind::MALFORMED_FRAME, why);
}

uint32_t readLE32(const kj::byte* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

void writeLE32(kj::byte* p, uint32_t value) {
  p[0] = value;
  p[1] = value >> 8;
  p[2] = value >> 16;
  p[3] = value >> 24;
}

// The segment table: a 32-bit segment count minus one, a 32-bit size in words per segment, and
// padding to a whole word.
size_t segmentTableBytes(size_t segmentCount) { return (segmentCount / 2 + 1) * sizeof(capnp::word); }

size_t roundUpToWord(size_t bytes) {
  return (bytes + sizeof(capnp::word) - 1) & ~(sizeof(capnp::word) - 1);
}

// Walks every pointer of a message through the ordinary reader API, which bounds-checks each
// pointer and charges the reader's traversal limit and nesting limit. (AnyPointer::targetSize()
// would be shorter but charges no traversal limit, so a message whose pointers share targets
// could make it run for exponential time.)
void walk(capnp::AnyPointer::Reader pointer);

void walkPointers(capnp::List<capnp::AnyPointer>::Reader pointers) {
  for (auto pointer : pointers) walk(pointer);
}

void walk(capnp::AnyPointer::Reader pointer) {
  switch (pointer.getPointerType()) {
    case capnp::PointerType::NULL_:
      return;
    case capnp::PointerType::STRUCT:
      walkPointers(pointer.getAs<capnp::AnyStruct>().getPointerSection());
      return;
    case capnp::PointerType::LIST: {
      auto list = pointer.getAs<capnp::AnyList>();
      switch (list.getElementSize()) {
        case capnp::ElementSize::POINTER:
          walkPointers(list.as<capnp::List<capnp::AnyPointer>>());
          return;
        case capnp::ElementSize::INLINE_COMPOSITE: {
          auto structs = list.as<capnp::List<capnp::AnyStruct>>();
          // All elements share one layout: without pointers there is nothing below them.
          if (structs.size() == 0 || structs[0].getPointerSection().size() == 0) return;
          for (auto element : structs) walkPointers(element.getPointerSection());
          return;
        }
        default:
          return;  // plain data: the bounds check when reading the pointer covered it
      }
    }
    case capnp::PointerType::CAPABILITY:
      // harrow messages carry no capability table, so a capability pointer is always bogus.
      KJ_FAIL_REQUIRE("message contains a capability pointer");
  }
}

// A reader over a frame and what keeps the frame's bytes alive, in one allocation (a reader with
// an attachment was two per received message).
template <typename Keep>
class FrameReader final : public capnp::FlatArrayMessageReader {
public:
  FrameReader(kj::ArrayPtr<const capnp::word> words, capnp::ReaderOptions options, Keep keep)
      : capnp::FlatArrayMessageReader(words, options), keep(kj::mv(keep)) {}

private:
  Keep keep;
};

}  // namespace

bool isTransportClosed(const kj::Exception& exception) {
  return is(exception, ErrorKind::TRANSPORT_CLOSED);
}

bool isMalformedFrame(const kj::Exception& exception) {
  // Only receive() raises these (send() raises MessageTooLarge too, but never sets readError).
  return is(exception, ErrorKind::MALFORMED_FRAME) || is(exception, ErrorKind::MESSAGE_TOO_LARGE) ||
         isFrameTagFailure(exception);
}

size_t frameBytes(capnp::MessageBuilder& message) {
  return capnp::computeSerializedSizeInWords(message.getSegmentsForOutput()) * sizeof(capnp::word);
}

kj::Exception transportClosed(kj::StringPtr why) {
  return makeError(ErrorKind::TRANSPORT_CLOSED, why);
}

// Received bytes. Message readers handed out by receive() point into a Buffer and hold a
// reference to it, so the channel never overwrites bytes a reader may still look at: it only
// appends after `end`, and moves data (compacts, grows in place) only while nobody else holds
// the buffer. A buffer larger than the standard one (a large frame's) is mapped memory that grows
// in place with mremap(): the kernel moves page tables, no bytes, so a frame of any size arrives
// with one copy (the read) and at most its own size in memory.
class Channel::Buffer final : public kj::Refcounted {
public:
  Buffer(size_t bytes, size_t standard) : length(bytes) {
    if (bytes <= standard) {
      heap = kj::heapArray<capnp::word>(bytes / sizeof(capnp::word));
      start = heap.asBytes().begin();
    } else {
      void* mapping = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0);
      if (mapping == MAP_FAILED) KJ_FAIL_SYSCALL("mmap", errno, bytes);
      start = static_cast<kj::byte*>(mapping);
    }
  }
  ~Buffer() noexcept(false) {
    if (heap == nullptr) munmap(start, length);
  }
  KJ_DISALLOW_COPY(Buffer);

  kj::byte* bytes() { return start; }
  size_t size() const { return length; }
  kj::ArrayPtr<const capnp::word> wordsAt(size_t offset, size_t bytes) const {
    return kj::arrayPtr(reinterpret_cast<const capnp::word*>(start + offset),
                        bytes / sizeof(capnp::word));
  }
  bool canGrowInPlace() const { return heap == nullptr && !isShared(); }
  // Only while canGrowInPlace(): the contents stay, the address may change.
  void grow(size_t bytes) {
    void* moved = mremap(start, length, bytes, MREMAP_MAYMOVE);
    if (moved == MAP_FAILED) KJ_FAIL_SYSCALL("mremap", errno, length, bytes);
    start = static_cast<kj::byte*>(moved);
    length = bytes;
  }
  using kj::Refcounted::isShared;

private:
  kj::Array<capnp::word> heap;  // a standard buffer: word-aligned, so frames parse in place
  kj::byte* start;              // heap's bytes, or a page-aligned mapping
  size_t length;
};

Channel::Channel(kj::Own<kj::AsyncIoStream> streamParam, ChannelOptions options)
    : stream(FdStream::adopt(kj::mv(streamParam), options.eventPort)),
      fdStream(dynamic_cast<FdStream*>(stream.get())), options(options),
      buffer(kj::refcounted<Buffer>(standardBufferBytes(), standardBufferBytes())) {}

Channel::Channel(kj::UnixEventPort& eventPort, kj::AutoCloseFd fd, ChannelOptions options)
    : Channel(kj::heap<FdStream>(eventPort, kj::mv(fd)), options) {}

Channel::~Channel() noexcept(false) {
  if (writeScheduled && !queue.empty()) {
    // Messages waiting for the end of the turn: hand the stream what it takes now, as send() did
    // when it wrote a lone message at once, so that send-then-close loses nothing.
    writeTask = nullptr;
    kj::Vector<Outgoing> batch;
    uint64_t bytes;
    if (sharedCodec != nullptr) kj::runCatchingExceptions([&]() { placeLargeFrames(); });
    for (auto& outgoing : queue) {
      // No room in the ring: these go inline rather than not at all.
      KJ_IF_MAYBE(large, outgoing.large) {
        outgoing = frame(kj::mv(*large), outgoing.bytes);
      }
    }
    kj::runCatchingExceptions([&]() {
      for (bool done = true; done && !queue.empty();) {
        auto pieces = takeBatch(batch, bytes, withinFdLimit(queue.size()));
        if (fdStream != nullptr) {
          size_t index = 0;
          size_t offset = 0;
          done = fdStream->writeNow(pieces, index, offset);  // the rest, if any, is dropped
        } else {
          auto ignored = stream->write(pieces);  // an fd stream writes before returning
        }
      }
    });
  }
  // KJ cancellation of in-flight I/O, before the buffer and queue it points into go away.
  writeTask = nullptr;
  pendingRead = nullptr;
}

// ---------------------------------------------------------------------------------------------
// Receiving

Co<kj::Maybe<kj::Own<capnp::MessageReader>>> Channel::receive() {
  KJ_IF_MAYBE(error, readError) kj::throwFatalException(kj::cp(*error));
  KJ_REQUIRE(!receiving, "Channel::receive() called while another receive() is waiting");
  receiving = true;
  KJ_DEFER(receiving = false);

  for (;;) {
    size_t needed = 0;
    KJ_IF_MAYBE(message, tryParse(needed)) co_return kj::mv(*message);
    if (eof) {
      if (begin == end) co_return nullptr;
      failRead(transportClosed(kj::str("EOF in the middle of a frame (", end - begin, " of ",
                                       needed, " bytes received)")));
    }
    if (fdStream != nullptr) {
      // Read what is there; if nothing is, wait for readability. Cancellation while waiting
      // loses nothing: no bytes are in flight.
      if (!readNow(needed)) co_await fdStream->whenReadable();
      continue;
    }
    co_await readMore(needed);
    pendingRead = nullptr;
    KJ_IF_MAYBE(error, readError) kj::throwFatalException(kj::cp(*error));
  }
}

kj::Maybe<kj::Own<capnp::MessageReader>> Channel::receiveBuffered() {
  KJ_REQUIRE(!receiving, "Channel::receiveBuffered() called while a receive() is waiting");
  if (readError != nullptr) return nullptr;
  size_t needed = 0;
  return tryParse(needed);
}

kj::Maybe<kj::Own<capnp::MessageReader>> Channel::tryParse(size_t& needed) {
  size_t available = end - begin;
  const kj::byte* frame = buffer->bytes() + begin;

  needed = sizeof(capnp::word);
  if (available < needed) return nullptr;
  uint64_t segmentCount = uint64_t(readLE32(frame)) + 1;
  if (segmentCount > MAX_SEGMENTS) {
    failRead(malformedFrame(kj::str("bogus segment table: ", segmentCount,
                                    " segments (at most ", MAX_SEGMENTS, ")")));
  }
  size_t tableBytes = segmentTableBytes(segmentCount);
  needed = tableBytes;
  if (available < needed) return nullptr;

  uint64_t frameBytes = tableBytes;
  for (uint64_t i = 0; i < segmentCount; i++) {
    frameBytes += uint64_t(readLE32(frame + 4 + 4 * i)) * sizeof(capnp::word);
  }
  if (frameBytes > options.maxFrameBytes) {
    failRead(frameTooLarge(kj::str("received a frame of ", frameBytes,
                                   " bytes, over this channel's limit of ",
                                   options.maxFrameBytes, " bytes")));
  }
  size_t tagBytes = sealIn == nullptr ? 0 : FrameSeal::TAG_BYTES;
  needed = frameBytes + tagBytes;
  if (available < needed) return nullptr;

  // The whole frame is here. It starts on a word boundary: the buffer does, and every frame (and
  // tag) is a whole number of words.
  KJ_IF_MAYBE(seal, sealIn) {
    kj::byte* bytes = buffer->bytes() + begin;
    if (!(*seal)->open(kj::arrayPtr(bytes, frameBytes), tableBytes, bytes + frameBytes)) {
      failRead(makeError(ErrorKind::AUTHENTICATION_FAILED, kj::str(
          FRAME_TAG_FAILED, " (frame ", (*seal)->frames() - 1, " from the peer, ", frameBytes,
          " bytes): it was injected, dropped, reordered, replayed or modified on the way")));
    }
  }
  auto words = buffer->wordsAt(begin, frameBytes);
  kj::Maybe<kj::Exception> error;
  auto reader = checkedReader(words, frameBytes, kj::addRef(*buffer), error);
  KJ_IF_MAYBE(e, error) failRead(kj::mv(*e));
  begin += frameBytes + tagBytes;
  receivedTotal += frameBytes + tagBytes;
  return reader;
}

// A reader over a whole frame, validated if the options say so; sets `error` instead if it fails.
template <typename Keep>
kj::Own<capnp::MessageReader> Channel::checkedReader(kj::ArrayPtr<const capnp::word> words,
                                                     size_t frameBytes, Keep keep,
                                                     kj::Maybe<kj::Exception>& error) {
  if (options.validate) {
    // A reader of its own, so that validation does not use up the traversal limit of the reader
    // the application gets.
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      capnp::FlatArrayMessageReader check(words, options.readerOptions);
      walk(check.getRoot<capnp::AnyPointer>());
    })) {
      error = malformedFrame(kj::str("message of ", frameBytes, " bytes failed validation: ",
                                     exception->getDescription()));
    }
  }
  return kj::heap<FrameReader<Keep>>(words, options.readerOptions, kj::mv(keep));
}

size_t Channel::standardBufferBytes() const {
  return roundUpToWord(kj::max(options.readBufferBytes, size_t(64)));
}

// Makes room towards a frame of `needed` bytes of which the buffer holds [begin, end): returns
// the free space after `end` (reads may fill it: later frames arrive with this one). The buffer
// is rearranged only once it is full, and grows with what has arrived (doubling), not with what
// the segment table claims: a peer that announces a 60 MB frame and sends nothing costs the
// standard buffer, not 60 MB (found by fuzzing, docs/FUZZING.md). Each byte is moved at most a
// constant number of times (none while a large buffer grows in place), so a frame of any size
// costs time linear in its size.
kj::ArrayPtr<kj::byte> Channel::makeRoom(size_t needed) {
  size_t available = end - begin;
  size_t standard = standardBufferBytes();
  if (available == 0 && buffer->size() > standard && needed <= standard) {
    // Left over from an earlier large frame: too large to keep around.
    buffer = kj::refcounted<Buffer>(standard, standard);
    begin = end = 0;
  } else if (available == 0 && !buffer->isShared()) {
    begin = end = 0;  // free compaction: the next frame starts at the front again
  } else if (end == buffer->size()) {
    // Full: slide the partial frame to the front, grow, or both.
    size_t want = roundUpToWord(kj::min(needed, kj::max(standard, available * 2)));
    if (!buffer->isShared() && (want <= buffer->size() || buffer->canGrowInPlace())) {
      // Nobody else looks at this buffer: rearrange it in place.
      if (begin > 0) {
        memmove(buffer->bytes(), buffer->bytes() + begin, available);
        receiveBytesMoved += available;
      }
      if (want > buffer->size()) buffer->grow(want);
    } else {
      // Readers still point into the old buffer (it dies with the last of them), or it is too
      // small for what comes next.
      auto fresh = kj::refcounted<Buffer>(kj::max(standard, want), standard);
      memcpy(fresh->bytes(), buffer->bytes() + begin, available);
      receiveBytesMoved += available;
      buffer = kj::mv(fresh);
    }
    begin = 0;
    end = available;
  }

  KJ_ASSERT(needed > available && end < buffer->size());
  return kj::arrayPtr(buffer->bytes() + end, buffer->size() - end);
}

size_t Channel::bufferBytes() const { return buffer->size(); }

// The fd path: one read() into the buffer. False if nothing could be read now.
bool Channel::readNow(size_t needed) {
  auto space = makeRoom(needed);
  kj::Maybe<size_t> count;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    count = fdStream->readNow(space.begin(), space.size());
  })) {
    failRead(transportClosed(exception->getDescription()));
  }
  KJ_IF_MAYBE(n, count) {
    if (*n == 0) {
      eof = true;
    } else {
      end += *n;
    }
    return true;
  }
  return false;
}

kj::Promise<void> Channel::readMore(size_t needed) {
  // A read left over from a cancelled receive() must finish first: its bytes land in the buffer.
  KJ_IF_MAYBE(read, pendingRead) return read->addBranch();

  auto space = makeRoom(needed);
  // What the frame lacks, or what fits until the buffer grows again.
  size_t minBytes = kj::min(needed - (end - begin), space.size());
  size_t maxBytes = space.size();
  // evalNow: a stream may fail synchronously (a socket's first read() syscall happens inside
  // tryRead()); that failure must take the same path as an asynchronous one.
  kj::byte* into = space.begin();
  auto& read = pendingRead.emplace(
      kj::evalNow([&]() { return stream->tryRead(into, minBytes, maxBytes); })
          .then([this, minBytes](size_t n) {
            end += n;
            if (n < minBytes) eof = true;  // tryRead returns short only at EOF
          }, [this](kj::Exception&& exception) {
            readError = transportClosed(exception.getDescription());
          })
          .eagerlyEvaluate(nullptr)
          .fork());
  return read.addBranch();
}

void Channel::failRead(kj::Exception&& exception) {
  readError = kj::cp(exception);
  kj::throwFatalException(kj::mv(exception));
}

// ---------------------------------------------------------------------------------------------
// Sending

// Frames up to this size are copied whole: on a protected channel (Layout::WHOLE_COPY), and by
// send(kj::Own<...>).
constexpr size_t SMALL_FRAME_BYTES = 1024;

void Channel::send(capnp::MessageBuilder& message) {
  auto segments = message.getSegmentsForOutput();
  KJ_REQUIRE(segments.size() > 0, "Channel::send() of a message with no root");
  size_t bytes = capnp::computeSerializedSizeInWords(segments) * sizeof(capnp::word);
  checkFrameSize(bytes);
  enqueue(copied(segments, bytes, sealOut == nullptr ? 0 : FrameSeal::TAG_BYTES));
}

void Channel::send(kj::Own<capnp::MessageBuilder> message) {
  auto segments = message->getSegmentsForOutput();
  KJ_REQUIRE(segments.size() > 0, "Channel::send() of a message with no root");
  size_t bytes = capnp::computeSerializedSizeInWords(segments) * sizeof(capnp::word);
  checkFrameSize(bytes);
  if (sharedCodec != nullptr && bytes > sharedThreshold && bytes <= sharedRingBytes) {
    // Placed in the ring when it is written (writeQueued()), so that a full ring holds it back
    // with everything after it.
    Outgoing outgoing;
    outgoing.bytes = bytes;
    outgoing.large = kj::mv(message);
    return enqueue(kj::mv(outgoing));
  }
  if (sharedCodec != nullptr && bytes > sealedFrameBytes()) {
    return enqueue(sealedFrame(kj::mv(message), bytes));
  }
  if (sealOut == nullptr && bytes <= SMALL_FRAME_BYTES) {
    // Copied, and the message freed now: the next one reuses its memory. Held until the turn's
    // write, a window of up to 1024 stream items outran glibc's per-thread cache (bench/README.md,
    // "Allocations per stream item").
    return enqueue(copied(segments, bytes, 0));
  }
  enqueue(frame(kj::mv(message), bytes, layoutFor(bytes)));
}

Channel::Layout Channel::layoutFor(size_t bytes) const {
  KJ_IF_MAYBE (seal, sealOut) {
    return (*seal)->mode() == FrameSeal::ENCRYPT || bytes <= SMALL_FRAME_BYTES ? Layout::WHOLE_COPY
                                                                               : Layout::TAG_ROOM;
  }
  return Layout::PLAIN;
}

// `message`'s frame laid out as `layout` says. Apart from WHOLE_COPY: a segment table of its own
// (followed by the tag's room, the last piece, with TAG_ROOM), then the message's segments.
Channel::Outgoing Channel::frame(kj::Own<capnp::MessageBuilder> message, size_t bytes,
                                 Layout layout) {
  auto segments = message->getSegmentsForOutput();
  if (layout == Layout::WHOLE_COPY) return copied(segments, bytes, FrameSeal::TAG_BYTES);
  size_t tableBytes = segmentTableBytes(segments.size());
  size_t tagBytes = layout == Layout::TAG_ROOM ? FrameSeal::TAG_BYTES : 0;
  auto table = kj::heapArray<kj::byte>(tableBytes + tagBytes);
  memset(table.begin(), 0, tableBytes);
  writeLE32(table.begin(), segments.size() - 1);
  for (size_t i = 0; i < segments.size(); i++) {
    writeLE32(table.begin() + 4 + 4 * i, segments[i].size());
  }
  auto pieces = kj::heapArrayBuilder<kj::ArrayPtr<const kj::byte>>(segments.size() + 1 +
                                                                   (tagBytes == 0 ? 0 : 1));
  pieces.add(table.slice(0, tableBytes));
  for (auto segment : segments) pieces.add(segment.asBytes());
  Outgoing outgoing;
  if (tagBytes > 0) {
    outgoing.tagSpace = table.begin() + tableBytes;
    pieces.add(table.slice(tableBytes, table.size()));
  }
  outgoing.pieces = pieces.finish().attach(kj::mv(table), kj::mv(message));
  outgoing.bytes = bytes;
  return outgoing;
}

// The frame of `segments` copied into one piece of its own, followed by `tagBytes` of room for
// its tag.
Channel::Outgoing Channel::copied(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments,
                                  size_t bytes, size_t tagBytes) {
  auto flat = kj::heapArray<kj::byte>(bytes + tagBytes);
  kj::ArrayOutputStream out(flat);
  capnp::writeMessage(out, segments);
  Outgoing outgoing;
  if (tagBytes > 0) {
    outgoing.tagSpace = flat.begin() + bytes;
    outgoing.copy = flat.slice(0, bytes);
  }
  auto pieces = kj::heapArray<kj::ArrayPtr<const kj::byte>>(1);
  pieces[0] = flat.asPtr();
  outgoing.pieces = pieces.attach(kj::mv(flat));
  outgoing.bytes = bytes;
  return outgoing;
}

void Channel::checkFrameSize(size_t bytes) {
  if (bytes > options.maxFrameBytes) {
    kj::throwFatalException(frameTooLarge(kj::str("a frame of ", bytes,
        " bytes is over this channel's limit of ", options.maxFrameBytes, " bytes")));
  }
}

void Channel::setMaxFrameBytes(size_t bytes) {
  options.maxFrameBytes = bytes;
  uint64_t words = bytes / sizeof(capnp::word);
  if (options.readerOptions.traversalLimitInWords < words) {
    options.readerOptions.traversalLimitInWords = words;
  }
}

void Channel::enqueue(Outgoing&& outgoing) {
  KJ_IF_MAYBE(error, writeError) kj::throwFatalException(kj::cp(*error));
  KJ_REQUIRE(!writeShut, "Channel::send() after shutdownWrite()");
  if (sealOut != nullptr) sealOutgoing(outgoing);  // in send order: the tags count frames
  KJ_ASSERT(outgoing.tagSpace == nullptr, "room for a tag on a frame that is not sealed");
  bool sealedFile = outgoing.fd != nullptr;  // only sealedFrame() queues an fd with a message
  queuedTotal += outgoing.bytes;
  queue.add(kj::mv(outgoing));
  // The first message on an idle channel schedules the write for the end of this loop turn, so
  // that whatever else this turn's events send leaves with it in one writev. Messages queued
  // behind a blocked write leave together once it completes.
  if (!writing) {
    writing = true;
    if (sealedFile) {
      // A frame in a sealed memfd of its own leaves at once, alone: its peer waits for it (tens
      // of milliseconds of copying went into it), while what this turn does next (often freeing
      // a large frame received, 5 ms for 64 MiB) need not come first.
      writeTask = kj::evalNow([this]() { return writeQueued(); }).eagerlyEvaluate(nullptr);
    } else {
      writeScheduled = true;
      writeTask = kj::evalLast([this]() { return writeQueued(); }).eagerlyEvaluate(nullptr);
    }
  }
}

kj::Array<kj::ArrayPtr<const kj::byte>> Channel::takeBatch(kj::Vector<Outgoing>& batch,
                                                           uint64_t& bytes, size_t count) {
  if (count == queue.size()) {
    batch = kj::mv(queue);
    queue = kj::Vector<Outgoing>();
  } else {
    batch = kj::Vector<Outgoing>(count);
    kj::Vector<Outgoing> rest(queue.size() - count);
    for (size_t i = 0; i < queue.size(); i++) (i < count ? batch : rest).add(kj::mv(queue[i]));
    queue = kj::mv(rest);
  }
  size_t pieceCount = 0;
  bytes = 0;
  for (auto& outgoing : batch) {
    pieceCount += outgoing.pieces.size();
    bytes += outgoing.bytes;
  }
  auto pieces = kj::heapArrayBuilder<kj::ArrayPtr<const kj::byte>>(pieceCount);
  for (auto& outgoing : batch) {
    pieces.addAll(outgoing.pieces);
    KJ_IF_MAYBE (fd, outgoing.fd) {
      // With the batch's first bytes: no later than the message it belongs to.
      if (fdStream != nullptr) fdStream->sendFdWithNextWrite(kj::mv(*fd));
    }
  }
  return pieces.finish();
}

// How many of the first `ready` queued messages go in one write: all, unless they carry more
// than FDS_PER_WRITE fds. A write's fds go with its first sendmsg(), so each reaches the peer no
// later than the message it belongs to; the peer takes them as it handles those messages and
// reads on only once no whole frame is left, so it never holds more than two writes' worth
// (FdStream::MAX_RECEIVED_FDS; the kernel ends a read after the bytes that carried fds).
size_t Channel::withinFdLimit(size_t ready) const {
  size_t fds = 0;
  for (size_t i = 0; i < ready; i++) {
    if (queue[i].fd != nullptr && ++fds > FDS_PER_WRITE) return i;
  }
  return ready;
}

kj::Promise<void> Channel::writeQueued() {
  writeScheduled = false;
  size_t ready = queue.size();
  if (sharedCodec != nullptr) {
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { ready = placeLargeFrames(); })) {
      // No ring could be made (out of fds or memory): large frames go by the socket from now
      // on, as if shared memory had never been agreed (the peer takes both).
      KJ_LOG(WARNING, "no shared-memory ring; large frames go by the socket", *exception);
      sharedCodec = nullptr;
      for (auto& outgoing : queue) {
        KJ_IF_MAYBE(large, outgoing.large) outgoing = frame(kj::mv(*large), outgoing.bytes);
      }
      ready = queue.size();
    }
    if (ready == 0) {
      // The first message waits for ring space; `writing` stays set, so later sends queue up
      // behind it. The peer's sharedMemoryFreed (sharedSpaceFreed()) resumes.
      ++sharedCounts.waitsForSpace;
      auto paf = kj::newPromiseAndFulfiller<void>();
      spaceWaiter = kj::mv(paf.fulfiller);
      return paf.promise.then([this]() { return writeQueued(); });
    }
  }
  kj::Vector<Outgoing> batch;
  uint64_t bytes;
  auto pieces = takeBatch(batch, bytes, withinFdLimit(ready));

  if (fdStream != nullptr) {
    // Whatever the kernel takes now; only a blocked write leaves a promise behind.
    size_t index = 0;
    size_t offset = 0;
    bool done = false;
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      done = fdStream->writeNow(pieces, index, offset);
    })) {
      writeFailed(transportClosed(exception->getDescription()));
      return kj::READY_NOW;
    }
    if (!done) {
      auto rest = fdStream->writeLater(pieces, index, offset);
      return rest.attach(kj::mv(pieces), kj::mv(batch))
          .then([this, bytes]() { return written(bytes); },
                [this](kj::Exception&& exception) -> kj::Promise<void> {
                  writeFailed(transportClosed(exception.getDescription()));
                  return kj::READY_NOW;
                });
    }
    return written(bytes);
  }

  // KJ wants the pieces (and what they point at) to stay valid until the write completes.
  auto write = kj::evalNow([&]() { return stream->write(pieces); });  // see readMore()
  return write.attach(kj::mv(pieces), kj::mv(batch))
      .then([this, bytes]() { return written(bytes); },
            [this](kj::Exception&& exception) -> kj::Promise<void> {
              writeFailed(transportClosed(exception.getDescription()));
              return kj::READY_NOW;
            });
}

kj::Promise<void> Channel::written(uint64_t bytes) {
  writtenTotal += bytes;
  wakeWaiters();
  if (queue.empty()) {
    writing = false;
    return kj::READY_NOW;
  }
  // Sent while the write was blocked (or, for a stream without an fd, in flight): these leave
  // together at the end of this turn, with whatever else it sends.
  writeScheduled = true;
  return kj::evalLast([this]() { return writeQueued(); });
}

void Channel::writeFailed(kj::Exception&& exception) {
  writing = false;
  writeScheduled = false;
  queue.clear();
  writeError = kj::cp(exception);
  for (auto& waiter : flushWaiters) waiter.fulfiller->reject(kj::cp(exception));
  flushWaiters.clear();
  for (auto& waiter : writableWaiters) waiter->reject(kj::cp(exception));
  writableWaiters.clear();
}

void Channel::wakeWaiters() {
  size_t done = 0;
  while (done < flushWaiters.size() && flushWaiters[done].target <= writtenTotal) {
    flushWaiters[done++].fulfiller->fulfill();
  }
  if (done > 0) {
    kj::Vector<Waiter> rest(flushWaiters.size() - done);
    for (size_t i = done; i < flushWaiters.size(); i++) rest.add(kj::mv(flushWaiters[i]));
    flushWaiters = kj::mv(rest);
  }
  if (isWritable()) {
    for (auto& waiter : writableWaiters) waiter->fulfill();
    writableWaiters.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// Frame protection

void Channel::protectFrames(kj::Own<FrameSeal> outgoing, kj::Own<FrameSeal> incoming) {
  KJ_REQUIRE(sharedCodec == nullptr, "frame protection and shared memory do not mix");
  sealOut = kj::mv(outgoing);
  sealIn = kj::mv(incoming);
}

// Writes the frame's tag into the room reserved for it (tagSpace): over its copy if it has one
// (encrypting that in place first, in ENCRYPT mode), else over its pieces but the last.
void Channel::sealOutgoing(Outgoing& outgoing) {
  auto& seal = *KJ_ASSERT_NONNULL(sealOut);
  KJ_REQUIRE(outgoing.large == nullptr, "frame protection and shared memory do not mix");
  KJ_ASSERT(outgoing.tagSpace != nullptr, "a frame made without room for its tag");
  if (seal.mode() == FrameSeal::ENCRYPT) {
    KJ_ASSERT(outgoing.copy.size() == outgoing.bytes, "an encrypted frame is sealed in a copy");
    size_t segmentCount = size_t(readLE32(outgoing.copy.begin())) + 1;
    seal.seal(outgoing.copy, segmentTableBytes(segmentCount), outgoing.tagSpace);
  } else if (outgoing.copy != nullptr) {
    kj::ArrayPtr<const kj::byte> whole = outgoing.copy;
    seal.tag(kj::arrayPtr(&whole, 1), outgoing.tagSpace);
  } else {
    seal.tag(outgoing.pieces.slice(0, outgoing.pieces.size() - 1), outgoing.tagSpace);
  }
  outgoing.tagSpace = nullptr;
  outgoing.copy = nullptr;
  outgoing.bytes += FrameSeal::TAG_BYTES;
}

bool Channel::isSameUserUnixSocket() const {
  KJ_IF_MAYBE(fd, stream->getFd()) {
    struct sockaddr_storage address;
    socklen_t addressLength = sizeof(address);
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    return getsockname(*fd, reinterpret_cast<struct sockaddr*>(&address), &addressLength) == 0 &&
           address.ss_family == AF_UNIX &&
           getsockopt(*fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 &&
           credentials.uid == geteuid();
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Shared memory

bool Channel::canPassFds() const { return fdStream != nullptr && fdStream->canPassFds(); }

void Channel::sendLargeFramesThroughSharedMemory(kj::Own<SharedFrameCodec> codec,
                                                 size_t threshold, size_t ringBytes) {
  KJ_REQUIRE(canPassFds(), "shared memory needs a channel over a Unix socket");
  KJ_REQUIRE(sealOut == nullptr, "frame protection and shared memory do not mix");
  sharedCodec = kj::mv(codec);
  sharedThreshold = threshold;
  sharedRingBytes = roundUpToWord(ringBytes);
}

void Channel::sharedSpaceFreed() {
  KJ_IF_MAYBE(waiter, spaceWaiter) {
    (*waiter)->fulfill();
    spaceWaiter = nullptr;
  }
}

// Gives the large messages at the front of the queue their place in the ring, in order: returns
// how many messages from the front are ready to be written (all, unless the ring is full).
size_t Channel::placeLargeFrames() {
  auto& codec = *KJ_ASSERT_NONNULL(sharedCodec);
  for (size_t i = 0; i < queue.size(); i++) {
    if (queue[i].large != nullptr) {
      if (ownRing == nullptr) {
        // The first large frame: create the ring and announce it just before this frame.
        auto& ring = ownRing.emplace(SharedRing::create(sharedRingBytes));
        auto announcement = codec.ringMessage(ring->capacity());
        size_t announcementBytes = frameBytes(*announcement);
        Outgoing outgoing = frame(kj::mv(announcement), announcementBytes);
        outgoing.fd = ring->takeFd();
        queuedTotal += announcementBytes;
        kj::Vector<Outgoing> withRing(queue.size() + 1);
        for (size_t j = 0; j < queue.size(); j++) {
          if (j == i) withRing.add(kj::mv(outgoing));
          withRing.add(kj::mv(queue[j]));
        }
        queue = kj::mv(withRing);
        ++i;
      }
      auto& ring = *KJ_ASSERT_NONNULL(ownRing);
      auto& message = *KJ_ASSERT_NONNULL(queue[i].large);
      KJ_IF_MAYBE(start, ring.write(message.getSegmentsForOutput(), queue[i].bytes)) {
        auto reference = codec.frameMessage(*start, queue[i].bytes);
        size_t referenceBytes = frameBytes(*reference);
        // Accounting stays in the frame's own bytes: what send() queued is what gets written.
        Outgoing placed = frame(kj::mv(reference), referenceBytes);
        queue[i].pieces = kj::mv(placed.pieces);
        queue[i].large = nullptr;
        ++sharedCounts.framesSent;
      } else {
        return i;
      }
    }
  }
  return queue.size();
}

size_t Channel::sealedFrameBytes() const {
  return sharedCodec == nullptr ? 0 : kj::max(sharedThreshold, sharedRingBytes);
}

// A frame too large for the ring, as a sealed memfd of its own (which the peer reads in place):
// the reference to queue in its place, with the fd. A message built by a FrameFileBuilder whose
// last segment is in a memfd is sealed there (the table and the segments before it written just
// in front of it); any other is copied into a fresh memfd. The message goes at once. If no memfd
// can be had (out of fds or memory), the frame as it is, for the socket.
Channel::Outgoing Channel::sealedFrame(kj::Own<capnp::MessageBuilder> message, size_t bytes) {
  auto& codec = *KJ_ASSERT_NONNULL(sharedCodec);
  auto* builder = dynamic_cast<FrameFileBuilder*>(message.get());
  Outgoing whole = frame(kj::mv(message), bytes);  // its pieces hold the message
  kj::Maybe<kj::AutoCloseFd> fd;
  uint64_t start = 0;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                 auto pieces = whole.pieces.asPtr();
                 auto last = pieces.back();
                 size_t prefixBytes = bytes - last.size();
                 KJ_IF_MAYBE (file, builder == nullptr ? nullptr : builder->fileOf(last.begin())) {
                   if (prefixBytes <= FrameFile::HEADROOM) {
                     fd = file->seal(pieces.slice(0, pieces.size() - 1), prefixBytes, start);
                     return;
                   }
                 }
                 fd = writeSealedFrame(pieces, bytes);
               })) {
    if (!sealedFramesFailed) {
      KJ_LOG(WARNING, "no memfd for a large frame; such frames go by the socket", *exception);
    }
    sealedFramesFailed = true;
    return whole;
  }
  whole.pieces = nullptr;  // the message: a sealed segment is gone from its mapping
  auto reference = codec.fileMessage(start, bytes);
  size_t referenceBytes = frameBytes(*reference);
  Outgoing outgoing = frame(kj::mv(reference), referenceBytes);
  outgoing.bytes = bytes;  // accounting stays in the frame's own bytes, as for the ring
  outgoing.fd = kj::mv(fd);
  ++sharedCounts.framesSent;
  ++sharedCounts.filesSent;
  return outgoing;
}

void Channel::adoptSharedRing(uint64_t capacity) {
  if (peerRing != nullptr) kj::throwFatalException(malformedFrame("a second shared-memory ring"));
  kj::Maybe<kj::AutoCloseFd> fd;
  if (fdStream != nullptr) fd = fdStream->takeReceivedFd();
  KJ_IF_MAYBE(received, fd) {
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      peerRing = SharedRing::adopt(kj::mv(*received), capacity);
    })) {
      kj::throwFatalException(malformedFrame(kj::str("the peer's shared-memory ring is unusable: ",
                                                     exception->getDescription())));
    }
  } else {
    kj::throwFatalException(malformedFrame("a shared-memory ring announced without its fd"));
  }
}

kj::Own<capnp::MessageReader> Channel::receiveShared(uint64_t start, uint64_t length,
                                                     bool& notify) {
  KJ_IF_MAYBE(ring, peerRing) {
    if (length > options.maxFrameBytes) {
      kj::throwFatalException(frameTooLarge(kj::str("received a frame of ", length,
          " bytes, over this channel's limit of ", options.maxFrameBytes, " bytes")));
    }
    kj::Array<capnp::word> copy;
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
      copy = (*ring)->read(start, length, notify);
    })) {
      kj::throwFatalException(malformedFrame(kj::str("bad shared-memory frame reference: ",
                                                     exception->getDescription())));
    }
    // From here on only the private copy is read.
    auto words = copy.asPtr();
    return sharedFrameReader(words, kj::mv(copy));
  }
  kj::throwFatalException(malformedFrame("a shared-memory frame before any ring"));
}

kj::Own<capnp::MessageReader> Channel::receiveSealedFrame(uint64_t start, uint64_t length) {
  kj::Maybe<kj::AutoCloseFd> fd;
  if (fdStream != nullptr) fd = fdStream->takeReceivedFd();
  KJ_IF_MAYBE (received, fd) {
    if (length > options.maxFrameBytes) {  // before anything is mapped; `fd` closes on the way
      kj::throwFatalException(frameTooLarge(kj::str("received a frame of ", length,
                                                    " bytes, over this channel's limit of ",
                                                    options.maxFrameBytes, " bytes")));
    }
    kj::Own<SealedFrame> mapped;
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() {
                   mapped = SealedFrame::map(kj::mv(*received), start, length);
                 })) {
      kj::throwFatalException(malformedFrame(
          kj::str("the peer's sealed frame is unusable: ", exception->getDescription())));
    }
    // Read in place: the seals keep the sender from changing it.
    auto words = mapped->words();
    ++sharedCounts.filesReceived;
    return sharedFrameReader(words, kj::mv(mapped));
  }
  kj::throwFatalException(malformedFrame("a sealed frame sent without its fd"));
}

// A reader over a frame that came through shared memory, checked as one read from the socket
// would be; its segment table must describe exactly `words`.
template <typename Keep>
kj::Own<capnp::MessageReader> Channel::sharedFrameReader(kj::ArrayPtr<const capnp::word> words,
                                                         Keep keep) {
  const kj::byte* bytes = words.asBytes().begin();
  size_t length = words.asBytes().size();
  uint64_t segmentCount = uint64_t(readLE32(bytes)) + 1;
  size_t tableBytes = segmentTableBytes(segmentCount);
  bool fits = segmentCount <= MAX_SEGMENTS && tableBytes <= length;
  uint64_t total = tableBytes;
  for (uint64_t i = 0; fits && i < segmentCount; i++) {
    total += uint64_t(readLE32(bytes + 4 + 4 * i)) * sizeof(capnp::word);
  }
  if (!fits || total != length) {
    kj::throwFatalException(malformedFrame(kj::str(
        "a shared-memory frame whose segment table does not match its length of ", length)));
  }
  kj::Maybe<kj::Exception> error;
  auto reader = checkedReader(words, length, kj::mv(keep), error);
  KJ_IF_MAYBE (e, error) kj::throwFatalException(kj::mv(*e));
  ++sharedCounts.framesReceived;
  receivedTotal += length;  // counted as if it had come by the socket (bytesReceived())
  return reader;
}

kj::Promise<void> Channel::flush() {
  KJ_IF_MAYBE(error, writeError) return kj::cp(*error);
  if (writtenTotal >= queuedTotal) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  flushWaiters.add(Waiter{queuedTotal, kj::mv(paf.fulfiller)});
  return kj::mv(paf.promise);
}

kj::Promise<void> Channel::whenWritable() {
  KJ_IF_MAYBE(error, writeError) return kj::cp(*error);
  if (isWritable()) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  writableWaiters.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

Co<void> Channel::shutdownWrite() {
  if (writeShut) co_return;
  writeShut = true;  // refuse new sends now; what is queued still goes out
  co_await flush();
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { stream->shutdownWrite(); })) {
    kj::throwFatalException(transportClosed(exception->getDescription()));
  }
}

}  // namespace harrow
