// The forkserver spawn backend (runtime/forkserver.h) against exec. This test binary is itself a
// harrow program: run with --harrow-child it is a Ping actor, with --as-root it is a root run
// through harrow::main (checked from a test), otherwise it runs the tests.
//
// main() starts a zygote before anything else, as harrow::main does for a root, and sets
// HARROW_SPAWN=forkserver first, so that every child (forked or exec'd) has a zygote of its own
// and can spawn grandchildren through it. After every test, nothing of ours is left: no child
// process except our zygote, running or zombie, and none of the spawned actors as an orphan. At
// the very end the zygote is stopped, and then no child at all may remain.

#include <harrow/co/cancel_scope.h>
#include <harrow/spawn/actor_nursery.h>
#include <harrow/spawn/forkserver.h>
#include <harrow/main.h>
#include "tests/spawn/forkserver/ping.capnp.harrow.h"
#include "tests/processes.h"
#include "tests/root_test.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/time.h>

#include <dirent.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace harrow {
namespace {

using Who = PingActor::Schema::Who;

// ---------------------------------------------------------------------------------------------
// Processes: who is our child, and does a pid still exist.

using testing::childrenOf;
using testing::describe;
using testing::ProcStat;
using testing::readStat;


// Arguments separated by spaces.
std::string cmdlineOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::replace(text.begin(), text.end(), '\0', ' ');
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

// An exec'd child has harrow's child-mode arguments with its own name; a forked one keeps the
// command line of the process its zygote was forked from (the parent actor's).
bool wasExeced(kj::StringPtr cmdline, kj::StringPtr name) {
  auto args = kj::str("--harrow-child ", name, " ");
  return std::string(cmdline.cStr()).find(args.cStr()) != std::string::npos;
}

bool contains(const kj::Exception& e, const std::string& what) {
  return std::string(e.getDescription().cStr()).find(what) != std::string::npos;
}

pid_t zygotePid() {
  KJ_IF_MAYBE(pid, forkServerPid()) return *pid;
  return -1;
}

// ---------------------------------------------------------------------------------------------
// The child side: the Ping actor.

[[noreturn]] void crashNow() {
  struct rlimit none = {0, 0};
  setrlimit(RLIMIT_CORE, &none);
  abort();
}

void fillWho(Who::Builder who) {
  who.setPid(getpid());
  who.setPpid(getppid());
  who.setPgid(getpgid(0));
  std::ifstream in("/proc/self/comm");
  std::string comm;
  std::getline(in, comm);
  who.setComm(comm.c_str());
  who.setCmdline(cmdlineOf(getpid()).c_str());
  who.setHasZygote(forkServerPid() != nullptr);
}

class PingImpl final : public PingActor::Server {
public:
  Co<void> ping(PingCall call) override {
    call.results().setText(kj::str("pong: ", call.params().getText()));
    co_return;
  }

  Co<void> whoAmI(WhoAmICall call) override {
    fillWho(call.results().initWho());
    co_return;
  }

  Co<void> spawnChild(SpawnChildCall call) override {
    auto name = kj::str(call.params().getName());
    SpawnOptions options;
    options.backend = SpawnBackend(call.params().getBackend());
    co_await openActorNursery([&](ActorNursery& nursery) -> Co<void> {
      auto child = co_await nursery.startActor<PingActor>(name, "ping", options);
      auto who = co_await child.whoAmI();
      call.results().setWho(who->getWho());
    });
  }

  Co<void> crash(CrashCall) override {
    co_await kj::Promise<void>(kj::READY_NOW);
    crashNow();
  }

  // As long as this actor's own grace period allows (3/4 of it): a test may stop the child.
  static ActorNurseryOptions patient() {
    ActorNurseryOptions options;
    options.gracePeriod = 60 * kj::SECONDS;
    return options;
  }

