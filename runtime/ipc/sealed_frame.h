// Sealed frames: a frame too large for a channel's shared-memory ring, passed as a memfd of its
// own (docs/PROTOCOL.md, "Large frames through shared memory"), ideally without being copied.
//
//   // sender: a message whose large segment lives in a memfd from the start
//   FrameFileBuilder message;
//   message.allocateLargeSegmentsInFiles(channel.sealedFrameBytes());
//   message.initRoot<Chunk>().setData(value);   // the value's one copy, into the memfd
//   channel.send(kj::heap(kj::mv(message)));    // seals that memfd and passes it: no copy
//   // receiver (Channel::receiveSealedFrame()): the fd that came with the reference
//   kj::Own<SealedFrame> frame = SealedFrame::map(kj::mv(fd), start, length);  // throws if unusable
//   capnp::FlatArrayMessageReader reader(frame->words());                     // read in place
//
// Guarantees: the receiver maps a frame only after checking that the fd is a memfd sealed against
// shrinking, growing and writing (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) that holds the
// frame's bytes; it maps them read-only and closes the fd at once (the mapping holds the memory
// until the SealedFrame dies). The sender seals only after dropping its own writable mapping: the
// kernel refuses F_SEAL_WRITE while one exists (and the mapping is not inherited across fork()).
//
// Why: a ring is shared writable memory, so its reader must copy each frame out before anything
// checks it (a time-of-check/time-of-use hole otherwise). A sealed file cannot change under the
// reader: once sealed, the kernel refuses every write, writable mapping and size change, so the
// receiver validates and reads the frame where it lies. A frame whose last segment was built in
// the memfd (FrameFileBuilder) then costs no copy at all beyond the one that filled it: the
// segment table and the small segments before it are written just in front of it. Any other
// large frame costs one copy into a fresh memfd (writeSealedFrame()). A socket costs a copy on
// each side and a receive buffer of the frame's size.

#pragma once

#include <capnp/message.h>
#include <kj/array.h>
#include <kj/io.h>
#include <kj/memory.h>
#include <kj/vector.h>

namespace harrow {

// One memfd holding a message segment while the message is built, with room in front of it for
// the segment table and the segments before it. The sender's end.
class FrameFile {
public:
  // Room in front of the segment (a page): the segment table and the message's other segments
  // must fit there for the frame to go without a copy.
  static constexpr size_t HEADROOM = 4096;

  // A fresh memfd with a writable segment of at least `words` words, its pages allocated and
  // mapped at once (MADV_POPULATE_WRITE). Throws (the syscall's error) if none can be made: out
  // of fds or memory.
  static kj::Own<FrameFile> create(size_t words);

  FrameFile(int fd, capnp::word* segment, size_t segmentBytes);
  ~FrameFile() noexcept(false);
  KJ_DISALLOW_COPY(FrameFile);

  kj::ArrayPtr<capnp::word> segment() { return kj::arrayPtr(words, bytes / sizeof(capnp::word)); }

  // Writes `prefix` (segment table and earlier segments, `prefixBytes` in all, at most HEADROOM)
  // just in front of the segment, drops the writable mapping and seals the file. Returns the fd
  // and sets `start` to where the frame begins in it. After this the segment may no longer be
  // touched: destroy the message at once. Throws if sealing fails; the segment is gone then too.
  kj::AutoCloseFd seal(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> prefix, size_t prefixBytes,
                       uint64_t& start);

private:
  kj::AutoCloseFd fd;
  capnp::word* words;  // mapped at HEADROOM; nullptr once sealed
  size_t bytes;
};

// A message builder whose segments over a size are allocated in FrameFiles, so that
// Channel::send() can pass the frame as a sealed memfd without copying it. Otherwise a
// MallocMessageBuilder.
class FrameFileBuilder : public capnp::MallocMessageBuilder {
public:
  explicit FrameFileBuilder(capnp::uint firstSegmentWords = capnp::SUGGESTED_FIRST_SEGMENT_WORDS)
      : capnp::MallocMessageBuilder(firstSegmentWords) {}
  // With a zeroed first segment the caller owns (and keeps until the builder is gone).
  explicit FrameFileBuilder(kj::ArrayPtr<capnp::word> firstSegment)
      : capnp::MallocMessageBuilder(firstSegment) {}

  // From now on segments of more than `bytes` go into FrameFiles (0: never, the default).
  // Channel::sealedFrameBytes() is what a channel sends as sealed files.
  void allocateLargeSegmentsInFiles(size_t bytes) { fileSegmentBytes = bytes; }

  kj::ArrayPtr<capnp::word> allocateSegment(capnp::uint minimumSize) override;

  // The file of the segment that starts at `segment`, if it is one of this builder's
  // (Channel::send() asks for the last one). The builder keeps it.
  kj::Maybe<FrameFile&> fileOf(const void* segment);

private:
  size_t fileSegmentBytes = 0;
  kj::Vector<kj::Own<FrameFile>> files;
};

// A fresh memfd holding the concatenated `pieces` (`frameBytes` in all), sealed: the copy for a
// frame that was not built in a FrameFile. Throws (the syscall's error) if none can be made or
// filled: out of fds or memory.
kj::AutoCloseFd writeSealedFrame(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces,
                                 size_t frameBytes);

// The receiver's end: one frame, mapped read-only.
class SealedFrame {
public:
  // Maps the frame of `length` bytes at byte `start` of `fd` (both multiples of 8, `length` not
  // 0), and closes `fd`. Throws (a description of what is wrong) for anything but a memfd
  // carrying F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_WRITE that holds those bytes. The caller
  // checks `length` against its frame limit first: nothing is mapped before this is called.
  static kj::Own<SealedFrame> map(kj::AutoCloseFd fd, uint64_t start, uint64_t length);

  // Use map().
  SealedFrame(const void* mapping, size_t mappedBytes, size_t offset, size_t length)
      : mapping(mapping), mappedBytes(mappedBytes), offset(offset), length(length) {}
  ~SealedFrame() noexcept(false);
  KJ_DISALLOW_COPY(SealedFrame);

  kj::ArrayPtr<const capnp::word> words() const {
    return kj::arrayPtr(
        reinterpret_cast<const capnp::word*>(static_cast<const kj::byte*>(mapping) + offset),
        length / sizeof(capnp::word));
  }

private:
  const void* mapping;
  size_t mappedBytes;
  size_t offset;  // of the frame in the mapping
  size_t length;
};

}  // namespace harrow
