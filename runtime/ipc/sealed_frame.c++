#include <harrow/ipc/sealed_frame.h>

#include <kj/debug.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

namespace harrow {
namespace {

constexpr int REQUIRED_SEALS = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
constexpr size_t PAGE = 4096;  // mapping offsets are multiples of it (HEADROOM is one)

size_t roundUpToPage(size_t bytes) {
  return (bytes + PAGE - 1) & ~(PAGE - 1);
}

kj::AutoCloseFd newMemfd(size_t bytes) {
  int raw;
  KJ_SYSCALL(raw = memfd_create("harrow-frame", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  kj::AutoCloseFd fd(raw);
  KJ_SYSCALL(ftruncate(fd, bytes));
  return fd;
}

// Writes the concatenated `pieces` at `at` in `fd`, all of them.
void writeAllAt(int fd, kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces, off_t at) {
  size_t index = 0;
  size_t offset = 0;  // into pieces[index]
  for (;;) {
    while (index < pieces.size() && pieces[index].size() == offset) {  // done or empty
      index++;
      offset = 0;
    }
    if (index == pieces.size()) return;
    struct iovec iov[IOV_MAX];
    int count = 0;
    for (size_t i = index; i < pieces.size() && count < IOV_MAX; i++) {
      size_t skip = i == index ? offset : 0;
      iov[count].iov_base = const_cast<kj::byte*>(pieces[i].begin() + skip);
      iov[count].iov_len = pieces[i].size() - skip;
      count++;
    }
    ssize_t n;
    KJ_SYSCALL(n = pwritev(fd, iov, count, at));
    KJ_REQUIRE(n > 0, "a sealed frame's file took no bytes", at);
    at += n;
    for (size_t left = n; left > 0;) {  // n never exceeds what is left
      size_t taken = kj::min(left, pieces[index].size() - offset);
      offset += taken;
      left -= taken;
      if (offset == pieces[index].size()) {
        index++;
        offset = 0;
      }
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Sender

kj::Own<FrameFile> FrameFile::create(size_t words) {
  size_t bytes = roundUpToPage(words * sizeof(capnp::word));
  auto fd = newMemfd(HEADROOM + bytes);
  void* mapping = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, HEADROOM);
  if (mapping == MAP_FAILED) KJ_FAIL_SYSCALL("mmap", errno, bytes);
  // A child forked meanwhile must not inherit a writable mapping: F_SEAL_WRITE would fail.
  madvise(mapping, bytes, MADV_DONTFORK);
  // The pages, allocated and mapped writable in one call (the segment is about to be filled: a
  // value is copied in whole): faulting them in one by one as the copy reaches them cost a trap
  // and a page-cache lookup each, about 15 % more for 64 MiB (bench/README.md, "Single large
  // values"). Out of memory is an error here rather than a SIGBUS in the copy. Kernels before
  // 5.14 do not know the advice (EINVAL): the pages then come as they are touched.
  if (madvise(mapping, bytes, MADV_POPULATE_WRITE) < 0 && errno != EINVAL) {
    int error = errno;
    munmap(mapping, bytes);
    KJ_FAIL_SYSCALL("madvise(MADV_POPULATE_WRITE)", error, bytes);
  }
  return kj::heap<FrameFile>(fd.release(), static_cast<capnp::word*>(mapping), bytes);
}

FrameFile::FrameFile(int fd, capnp::word* segment, size_t segmentBytes)
    : fd(fd), words(segment), bytes(segmentBytes) {}

FrameFile::~FrameFile() noexcept(false) {
  if (words != nullptr) munmap(words, bytes);
}

kj::AutoCloseFd FrameFile::seal(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> prefix,
                                size_t prefixBytes, uint64_t& start) {
  KJ_REQUIRE(words != nullptr && prefixBytes <= HEADROOM && prefixBytes % sizeof(capnp::word) == 0);
  start = HEADROOM - prefixBytes;
  writeAllAt(fd, prefix, start);  // may throw: the segment is still intact then
  KJ_SYSCALL(munmap(words, bytes));
  capnp::word* was = words;
  words = nullptr;
  if (fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS | F_SEAL_SEAL) < 0) {
    // Only a writable mapping or a pinned page makes this fail, and this was the only mapping
    // (not inherited: MADV_DONTFORK). Should it happen, map the segment back where it was, so
    // that the caller can still send the frame some other way.
    int error = errno;
    void* back =
        mmap(was, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, HEADROOM);
    if (back != was) {
      KJ_LOG(ERROR, "a frame's segment could not be sealed nor mapped back", error, errno);
      abort();  // the message under construction points into it: no way to go on safely
    }
    words = was;
    KJ_FAIL_SYSCALL("fcntl(F_ADD_SEALS)", error);
  }
  return kj::mv(fd);
}

kj::ArrayPtr<capnp::word> FrameFileBuilder::allocateSegment(capnp::uint minimumSize) {
  if (fileSegmentBytes > 0 && size_t(minimumSize) * sizeof(capnp::word) > fileSegmentBytes) {
    kj::Maybe<kj::Own<FrameFile>> file;
    KJ_IF_MAYBE (exception,
                 kj::runCatchingExceptions([&]() { file = FrameFile::create(minimumSize); })) {
      // Out of fds or memory for a memfd: an ordinary segment (the frame is then copied).
      return capnp::MallocMessageBuilder::allocateSegment(minimumSize);
    }
    auto segment = KJ_ASSERT_NONNULL(file)->segment();
    files.add(kj::mv(KJ_ASSERT_NONNULL(file)));
    return segment;
  }
  return capnp::MallocMessageBuilder::allocateSegment(minimumSize);
}

kj::Maybe<FrameFile&> FrameFileBuilder::fileOf(const void* segment) {
  for (auto& file : files) {
    if (file->segment().begin() == segment) return *file;
  }
  return nullptr;
}

kj::AutoCloseFd writeSealedFrame(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces,
                                 size_t frameBytes) {
  auto fd = newMemfd(frameBytes);
  writeAllAt(fd, pieces, 0);
  KJ_SYSCALL(fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS | F_SEAL_SEAL));
  return fd;
}

// ---------------------------------------------------------------------------------------------
// Receiver

kj::Own<SealedFrame> SealedFrame::map(kj::AutoCloseFd fd, uint64_t start, uint64_t length) {
  KJ_REQUIRE(length > 0 && length % sizeof(capnp::word) == 0 && start % sizeof(capnp::word) == 0,
             "a sealed frame of a bad length or start", start, length);
  int seals = fcntl(fd, F_GET_SEALS);
  KJ_REQUIRE(seals >= 0, "a sealed frame's fd is not a memfd");
  KJ_REQUIRE((seals & REQUIRED_SEALS) == REQUIRED_SEALS,
             "a sealed frame's memfd is not sealed against shrinking, growing and writing", seals);
  struct stat info;
  KJ_SYSCALL(fstat(fd, &info));
  uint64_t size = info.st_size;
  KJ_REQUIRE(start <= size && length <= size - start,
             "a sealed frame's memfd does not hold the frame", size, start, length);
  // Read-only, and populated at once: one pass over the page cache instead of a fault per
  // 64 KiB as the reader walks it.
  uint64_t first = start & ~uint64_t(PAGE - 1);
  size_t mappedBytes = start - first + length;
  void* mapping = mmap(nullptr, mappedBytes, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, first);
  if (mapping == MAP_FAILED) KJ_FAIL_SYSCALL("mmap", errno, mappedBytes);
  // `fd` closes here: the mapping holds the pages.
  return kj::heap<SealedFrame>(mapping, mappedBytes, start - first, length);
}

SealedFrame::~SealedFrame() noexcept(false) {
  munmap(const_cast<void*>(mapping), mappedBytes);
}

}  // namespace harrow
