#include <harrow/ipc/shared_ring.h>

#include <kj/debug.h>

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace harrow {

// The first page of the ring. Only `tail` and `writerWaiting` are shared state; the rest is
// informational. (std::atomic on shared memory: lock-free for these sizes on every target we
// build for, which the static_asserts check.)
struct SharedRing::Header {
  uint64_t magic;
  uint64_t capacity;
  std::atomic<uint64_t> tail;           // the reader's position: everything before it is free
  std::atomic<uint32_t> writerWaiting;  // 1: the writer found no room and wants to hear
  std::atomic<uint64_t> wakeAt;         // ... once `tail` has reached this
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

namespace {
constexpr uint64_t MAGIC = 0x676e69722d776f68;  // "how-ring", little-endian-ish

void copyIn(kj::byte* ring, size_t capacity, uint64_t at, const kj::byte* from, size_t bytes) {
  size_t offset = at % capacity;
  size_t first = kj::min(bytes, capacity - offset);
  memcpy(ring + offset, from, first);
  memcpy(ring, from + first, bytes - first);
}

void* mapRing(int fd, size_t bytes) {
  void* mapping = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapping == MAP_FAILED) KJ_FAIL_SYSCALL("mmap", errno);
  return mapping;
}
}  // namespace

SharedRing::SharedRing(void* mapping, size_t capacity, kj::AutoCloseFd fd)
    : mapping(mapping), size(capacity), fd(kj::mv(fd)) {}

SharedRing::~SharedRing() noexcept(false) { munmap(mapping, HEADER_BYTES + size); }

SharedRing::Header& SharedRing::header() { return *static_cast<Header*>(mapping); }
kj::byte* SharedRing::data() { return static_cast<kj::byte*>(mapping) + HEADER_BYTES; }

kj::Own<SharedRing> SharedRing::create(size_t capacity) {
  KJ_REQUIRE(capacity % sizeof(capnp::word) == 0 && capacity > 0 && capacity <= MAX_CAPACITY);
  int raw;
  KJ_SYSCALL(raw = memfd_create("harrow-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  kj::AutoCloseFd fd(raw);
  KJ_SYSCALL(ftruncate(fd, HEADER_BYTES + capacity));
  // The reader maps it: it must never shrink under that mapping.
  KJ_SYSCALL(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
  void* mapping = mapRing(fd, HEADER_BYTES + capacity);
  auto ring = kj::heap<SharedRing>(mapping, capacity, kj::mv(fd));
  auto& h = ring->header();
  h.magic = MAGIC;
  h.capacity = capacity;
  h.tail.store(0);
  h.writerWaiting.store(0);
  h.wakeAt.store(0);
  return ring;
}

kj::Own<SharedRing> SharedRing::adopt(kj::AutoCloseFd fd, uint64_t capacity) {
  KJ_REQUIRE(capacity % sizeof(capnp::word) == 0 && capacity > 0 && capacity <= MAX_CAPACITY,
             "bad shared-memory ring capacity", capacity);
  int seals = fcntl(fd, F_GET_SEALS);
  KJ_REQUIRE(seals >= 0, "the shared-memory ring's fd is not a memfd");
  KJ_REQUIRE((seals & F_SEAL_SHRINK) != 0,
             "the shared-memory ring is not sealed against shrinking");
  struct stat info;
  KJ_SYSCALL(fstat(fd, &info));
  KJ_REQUIRE(uint64_t(info.st_size) >= HEADER_BYTES + capacity,
             "the shared-memory ring is smaller than announced", info.st_size, capacity);
  void* mapping = mapRing(fd, HEADER_BYTES + capacity);
  // The mapping keeps the memory: the fd can go now (no fd per channel stays open).
  return kj::heap<SharedRing>(mapping, capacity, nullptr);
}

kj::AutoCloseFd SharedRing::takeFd() { return kj::mv(fd); }

kj::Maybe<uint64_t> SharedRing::write(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments,
                                      size_t frameBytes) {
  if (frameBytes > size) return nullptr;
  auto room = [&]() {
    // The reader's word, clamped to what is possible: between its last value and our head.
    uint64_t tail = kj::min(kj::max(header().tail.load(), lastTail), position);
    lastTail = tail;
    return size - (position - tail);
  };
  if (room() < frameBytes) {
    // Ask to be told, then look once more: the reader frees space (stores tail) before it checks
    // the flag, we set the flag before we check tail again (both sequentially consistent), so
    // either we see the space or it sees the flag. Told once half the ring is free (and at least
    // this frame's room), not at the first free byte: a producer faster than its consumer then
    // costs one notice per half ring, not one per frame.
    // (No underflow: room < frameBytes means position + frameBytes > size + tail.)
    uint64_t roomForThis = position + frameBytes - size;
    uint64_t halfFree = position - kj::min(position, uint64_t(size / 2));
    header().wakeAt.store(kj::max(roomForThis, halfFree));
    header().writerWaiting.store(1);
    if (room() < frameBytes) return nullptr;
  }
  uint64_t start = position;
  // The segment table: a count minus one, one size per segment, padded to a word.
  size_t tableWords = segments.size() / 2 + 1;
  KJ_STACK_ARRAY(uint32_t, table, tableWords * 2, 16, 1024);
  memset(table.begin(), 0, table.size() * sizeof(uint32_t));
  table[0] = segments.size() - 1;
  for (size_t i = 0; i < segments.size(); i++) table[i + 1] = segments[i].size();
  copyIn(data(), size, position, table.asBytes().begin(), tableWords * sizeof(capnp::word));
  position += tableWords * sizeof(capnp::word);
  for (auto segment : segments) {
    copyIn(data(), size, position, segment.asBytes().begin(), segment.asBytes().size());
    position += segment.asBytes().size();
  }
  KJ_ASSERT(position - start == frameBytes);
  return start;
}

kj::Array<capnp::word> SharedRing::read(uint64_t start, uint64_t length, bool& notify) {
  KJ_REQUIRE(start == position, "a shared-memory frame out of order", start, position);
  KJ_REQUIRE(length > 0 && length <= size && length % sizeof(capnp::word) == 0,
             "a shared-memory frame of a bad length", length, size);
  auto copy = kj::heapArray<capnp::word>(length / sizeof(capnp::word));
  kj::byte* to = copy.asBytes().begin();
  size_t offset = start % size;
  size_t first = kj::min(size_t(length), size - offset);
  memcpy(to, data() + offset, first);
  memcpy(to + first, data(), length - first);
  position += length;
  header().tail.store(position);
  notify = header().writerWaiting.load() != 0 && position >= header().wakeAt.load() &&
           header().writerWaiting.exchange(0) != 0;
  return copy;
}

}  // namespace harrow
