// examples/multi_program as two real programs: the daemon (hosts the registry, runs "greeter")
// and clients started independently, pointed at the daemon's registry. For each transport:
//  - a client finds "greeter" by name and calls it;
//  - a client waiting in the registry when the daemon exits gets a clear error, not a hang;
//  - a client started after the daemon is gone says there is no greeter;
//  - (Unix socket files) a daemon killed with SIGKILL leaves its socket file; a new daemon at the
//    same path starts anyway;
// and no process is left behind: not the programs, not the daemon's greeter child.
//
// Usage (from BUILD.bazel): multi_program_test DAEMON CLIENT

#include <harrow/actor/actor.h>
#include <harrow/co/cancel_scope.h>
#include "tests/names.h"
#include "tests/processes.h"
#include "tests/program.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

extern char** environ;

namespace harrow {
namespace {

using testing::childrenOf;
using testing::field;
using testing::Program;
using testing::describe;
using testing::readStat;

const char* daemonPath = nullptr;
const char* clientPath = nullptr;

constexpr kj::Duration GUARD = 60 * kj::SECONDS;
constexpr unsigned WATCHDOG_SECONDS = 120;

bool exitedWith(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

std::string transportName(TransportKind kind) {
  switch (kind) {
    case TransportKind::TCP: return "tcp";
    case TransportKind::UNIX: return "unix";
    case TransportKind::UNIX_ABSTRACT: return "unix-abstract";
  }
  return "?";
}

// Waits (up to `ms`) until process `pid`, not necessarily our child, has exited.
bool waitUntilGone(pid_t pid, int ms) {
  int fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return errno == ESRCH;
  KJ_DEFER(close(fd));
  struct pollfd p = {fd, POLLIN, 0};
  int n;
  do {
    n = poll(&p, 1, ms);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

class MultiProgramTest : public ::testing::TestWithParam<TransportKind> {
protected:
  ~MultiProgramTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::set<pid_t> known;  // every pid the programs reported, theirs and their children's

  void SetUp() override { alarm(WATCHDOG_SECONDS); }

  void TearDown() override {
    alarm(0);
    for (auto& line : harrow::testing::leftBehind(known)) ADD_FAILURE() << line;
  }

  void run(kj::Function<kj::Promise<void>()> body) {
    auto& timer = io.provider->getTimer();
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  failAfter(timer, GUARD, kj::mv(body)).wait(io.waitScope);
                })) {
      ADD_FAILURE() << kj::str(*e).cStr();
    }
  }

  // A registry address for the daemon that no other test, nor another copy of this one, uses;
  // TCP uses an ephemeral port (the daemon reports it).
  std::string registryAddress() {
    switch (GetParam()) {
      case TransportKind::TCP: return "tcp:127.0.0.1:0";
      case TransportKind::UNIX: return testing::uniqueSocketFileAddress("multi-registry").cStr();
      case TransportKind::UNIX_ABSTRACT:
        return testing::uniqueAbstractAddress("multi-registry").cStr();
    }
    return "";
  }

  kj::Own<Program> daemon(const std::string& registry) {
    return kj::heap<Program>(io, std::vector<std::string>{
        daemonPath, "--harrow-registry=" + registry, "--harrow-transport=" + transportName(GetParam())});
  }

  kj::Own<Program> client(const std::string& registry, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {clientPath, "--harrow-registry=" + registry,
                                     "--harrow-transport=" + transportName(GetParam())};
    for (auto& a : extra) args.push_back(a);
    return kj::heap<Program>(io, args);
  }

  // Starts a daemon and waits for its "ready" line: returns the registry address it reports.
  Co<std::string> startDaemon(Program& program, pid_t* greeterPid) {
    known.insert(program.getPid());
    auto ready = co_await program.waitForLine("ready ");
    EXPECT_EQ(field(ready, "hosted"), "yes") << ready;
    *greeterPid = std::stoi(field(ready, "greeter-pid"));
    known.insert(*greeterPid);
    co_return field(ready, "registry");
  }
};

bool fileExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

TEST_P(MultiProgramTest, ClientFindsTheDaemonsActorAndTheDaemonLeavingIsAClearError) {
  run([&]() -> Co<void> {
    auto d = daemon(registryAddress());
    pid_t greeterPid = 0;
    std::string registry = co_await startDaemon(*d, &greeterPid);
    EXPECT_NE(registry.find(GetParam() == TransportKind::TCP ? "tcp:" : "unix:"), std::string::npos)
        << registry;

    // A client program finds "greeter" by name and calls it.
    {
      auto c = client(registry, {"--name=alice"});
      known.insert(c->getPid());
      int status = co_await c->finish();
      EXPECT_TRUE(exitedWith(status, 0)) << c->outputSoFar();
      std::string expected =
          "greeter (pid " + std::to_string(greeterPid) + ") says: hello, alice";
      EXPECT_NE(c->outputSoFar().find(expected), std::string::npos) << c->outputSoFar();
    }

    // A client waiting at the registry for an actor that never comes; the daemon leaves.
    auto waiting = client(registry, {"--wait-for=nobody"});
    known.insert(waiting->getPid());
    co_await waiting->waitForLine("waiting for 'nobody'");
    kill(d->getPid(), SIGTERM);
    int daemonStatus = co_await d->finish();
    EXPECT_TRUE(exitedWith(daemonStatus, 128 + SIGTERM)) << d->outputSoFar();
    int waitingStatus = co_await waiting->finish();
    EXPECT_TRUE(exitedWith(waitingStatus, 1)) << waiting->outputSoFar();
    // "harrow.TransportClosed: lost the registry at ADDR: its host ... is shutting down" (or: the
    // channel closed).
    const std::string& said = waiting->outputSoFar();
    EXPECT_NE(said.find("harrow.TransportClosed: lost the registry at " + registry),
              std::string::npos)
        << said;

    // A client started after the daemon is gone: no greeter, said clearly.
    {
      auto late = client(registry);
      known.insert(late->getPid());
      int status = co_await late->finish();
      EXPECT_TRUE(exitedWith(status, 1)) << late->outputSoFar();
      EXPECT_NE(late->outputSoFar().find("no actor named 'greeter'"), std::string::npos)
          << late->outputSoFar();
    }

    if (GetParam() == TransportKind::UNIX) {
      auto path = registry.substr(5);
      EXPECT_FALSE(fileExists(path)) << "the registry's socket file was left: " << path;
    }
  });
}

// Clients started before the daemon: the first program at the address hosts the registry, and
// the daemon, started last, finds it by probing, joins it and registers greeter there, which
// ends the wait of the client waiting for it. The registry's host is a client that waits for an
// actor that never comes: were it the client waiting for greeter, it would leave, taking the
// registry with it, as soon as it has its answer, maybe before the daemon's ready line.
TEST_P(MultiProgramTest, WaitingClientStartedBeforeTheDaemon) {
  if (GetParam() == TransportKind::TCP) {
    GTEST_SKIP() << "needs a fixed address; the Unix transports cover it";
  }
  run([&]() -> Co<void> {
    auto address = registryAddress();
    // The first client finds no registry, hosts one itself, and waits in it.
    auto host = client(address, {"--wait-for=nobody"});
    known.insert(host->getPid());
    co_await host->waitForLine("waiting for 'nobody'");
    auto c = client(address, {"--wait-for=greeter", "--name=early bird"});
    known.insert(c->getPid());
    co_await c->waitForLine("waiting for 'greeter'");
    // The daemon then finds the clients' registry by probing, joins it, and registers there.
    auto d = daemon(address);
    known.insert(d->getPid());
    auto ready = co_await d->waitForLine("ready ");
    EXPECT_EQ(field(ready, "hosted"), "no") << ready;
    pid_t greeterPid = std::stoi(field(ready, "greeter-pid"));
    known.insert(greeterPid);
    int status = co_await c->finish();
    EXPECT_TRUE(exitedWith(status, 0)) << c->outputSoFar();
    EXPECT_NE(c->outputSoFar().find("says: hello, early bird"), std::string::npos)
        << c->outputSoFar();
    kill(d->getPid(), SIGTERM);
    co_await d->finish();
    kill(host->getPid(), SIGTERM);
    int hostStatus = co_await host->finish();
    EXPECT_TRUE(exitedWith(hostStatus, 128 + SIGTERM)) << host->outputSoFar();
  });
}

TEST_P(MultiProgramTest, StaleSocketFileOfAKilledDaemonDoesNotBlockARestart) {
  if (GetParam() != TransportKind::UNIX) GTEST_SKIP() << "socket files only";
  run([&]() -> Co<void> {
    auto address = registryAddress();
    auto path = address.substr(5);
    std::vector<std::string> otherSockets;
    {
      auto d = daemon(address);
      pid_t greeterPid = 0;
      co_await startDaemon(*d, &greeterPid);
      for (auto key : {"greeter-address", "address"}) {
        auto other = field(d->outputSoFar(), key);
        EXPECT_EQ(other.rfind("unix:/", 0), 0u) << d->outputSoFar();
        if (other.size() > 5) otherSockets.push_back(other.substr(5));
      }
      kill(d->getPid(), SIGKILL);  // no cleanup; its greeter follows (PR_SET_PDEATHSIG)
      co_await d->finish();
      EXPECT_TRUE(waitUntilGone(greeterPid, 10000));
    }
    EXPECT_TRUE(fileExists(path)) << "expected a stale socket file";
    // The daemon's own listen socket is stale too, and the greeter's unless it saw its parent's
    // channel close before PR_SET_PDEATHSIG killed it. Their names are random: nobody would
    // reuse them; clean them up here.
    for (auto& other : otherSockets) unlink(other.c_str());
    auto d = daemon(address);
    pid_t greeterPid = 0;
    auto registry = co_await startDaemon(*d, &greeterPid);
    EXPECT_EQ(registry, address);
    auto c = client(registry, {"--name=again"});
    known.insert(c->getPid());
    EXPECT_TRUE(exitedWith(co_await c->finish(), 0)) << c->outputSoFar();
    kill(d->getPid(), SIGTERM);
    co_await d->finish();
    EXPECT_FALSE(fileExists(path));
  });
}

INSTANTIATE_TEST_SUITE_P(Transports, MultiProgramTest,
                         ::testing::Values(TransportKind::TCP, TransportKind::UNIX,
                                           TransportKind::UNIX_ABSTRACT),
                         [](const auto& info) {
                           switch (info.param) {
                             case TransportKind::TCP: return std::string("Tcp");
                             case TransportKind::UNIX: return std::string("UnixFile");
                             case TransportKind::UNIX_ABSTRACT: return std::string("UnixAbstract");
                           }
                           return std::string("?");
                         });

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  kj::UnixEventPort::captureChildExit();
  harrow::testing::installWatchdog("multi_program_test");
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 3) {
    fprintf(stderr, "usage: multi_program_test DAEMON CLIENT\n");
    return 2;
  }
  harrow::daemonPath = argv[1];
  harrow::clientPath = argv[2];
  return RUN_ALL_TESTS();
}