  Co<void> holdChild(HoldChildCall call) override {
    auto name = kj::str(call.params().getName());
    auto up = kj::newPromiseAndFulfiller<void>();
    auto& service = KJ_ASSERT_NONNULL(currentActor().serviceNursery());
    service.startSoon([&, fulfiller = kj::mv(up.fulfiller)]() mutable -> Co<void> {
      co_await openActorNursery(
          [&](ActorNursery& nursery) -> Co<void> {
            SpawnOptions options;
            options.backend = SpawnBackend::FORKSERVER;
            auto child = co_await nursery.startActor<PingActor>(name, "ping", options);
            auto who = co_await child.whoAmI();
            call.results().setWho(who->getWho());
            call.results().setZygote(zygotePid());
            fulfiller->fulfill();
            co_await kj::Promise<void>(kj::NEVER_DONE);  // until this actor is cancelled
          },
          patient());
    });
    co_await kj::mv(up.promise);
  }
};

// ---------------------------------------------------------------------------------------------
// The root side.

kj::TimePoint now() { return kj::systemPreciseMonotonicClock().now(); }

// What a child says about itself must match how it was started, by whom and as what.
void expectWho(Who::Reader who, bool forked, pid_t parent, kj::StringPtr name) {
  EXPECT_EQ(who.getPpid(), parent) << name.cStr();
  EXPECT_EQ(who.getPgid(), who.getPid()) << name.cStr() << ": not in a process group of its own";
  EXPECT_EQ(std::string(who.getComm().cStr()), std::string(name.cStr()).substr(0, 15));
  EXPECT_EQ(!wasExeced(who.getCmdline(), name), forked)
      << name.cStr() << " was " << (forked ? "exec'd" : "forked") << ": " << who.getCmdline().cStr();
  EXPECT_TRUE(who.getHasZygote()) << name.cStr() << " (HARROW_SPAWN=forkserver) has no zygote";
}

class ForkServerTest : public testing::RootTest<> {
protected:
  ForkServerTest() : RootTest("forkserver-test") {}

  std::vector<pid_t> spawned;  // every child's pid, as it reported it, in order

  void SetUp() override {
    RootTest::SetUp();
#if defined(__SANITIZE_THREAD__)
    // TSan may run a background thread from the start: then no zygote is forked, by design.
    if (zygotePid() == -1) GTEST_SKIP() << "no zygote: a thread existed before main";
#endif
    ASSERT_NE(zygotePid(), -1) << "the test's zygote did not start";
  }

  // Nothing of ours is left but the zygote, and no actor survived as an orphan.
  void TearDown() override {
    known.insert(spawned.begin(), spawned.end());
    RootTest::TearDown();
  }

  // Spawns a Ping child with `options`, asks who it is and checks the answer: our child, in a
  // process group of its own, named after the actor, forked or exec'd as expected.
  Co<PingActor::Portal> startPing(ActorNursery& nursery, kj::StringPtr name, SpawnOptions options,
                                  bool expectForked) {
    auto ping = co_await nursery.startActor<PingActor>(name, "ping", options);
    auto reply = co_await ping.whoAmI();
    auto who = reply->getWho();
    spawned.push_back(who.getPid());
    expectWho(who, expectForked, getpid(), name);
    // The kernel agrees about the parent.
    KJ_IF_MAYBE(stat, readStat(who.getPid())) {
      EXPECT_EQ(stat->ppid, getpid()) << describe(*stat);
    } else {
      ADD_FAILURE() << "the child's pid " << who.getPid() << " does not exist";
    }
    co_return ping;
  }

  Co<PingActor::Portal> startPing(ActorNursery& nursery, kj::StringPtr name,
                                  SpawnBackend backend) {
    SpawnOptions options;
    options.backend = backend;
    return startPing(nursery, name, options, backend == SpawnBackend::FORKSERVER);
  }

  // `count` children started at once, each answering a call, then all stopped together.
  void startAndStopConcurrently(SpawnBackend backend, int count) {
    int answered = 0;
    auto failure = runRoot([&]() -> Co<void> {
      co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
        co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
          for (int i = 0; i < count; ++i) {
            tasks.startSoon([&, i]() -> Co<void> {
              auto name = kj::str(spawnBackendName(backend), "-", i);
              auto ping = co_await startPing(nursery, name, backend);
              auto reply = co_await ping.ping(name);
              if (reply->getText() == kj::str("pong: ", name)) ++answered;
            });
          }
          co_return;
        });
        EXPECT_EQ(nursery.size(), size_t(count));
      });
    });
    KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
    EXPECT_EQ(answered, count);
    std::vector<pid_t> pids = spawned;
    std::sort(pids.begin(), pids.end());
    EXPECT_EQ(std::unique(pids.begin(), pids.end()) - pids.begin(), count);
  }
};

