// SharedRing: one direction of a channel's shared-memory path for large frames
// (docs/PROTOCOL.md, "Large frames through shared memory").
//
// The sending side owns a ring: a memfd of HEADER_BYTES + capacity bytes, sealed against
// shrinking, mapped by both processes (the fd travels once over the Unix socket, SCM_RIGHTS).
// A large frame is copied into the ring at the writer's position `head` (a byte count that only
// grows; the ring offset is head % capacity, frames wrap around the end) and the socket carries
// only a reference {start, length}. The reader takes frames strictly in order: a reference must
// start where the previous one ended. It copies each frame out into private memory before
// anything parses it, then publishes its new position `tail` in the ring's header, which frees
// the space. Copy-out is the answer to the time-of-check/time-of-use problem: the writer can
// scribble into the ring at any time, but never into the copy that was validated and is read.
//
// Neither side trusts the other's header words: the writer clamps the tail it reads to what it
// has written (a lying reader can only garble frames sent to itself), and the reader checks every
// reference against its own position and the ring's capacity. The reader refuses a ring that is
// not a memfd sealed against shrinking (F_SEAL_SHRINK): a writer that truncated a mapped file
// would make the reader's copy fault (SIGBUS).

#pragma once

#include <capnp/message.h>
#include <kj/array.h>
#include <kj/io.h>

#include <atomic>

namespace harrow {

class SharedRing {
public:
  static constexpr size_t HEADER_BYTES = 4096;
  static constexpr uint64_t MAX_CAPACITY = 1u << 30;

  // The writer's end: a fresh sealed memfd of `capacity` bytes (a multiple of 8). fd() is what
  // to send to the peer.
  static kj::Own<SharedRing> create(size_t capacity);
  // The reader's end, over a received fd, said to hold `capacity` bytes. Throws (a description
  // of what is wrong) for anything but a sealed memfd of at least that size.
  static kj::Own<SharedRing> adopt(kj::AutoCloseFd fd, uint64_t capacity);

  ~SharedRing() noexcept(false);
  KJ_DISALLOW_COPY(SharedRing);

  uint64_t capacity() const { return size; }

  // ---- writer ----
  // A dup of the memfd, to send (the writer needs none of its own once mapped).
  kj::AutoCloseFd takeFd();
  // Copies the frame (segment table, then segments) of `segments`, `frameBytes` in all, into the
  // ring and returns where it starts; nullptr if the ring has no room for it now. Then the reader
  // is asked (header flag) to say when it frees space (readerShouldNotify()).
  kj::Maybe<uint64_t> write(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments,
                            size_t frameBytes);

  // ---- reader ----
  // Copies out the frame of `length` bytes at `start` and frees its space. Throws (a description)
  // if the reference is not the next frame or does not fit. `notify` is set if the writer waits
  // for space: tell it (the protocol's sharedMemoryFreed).
  kj::Array<capnp::word> read(uint64_t start, uint64_t length, bool& notify);

  // Use create() or adopt().
  SharedRing(void* mapping, size_t capacity, kj::AutoCloseFd fd);

private:
  struct Header;

  void* mapping;
  size_t size;
  kj::AutoCloseFd fd;       // writer: until taken
  uint64_t position = 0;    // writer: head; reader: tail
  uint64_t lastTail = 0;    // writer: the reader's position as last read (never moves back)

  Header& header();
  kj::byte* data();
};

}  // namespace harrow
