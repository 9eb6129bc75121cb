// The registry's host under connect floods: 5,000 connect-and-drops and 500 garbage connections
// a round, ten rounds. Its resident memory comes back to where it was before the floods (within
// 1 MB) after each round, and stays there: nothing a dropped connection allocated is kept, and
// the allocator hands the pages back.
//
// The clients run on a thread of their own that only makes system calls (no malloc), so that
// the process's memory is the registry host's.

#include <harrow/actor/actor.h>
#include <harrow/co/cancel_scope.h>
#include <harrow/discovery/discovery.h>
#include "tests/on_thread.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/encoding.h>

#include <poll.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace harrow {
namespace {

long vmRssKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return atol(line.c_str() + 6);
  }
  return -1;
}

constexpr int DROPS = 5000;
constexpr int GARBAGE = 500;
constexpr int PARALLEL = 500;
constexpr int ROUNDS = 10;
constexpr long SLACK_KB = 1024;

struct Target {
  struct sockaddr_un address = {};
  socklen_t length = 0;

  explicit Target(kj::StringPtr name) {
    address.sun_family = AF_UNIX;
    memcpy(address.sun_path + 1, name.begin(), name.size());
    length = offsetof(struct sockaddr_un, sun_path) + 1 + name.size();
  }
  int connect() const {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    KJ_ASSERT(fd >= 0);
    KJ_SYSCALL(::connect(fd, reinterpret_cast<const sockaddr*>(&address), length));
    return fd;
  }
};

// One round: DROPS connect-and-drops, then GARBAGE connections that each send junk and wait for
// the server to close them; PARALLEL at a time. System calls only.
void flood(const Target& target) {
  int fds[PARALLEL];
  for (int i = 0; i < DROPS; i += PARALLEL) {
    for (int& fd : fds) fd = target.connect();
    for (int fd : fds) close(fd);
  }
  static const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
  static const uint32_t hugeSegment[2] = {0, 0x0fffffff};
  char noise[1024];
  for (size_t i = 0; i < sizeof(noise); ++i) noise[i] = char(i * 131 + 7);
  struct Sample {
    const void* bytes;
    size_t size;
  } samples[] = {{http, sizeof(http) - 1}, {hugeSegment, sizeof(hugeSegment)},
                 {noise, sizeof(noise)}};
  for (int i = 0; i < GARBAGE; i += PARALLEL) {
    for (int k = 0; k < PARALLEL; ++k) {
      fds[k] = target.connect();
      auto& sample = samples[(i + k) % 3];
      (void)!write(fds[k], sample.bytes, sample.size);
    }
    for (int fd : fds) {
      char buffer[256];
      while (read(fd, buffer, sizeof(buffer)) > 0) {}  // until the server closes it
      close(fd);
    }
  }
}

TEST(RegistryFloodTest, TheRegistrysMemoryComesBackAfterEachFloodAndStaysFlat) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a sanitizer's allocator keeps freed memory in quarantine: RSS says nothing";
#endif
  kj::byte random[8];
  KJ_ASSERT(getrandom(random, sizeof(random), 0) == sizeof(random));
  auto name = kj::str("harrow-registry-flood-", kj::encodeHex(random));

  auto io = kj::setupAsyncIo();
  Actor root(io, ActorIdentity::random("registry-host"));
  DiscoveryOptions options;
  options.isRoot = true;
  options.mayHostRegistry = true;
  options.registryAddress = kj::str("unix:@", name);
  options.handshakeTimeout = 2 * kj::SECONDS;
  setDiscovery(root, kj::mv(options));
  Target target(name);

  long baseline = 0;
  long rss[ROUNDS] = {};
  root.serve([&]() -> Co<void> {
    // Each round's clients on a thread, the loop serving them; then the server side of the
    // last connections unwinds on the loop.
    auto round = [&](kj::Function<void()> clients) -> Co<void> {
      co_await testing::onThread(root.eventPort(), kj::mv(clients));
      co_await kj::evalLast([]() {});
    };
    // What the first connections allocate for good (the loop's own structures, a log line's
    // buffers) is not the question: a small flood first.
    co_await round([&]() {
      for (int i = 0; i < 16; ++i) close(target.connect());
    });
    baseline = vmRssKb();
    for (auto& r : rss) {
      co_await round([&]() { flood(target); });
      // The host hands pages back shortly after a burst (actor.c++, incomingEnded): look until
      // it has, for at most a second (a failure guard).
      auto until = root.timer().now() + 1 * kj::SECONDS;
      while ((r = vmRssKb()) - baseline > SLACK_KB && root.timer().now() < until) {
        co_await root.timer().afterDelay(5 * kj::MILLISECONDS);
      }
    }
  }).wait(io.waitScope);

  std::string figures;
  for (long r : rss) figures += std::to_string(r - baseline) + " ";
  fprintf(stderr, "VmRSS baseline %ld kB; after each round, kB over it: %s\n", baseline,
          figures.c_str());
  for (int i = 0; i < ROUNDS; ++i) {
    EXPECT_LE(rss[i] - baseline, SLACK_KB)
        << "round " << i + 1 << ": kB over the baseline after each round: " << figures;
  }
}

}  // namespace
}  // namespace harrow