TEST_F(ForkServerTest, BothBackendsServeCalls) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto execd = co_await startPing(nursery, "by-exec", SpawnBackend::EXEC);
      auto forked = co_await startPing(nursery, "by-forkserver", SpawnBackend::FORKSERVER);
      EXPECT_EQ(std::string((co_await execd.ping("a"))->getText().cStr()), "pong: a");
      EXPECT_EQ(std::string((co_await forked.ping("b"))->getText().cStr()), "pong: b");
      // DEFAULT is the process default: HARROW_SPAWN, which main() set to forkserver.
      auto byDefault = co_await startPing(nursery, "by-default", SpawnOptions{}, true);
      EXPECT_EQ(std::string((co_await byDefault.ping("c"))->getText().cStr()), "pong: c");
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
  EXPECT_EQ(spawned.size(), 3u);
}

TEST_F(ForkServerTest, ForkedChildrenAreReapedAndLeaveNothingBehind) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      for (int i = 0; i < 3; ++i) {
        auto ping = co_await startPing(nursery, kj::str("reaped-", i), SpawnBackend::FORKSERVER);
        co_await ping.ping("x");
      }
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
  ASSERT_EQ(spawned.size(), 3u);
  // Gone, not zombies: the nursery reaped them through the event loop.
  for (pid_t pid : spawned) {
    EXPECT_TRUE(readStat(pid) == nullptr) << "pid " << pid << " is still there";
  }
  // The zygote is our child, alive and idle, and has no children of its own.
  KJ_IF_MAYBE(stat, readStat(zygotePid())) {
    EXPECT_EQ(stat->ppid, getpid());
    EXPECT_EQ(stat->comm, "harrow-zygote");
    EXPECT_EQ(stat->state, 'S') << describe(*stat);
  } else {
    ADD_FAILURE() << "the zygote is gone";
  }
  EXPECT_TRUE(childrenOf(zygotePid()).empty());
}

TEST_F(ForkServerTest, NamedExecutableAlwaysUsesExec) {
  auto self = selfExecutable();
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      SpawnOptions options;
      options.executable = self;
      options.backend = SpawnBackend::FORKSERVER;
      auto ping = co_await startPing(nursery, "named-binary", options, /*expectForked=*/false);
      co_await ping.ping("x");
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
  EXPECT_EQ(spawned.size(), 1u);
}

TEST_F(ForkServerTest, NestedTreesUseTheChildsOwnZygote) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      for (auto backend : {SpawnBackend::EXEC, SpawnBackend::FORKSERVER}) {
        auto name = kj::str("parent-", spawnBackendName(backend));
        auto parent = co_await startPing(nursery, name, backend);
        pid_t parentPid = spawned.back();
        for (auto childBackend : {SpawnBackend::EXEC, SpawnBackend::FORKSERVER}) {
          auto childName = kj::str("child-", spawnBackendName(childBackend));
          auto reply = co_await parent.spawnChild(childName, uint32_t(childBackend));
          auto who = reply->getWho();
          // The grandchild is the child's child, whichever way either was started; the child's
          // nursery has reaped it by now.
          expectWho(who, childBackend == SpawnBackend::FORKSERVER, parentPid, childName);
          EXPECT_TRUE(readStat(who.getPid()) == nullptr) << "grandchild " << who.getPid();
        }
      }
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
  EXPECT_EQ(spawned.size(), 2u);
}

