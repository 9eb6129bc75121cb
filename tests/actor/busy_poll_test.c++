// Busy polling (<harrow/actor/busy_poll.h>): a loop that polls before it sleeps still wakes for
// everything a sleeping loop wakes for (I/O, timers, another thread), spins only while it keeps
// receiving, and the setting is checked.

#include <harrow/actor/busy_poll.h>
#include <harrow/ipc/fd_stream.h>

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <chrono>
#include <thread>

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace harrow {
namespace {

constexpr kj::Duration SPIN = 2 * kj::MILLISECONDS;

// Returns once thread `tid` of this process is asleep in epoll_wait (its wait channel says so):
// the moment the tests below want to wake a loop that has stopped spinning. Bounded: after 10 s it
// returns anyway, and the test's own expectations fail.
void waitUntilAsleepInEpoll(pid_t tid) {
  auto path = kj::str("/proc/self/task/", tid, "/wchan");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    char channel[64] = {};
    int fd = open(path.cStr(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n = read(fd, channel, sizeof(channel) - 1);
      close(fd);
      if (n > 0 && strstr(channel, "epoll") != nullptr) return;
    }
    sched_yield();
  }
  ADD_FAILURE() << "the loop never slept in epoll_wait";
}

double cpuSeconds() {
  struct rusage usage;
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
}

TEST(BusyPollTest, WakesForATimerAndSleepsWhileNothingIsRead) {
  auto io = kj::setupAsyncIo();
  double cpu = cpuSeconds();
  auto start = std::chrono::steady_clock::now();
  waitPolling(io.provider->getTimer().afterDelay(300 * kj::MILLISECONDS), io, SPIN);
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(wall, 0.25);  // (KJ's timer counts from the loop's last reading of the clock)
  // 2 ms of spinning, then asleep until the timer: far from the 300 ms a spin would burn.
  EXPECT_LT(cpuSeconds() - cpu, 0.1);
}

TEST(BusyPollTest, WakesForIoFromAnotherProcessOrThread) {
  auto io = kj::setupAsyncIo();
  auto pipe = io.provider->newTwoWayPipe();
  kj::byte buffer[8];
  auto read = pipe.ends[0]->tryRead(buffer, 4, sizeof(buffer));
  int fd = KJ_ASSERT_NONNULL(pipe.ends[1]->getFd());
  pid_t loopThread = gettid();
  std::thread writer([fd, loopThread]() {
    waitUntilAsleepInEpoll(loopThread);  // past the spin: the sleeping path is the one tested
    KJ_SYSCALL(write(fd, "ping", 4));
  });
  EXPECT_EQ(waitPolling(kj::mv(read), io, SPIN), 4u);
  writer.join();
  EXPECT_EQ(kj::heapString(reinterpret_cast<char*>(buffer), 4), "ping");
}

TEST(BusyPollTest, WakesForAnotherThreadsExecutor) {
  auto io = kj::setupAsyncIo();
  auto paf = kj::newPromiseAndFulfiller<int>();
  auto fulfiller = kj::mv(paf.fulfiller);
  const kj::Executor& executor = kj::getCurrentThreadExecutor();
  pid_t loopThread = gettid();
  std::thread other([&]() {
    waitUntilAsleepInEpoll(loopThread);
    executor.executeSync([&]() { fulfiller->fulfill(7); });
  });
  EXPECT_EQ(waitPolling(kj::mv(paf.promise), io, SPIN), 7);
  other.join();
}

TEST(BusyPollTest, ReadsAreCountedPerThread) {
  auto io = kj::setupAsyncIo();
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  FdStream stream(io.unixEventPort, kj::AutoCloseFd(fds[0]));
  kj::AutoCloseFd other(fds[1]);
  uint64_t before = _::fdReadsOnThisThread();
  KJ_SYSCALL(write(other.get(), "x", 1));
  kj::byte byte;
  EXPECT_EQ(stream.tryRead(&byte, 1, 1).wait(io.waitScope), 1u);
  EXPECT_EQ(_::fdReadsOnThisThread(), before + 1);
  uint64_t elsewhere = 0;
  std::thread([&]() { elsewhere = _::fdReadsOnThisThread(); }).join();
  EXPECT_EQ(elsewhere, 0u);
}

TEST(BusyPollTest, TheSettingIsChecked) {
  unsetenv("HARROW_BUSY_POLL_US");
  EXPECT_EQ(busyPollFromEnvironment(), 0 * kj::NANOSECONDS);
  setenv("HARROW_BUSY_POLL_US", "50", 1);
  EXPECT_EQ(busyPollFromEnvironment(), 50 * kj::MICROSECONDS);
  for (const char* bad : {"fifty", "-1", "100001", "50us"}) {
    setenv("HARROW_BUSY_POLL_US", bad, 1);
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([]() { busyPollFromEnvironment(); })) {
      EXPECT_NE(std::string(e->getDescription().cStr()).find(bad), std::string::npos) << bad;
      EXPECT_TRUE(kj::StringPtr(e->getDescription()).startsWith(
          "HARROW_BUSY_POLL_US (--harrow-busy-poll) must be microseconds"))
          << e->getDescription().cStr();
    } else {
      ADD_FAILURE() << "accepted " << bad;
    }
  }
  unsetenv("HARROW_BUSY_POLL_US");
}

}  // namespace
}  // namespace harrow
