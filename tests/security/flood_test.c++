// What strangers cost a root before they have proved anything (docs/PROTOCOL.md, "hello" and
// "Threat model"), against examples/multi_program's daemon hosting its registry on loopback TCP:
//  - 16 connections that each send one 60 MiB frame instead of a hello leave the daemon's
//    resident memory (and its peak) within 8 MB of where it was: before both proofs a frame may
//    have a few KiB only, so the daemon closes each one after its segment table;
//  - 1,000 idle connections (the daemon limited to 256 descriptors, as a small container would)
//    do not stop a client that knows the cookie: it connects and finishes its handshake within
//    100 ms, because a listener keeps at most 64 connections in the handshake and drops the
//    oldest for a new one;
// and no process is left behind. The attacker runs as `nobody` when the test runs as root.
//
// Usage (from BUILD.bazel): flood_test DAEMON

#include <harrow/actor/actor.h>
#include <harrow/actor/cookie.h>
#include <harrow/co/cancel_scope.h>
#include "tests/security/daemon_test.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace harrow {
namespace {

using testing::Program;

const char* daemonPath = nullptr;

// "VmRSS:   21000 kB" -> bytes.
size_t statusBytes(pid_t pid, const std::string& key) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1)) * 1024;
  }
  ADD_FAILURE() << "no " << key << " for " << pid;
  return 0;
}

struct sockaddr_in loopback(const std::string& address) {
  // "tcp:127.0.0.1:PORT"
  struct sockaddr_in in = {};
  in.sin_family = AF_INET;
  in.sin_port = htons(std::stoi(address.substr(address.rfind(':') + 1)));
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return in;
}

// As `nobody` if this process may become it: a stranger on the host, not just without the cookie.
void becomeStranger() {
  if (geteuid() != 0) return;
  struct passwd* nobody = getpwnam("nobody");
  if (nobody == nullptr) return;
  KJ_SYSCALL(setresgid(nobody->pw_gid, nobody->pw_gid, nobody->pw_gid));
  KJ_SYSCALL(setresuid(nobody->pw_uid, nobody->pw_uid, nobody->pw_uid));
}