// An actor that is cancelled spawns nothing more: its zygote leaves at once, while its children
// are still being torn down, not after them (issue 20: in an error cascade each level waited for
// every zygote below it to be stopped and reaped, one after another).
TEST_F(ForkServerTest, ACancelledActorsZygoteLeavesBeforeItsChildrenAreReaped) {
  auto failure = runRoot([&]() -> Co<void> {
    // Grace periods long enough that the stopped grandchild is not killed during the test.
    ActorNurseryOptions patient;
    patient.gracePeriod = 60 * kj::SECONDS;
    co_await openActorNursery(
        root,
        [&](ActorNursery& nursery) -> Co<void> {
          auto parent = co_await startPing(nursery, "holder", SpawnBackend::FORKSERVER);
          auto held = co_await parent.holdChild("held");
          pid_t child = held->getWho().getPid();
          pid_t zygote = held->getZygote();
          spawned.push_back(child);
          KJ_REQUIRE(zygote > 0, "the holder has no zygote");
          int pidfd = static_cast<int>(syscall(SYS_pidfd_open, zygote, 0));
          KJ_REQUIRE(pidfd >= 0, "pidfd_open of the holder's zygote", strerror(errno));
          KJ_DEFER(close(pidfd));
          // The grandchild cannot act on its cancel until it is continued: the holder's nursery
          // waits for it.
          KJ_SYSCALL(kill(child, SIGSTOP));
          KJ_DEFER(kill(child, SIGCONT));
          nursery.cancelActor(parent);
          kj::UnixEventPort::FdObserver zygoteExit(root.eventPort(), pidfd,
                                                   kj::UnixEventPort::FdObserver::OBSERVE_READ);
          // The 30 s deadline is a failure guard only.
          bool cut = co_await moveOnAfter(root.timer(), 30 * kj::SECONDS, [&]() -> Co<void> {
            co_await zygoteExit.whenBecomesReadable();
          });
          bool left = !cut;
          EXPECT_TRUE(left) << "the cancelled holder's zygote " << zygote << " is still running";
          KJ_IF_MAYBE (stat, readStat(child)) {
            EXPECT_NE(stat->state, 'Z') << describe(*stat);  // stopping (R) or stopped (T)
          } else {
            ADD_FAILURE() << "the held grandchild " << child
                          << " was reaped before the zygote left";
          }
        },
        patient);
  });
  KJ_IF_MAYBE (e, failure) ADD_FAILURE() << kj::str(*e).cStr();
}

TEST_F(ForkServerTest, ForkedChildDyingIsReportedAsForAnExecdOne) {
  auto failure = runRoot([&]() -> Co<void> {
    for (auto backend : {SpawnBackend::EXEC, SpawnBackend::FORKSERVER}) {
      auto name = kj::str("crash-", spawnBackendName(backend));
      kj::Maybe<kj::Exception> callError, nurseryError;
      size_t before = spawned.size();
      try {
        co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
          auto ping = co_await startPing(nursery, name, backend);
          try {
            co_await ping.crash();
          } catch (...) {
            callError = currentException();
          }
        });
      } catch (...) {
        nurseryError = currentException();
      }
      EXPECT_TRUE(callError != nullptr) << name.cStr();
      KJ_ASSERT(spawned.size() == before + 1);
      KJ_IF_MAYBE(e, nurseryError) {
        // abort() still raises SIGABRT in a forked child (glibc asks the kernel for the thread
        // id), and the nursery names the actor, its pid and the signal as for an exec'd one.
        EXPECT_TRUE(contains(*e, kj::str("harrow.ActorDied: actor '", name, "' (pid ",
                                         spawned.back(), ") killed by signal 6 (Aborted)")
                                     .cStr()))
            << kj::str(*e).cStr();
      } else {
        ADD_FAILURE() << "the nursery of a crashed " << name.cStr() << " raised nothing";
      }
    }
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
  EXPECT_EQ(spawned.size(), 2u);
}

TEST_F(ForkServerTest, FiftyChildrenStartAndStopConcurrentlyByExec) {
  startAndStopConcurrently(SpawnBackend::EXEC, 50);
}

TEST_F(ForkServerTest, FiftyChildrenStartAndStopConcurrentlyByForkServer) {
  startAndStopConcurrently(SpawnBackend::FORKSERVER, 50);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

TEST_F(ForkServerTest, ForkServerSpawnIsFasterThanExec) {
  constexpr int SPAWNS = 20;
  std::vector<double> times[2];  // milliseconds: exec, forkserver
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      // Interleaved, so that a busy machine slows both alike; one unmeasured round first, so
      // that neither pays for a cold start.
      for (int i = 0; i <= SPAWNS; ++i) {
        for (int round = 0; round < 2; ++round) {
          auto backend = round == 0 ? SpawnBackend::EXEC : SpawnBackend::FORKSERVER;
          SpawnOptions options;
          options.backend = backend;
          auto name = kj::str("timed-", spawnBackendName(backend), "-", i);
          auto start = now();
          auto ping = co_await nursery.startActor<PingActor>(name, "ping", options);
          co_await ping.ping("first call");  // spawn + handshake + spawn spec + first call
          auto elapsed = now() - start;
          if (i > 0) times[round].push_back(double(elapsed / kj::NANOSECONDS) / 1e6);
          auto who = co_await ping.whoAmI();
          spawned.push_back(who->getWho().getPid());
          EXPECT_EQ(!wasExeced(who->getWho().getCmdline(), name),
                    backend == SpawnBackend::FORKSERVER);
        }
      }
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
  ASSERT_EQ(times[0].size(), size_t(SPAWNS));
  ASSERT_EQ(times[1].size(), size_t(SPAWNS));
  double execMedian = median(times[0]);
  double forkMedian = median(times[1]);
  printf("spawn + handshake + first call, median of %d: exec %.3f ms, forkserver %.3f ms "
         "(min %.3f / %.3f ms, max %.3f / %.3f ms)\n",
         SPAWNS, execMedian, forkMedian, *std::min_element(times[0].begin(), times[0].end()),
         *std::min_element(times[1].begin(), times[1].end()),
         *std::max_element(times[0].begin(), times[0].end()),
         *std::max_element(times[1].begin(), times[1].end()));
  fflush(stdout);
  RecordProperty("exec_median_us", int(execMedian * 1000));
  RecordProperty("forkserver_median_us", int(forkMedian * 1000));
  EXPECT_LT(forkMedian, execMedian);
}

// A root run through harrow::main (this binary with --as-root, see asRoot below) with HARROW_SPAWN
// set to `spawnEnv`, while this process is a child subreaper: whatever the root leaves behind
// (its zygote, a child) is re-parented to us when it exits, and shows up as our child.
void runRootProcess(kj::StringPtr spawnEnv, std::vector<std::string> args) {
  auto self = selfExecutable();
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (strncmp(*e, "HARROW_SPAWN=", 13) != 0) env.push_back(*e);
  }
  env.push_back(std::string("HARROW_SPAWN=") + spawnEnv.cStr());
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  args.insert(args.begin(), {self.cStr(), "--as-root"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // Unblocked SIGCHLD etc. would be inherited blocked: posix_spawn resets the mask.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attributes, &empty);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  KJ_SYSCALL(prctl(PR_SET_CHILD_SUBREAPER, 1));
  pid_t pid;
  int error = posix_spawn(&pid, self.cStr(), nullptr, &attributes, argv.data(), envp.data());
  posix_spawnattr_destroy(&attributes);
  ASSERT_EQ(error, 0) << strerror(error);
  // Waited for here, synchronously: no event loop turns (and reaps it) meanwhile.
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "HARROW_SPAWN=" << spawnEnv.cStr() << ": the root " << ChildProcess::describe(status).cStr();
  for (auto& child : childrenOf(getpid())) {
    if (child.pid == zygotePid()) continue;
    ADD_FAILURE() << "HARROW_SPAWN=" << spawnEnv.cStr() << ": the root left " << describe(child);
    int ignored;
    waitpid(child.pid, &ignored, 0);  // it is a zombie already, or dying of PR_SET_PDEATHSIG
  }
  KJ_SYSCALL(prctl(PR_SET_CHILD_SUBREAPER, 0));
}

TEST_F(ForkServerTest, RootThroughHarrowMainHasAZygoteUnlessExecOnly) {
  // Arguments: expect a zygote, DEFAULT forks, FORKSERVER forks, kill the zygote first.
  runRootProcess("forkserver", {"1", "1", "1", "0"});
  runRootProcess("exec", {"1", "0", "1", "0"});
  runRootProcess("", {"1", "0", "1", "0"});
  runRootProcess("exec-only", {"0", "0", "0", "0"});  // FORKSERVER falls back to exec
}

TEST_F(ForkServerTest, DeadZygoteIsAnErrorNamingTheActorThenExec) {
  runRootProcess("exec", {"1", "0", "1", "1"});
}

// The body of a root run through harrow::main (--as-root): checks what the test asked for and
// fails (exit status 1) otherwise.
Co<void> asRoot(Actor& root, char** argv) {
  bool expectZygote = argv[2][0] == '1';
  bool defaultForks = argv[3][0] == '1';
  bool forkServerForks = argv[4][0] == '1';
  bool killZygote = argv[5][0] == '1';
  KJ_REQUIRE((forkServerPid() != nullptr) == expectZygote, "zygote", expectZygote);

  auto check = [](Who::Reader who, bool forked, kj::StringPtr name) {
    KJ_REQUIRE(who.getPpid() == getpid(), name, who.getPpid());
    KJ_REQUIRE(who.getPgid() == who.getPid(), name);
    KJ_REQUIRE(wasExeced(who.getCmdline(), name) == !forked, name, forked, who.getCmdline());
  };

  co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
    SpawnOptions forkServer;
    forkServer.backend = SpawnBackend::FORKSERVER;
    if (killZygote) {
      pid_t zygote = KJ_ASSERT_NONNULL(forkServerPid());
      // Wait for it to be dead (a pidfd turns readable when its process exits), at most 5 s.
      int pidfd = static_cast<int>(syscall(SYS_pidfd_open, zygote, 0));
      KJ_SYSCALL(kill(zygote, SIGKILL));
      if (pidfd >= 0) {
        struct pollfd exited = {pidfd, POLLIN, 0};
        KJ_SYSCALL(poll(&exited, 1, 5000));
        close(pidfd);
      }
      kj::Maybe<kj::Exception> error;
      try {
        co_await nursery.startActor<PingActor>("after-zygote", "ping", forkServer);
      } catch (...) {
        error = currentException();
      }
      auto& e = KJ_REQUIRE_NONNULL(error, "spawning through a dead zygote succeeded");
      KJ_REQUIRE(contains(e, "harrow.SpawnFailed: actor 'after-zygote': the fork server"), e);
      KJ_REQUIRE(forkServerPid() == nullptr, "the dead zygote was kept");
      // Later forkserver spawns fall back to exec.
      auto ping = co_await nursery.startActor<PingActor>("after-zygote-2", "ping", forkServer);
      check((co_await ping.whoAmI())->getWho(), false, "after-zygote-2");
      co_return;
    }
    SpawnOptions byDefault, exec;
    exec.backend = SpawnBackend::EXEC;
    auto a = co_await nursery.startActor<PingActor>("root-default", "ping", byDefault);
    check((co_await a.whoAmI())->getWho(), defaultForks, "root-default");
    auto b = co_await nursery.startActor<PingActor>("root-exec", "ping", exec);
    check((co_await b.whoAmI())->getWho(), false, "root-exec");
    auto c = co_await nursery.startActor<PingActor>("root-forkserver", "ping", forkServer);
    check((co_await c.whoAmI())->getWho(), forkServerForks, "root-forkserver");
    KJ_REQUIRE((co_await c.ping("x"))->getText() == "pong: x");
  });
}

}  // namespace
}  // namespace harrow