// Runs `attack` in a child process (so its uid and descriptors are its own) and waits for it.
void inAttacker(kj::Function<void()> attack) {
  pid_t pid = fork();
  KJ_SYSCALL(pid);
  if (pid == 0) {
    becomeStranger();
    attack();
    _exit(0);
  }
  int status;
  KJ_SYSCALL(waitpid(pid, &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

class FloodTest : public testing::DaemonTest {
protected:
  FloodTest() : DaemonTest("flood") {}
  ~FloodTest() noexcept override {}

  std::string cookie = dir + "/cookie";

  // The daemon, hosting its registry on a loopback port, with at most `descriptors` open files.
  kj::Own<Program> daemon(int descriptors) {
    auto limit = "--nofile=" + std::to_string(descriptors);
    return kj::heap<Program>(io, std::vector<std::string>{
        "/usr/bin/prlimit", limit, "--", daemonPath, "--harrow-registry=tcp:127.0.0.1:0",
        "--harrow-cookie=" + cookie});
  }

  Co<void> stop(Program& program) {
    kill(program.getPid(), SIGTERM);
    int status = co_await program.finish();
    EXPECT_TRUE(WIFEXITED(status)) << status << program.outputSoFar();
  }
};

TEST_F(FloodTest, SixteenSixtyMegabyteFramesBeforeTheHelloCostTheDaemonNoMemory) {
  run([&]() -> Co<void> {
    auto d = daemon(4096);
    std::string registry = co_await ready(*d);
    pid_t pid = d->getPid();
    size_t before = statusBytes(pid, "VmRSS");

    inAttacker([&]() {
      constexpr uint32_t FRAME_WORDS = (60u << 20) / 8;
      std::vector<std::thread> senders;
      for (int i = 0; i < 16; ++i) {
        senders.emplace_back([&]() {
          int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          auto address = loopback(registry);
          if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) _exit(3);
          uint32_t table[2] = {0, FRAME_WORDS};  // one segment of 60 MiB
          std::vector<char> chunk(1 << 20, 'x');
          bool ok = send(fd, table, sizeof(table), MSG_NOSIGNAL) == sizeof(table);
          for (size_t sent = 0; ok && sent < size_t(FRAME_WORDS) * 8;) {
            ssize_t n = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
            if (n <= 0) break;  // closed by the daemon
            sent += n;
          }
          shutdown(fd, SHUT_WR);
          char sink[4096];
          while (recv(fd, sink, sizeof(sink), 0) > 0) {}  // until the daemon has closed it
          close(fd);
        });
      }
      for (auto& s : senders) s.join();
    });

    size_t after = statusBytes(pid, "VmRSS");
    size_t peak = statusBytes(pid, "VmHWM");
    EXPECT_LE(after, before + (8u << 20)) << before << " -> " << after;
    EXPECT_LE(peak, before + (8u << 20)) << "peak " << peak << ", before " << before;
    co_await stop(*d);
  });
}

TEST_F(FloodTest, AThousandIdleConnectionsDoNotStopAClientWithTheCookie) {
  struct rlimit files;
  KJ_SYSCALL(getrlimit(RLIMIT_NOFILE, &files));
  if (files.rlim_max < 1200) GTEST_SKIP() << "needs 1,200 descriptors, has " << files.rlim_max;
  files.rlim_cur = files.rlim_max;
  KJ_SYSCALL(setrlimit(RLIMIT_NOFILE, &files));

  run([&]() -> Co<void> {
    auto d = daemon(256);
    std::string registry = co_await ready(*d);

    // The attacker connects 1,000 times and keeps every connection open, silent, until told.
    int go[2], done[2];
    KJ_SYSCALL(pipe2(go, O_CLOEXEC));
    KJ_SYSCALL(pipe2(done, O_CLOEXEC));
    pid_t attacker = fork();
    KJ_SYSCALL(attacker);
    if (attacker == 0) {
      close(go[1]);  // so that the test closing its end reads as EOF here
      close(done[0]);
      becomeStranger();
      std::vector<int> idle;
      auto address = loopback(registry);
      for (int i = 0; i < 1000; ++i) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) _exit(3);
        connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
        idle.push_back(fd);
      }
      // Until the daemon has taken in the flood: it answers each with its hello, and closes all
      // but the newest ones it keeps in the handshake (at most 3 s: without the limit it would
      // close none before its handshake timeout).
      std::vector<struct pollfd> polls;
      for (int fd : idle) polls.push_back({fd, POLLIN, 0});
      size_t closed = 0;
      struct timespec start, now;
      clock_gettime(CLOCK_MONOTONIC, &start);
      for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (closed >= 900 || now.tv_sec - start.tv_sec >= 3) break;
        if (poll(polls.data(), polls.size(), 100) <= 0) continue;
        for (auto& p : polls) {
          if (p.fd < 0 || p.revents == 0) continue;
          char sink[4096];
          ssize_t n = recv(p.fd, sink, sizeof(sink), 0);
          if (n == 0 || (n < 0 && errno != EAGAIN)) {
            close(p.fd);
            p.fd = -1;
            ++closed;
          }
        }
      }
      char c = 'x';
      (void)!write(done[1], &c, 1);
      (void)!read(go[0], &c, 1);
      _exit(0);
    }
    close(go[0]);
    close(done[1]);
    // However the test ends: the attacker's read of `go` returns, it exits and is reaped.
    bool reaped = false;
    auto endAttacker = [&]() {
      if (reaped) return;
      reaped = true;
      close(go[1]);
      close(done[0]);
      int status;
      waitpid(attacker, &status, 0);
    };
    KJ_DEFER(endAttacker());
    char c;
    EXPECT_EQ(read(done[0], &c, 1), 1);  // blocking: the attacker is a process of its own

    Actor client{io, ActorIdentity::random("client")};
    client.setTreeSecret(readCookie(kj::StringPtr(cookie.c_str())));
    client.setChannelServer({});
    int64_t elapsedMs = -1;
    co_await client.serve([&]() -> Co<void> {
      struct timespec start, end;
      clock_gettime(CLOCK_MONOTONIC, &start);
      Peer* peer = co_await client.connectTo(kj::StringPtr(registry.c_str()));
      clock_gettime(CLOCK_MONOTONIC, &end);
      elapsedMs = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
      EXPECT_EQ(peer->trust(), PeerTrust::TREE_SECRET);
    });
    EXPECT_GE(elapsedMs, 0);
    EXPECT_LE(elapsedMs, 100) << "connecting during the flood took " << elapsedMs << " ms";

    endAttacker();
    co_await stop(*d);
  });
}

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  return harrow::testing::daemonTestMain(argc, argv, "flood_test", "DAEMON", {&harrow::daemonPath});
}