// ---------------------------------------------------------------------------------------------

namespace {


}  // namespace

int main(int argc, char** argv) {
  harrow::Implementations implementations;
  implementations.add<harrow::PingImpl>("ping");
  if (argc > 1 && kj::StringPtr(argv[1]) == "--harrow-child") {
    return harrow::main(argc, argv, implementations,
                        [](harrow::Actor&) -> kj::Promise<void> { return kj::READY_NOW; });
  }
  if (argc == 6 && kj::StringPtr(argv[1]) == "--as-root") {
    return harrow::main(argc, argv, implementations,
                        [argv](harrow::Actor& root) { return harrow::asRoot(root, argv); });
  }
  // Every child gets a zygote of its own; set before ours forks, so forked children see it too.
  setenv("HARROW_SPAWN", "forkserver", 1);
  // Before any thread or event loop exists, as harrow::main does for a root.
  kj::UnixEventPort::captureChildExit();
  harrow::startForkServer(implementations);

  harrow::testing::installWatchdog("forkserver_test");
  ::testing::InitGoogleTest(&argc, argv);
  int result = RUN_ALL_TESTS();

  // Stopping the zygote reaps it: then nothing at all is left.
  pid_t zygote = harrow::zygotePid();
  harrow::stopForkServer();
  for (auto& child : harrow::childrenOf(getpid())) {
    fprintf(stderr, "forkserver_test: a child process is left: %s\n",
            harrow::describe(child).c_str());
    result = 1;
  }
  if (zygote != -1 && harrow::readStat(zygote) != nullptr) {
    fprintf(stderr, "forkserver_test: the zygote (pid %d) was not reaped\n", zygote);
    result = 1;
  }
  return result;
}
