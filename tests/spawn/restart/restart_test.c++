// Supervisors (runtime/spawn/supervisor.h) across real processes: which children a restart
// replaces under each strategy (told by their pids), restart types, the restart intensity failing
// the supervisor and escalating to its parent, portals to old instances failing typed while the
// supervisor's current portal works, and a restarted child's registry name.
//
// This binary is a harrow program: run with --harrow-child it is a Flaky actor; otherwise it runs
// the tests, each below an in-process root actor. After every test no child process of ours may
// be left (zombie or running), nor any pid an instance reported. Synchronisation is by events
// only: a call's answer or error, portal() resolving, whenEnded(); failAfter() and a watchdog
// alarm are the failure guards.

#include <harrow/harrow.h>
#include "tests/spawn/restart/flaky.capnp.harrow.h"
#include "tests/names.h"
#include "tests/root_test.h"
#include "tests/test_main.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>
#include <thread>

namespace harrow {
namespace {

class FlakyImpl : public FlakyActor::Server {
public:
  Co<void> info(InfoCall call) override {
    call.results().setPid(getpid());
    co_return;
  }
  Co<void> crash(CrashCall call) override {
    _exit(call.params().getStatus());
  }
  Co<void> quit(QuitCall) override {
    currentActor().cancel();
    co_return;
  }
  Co<void> hold(HoldCall) override { co_await kj::Promise<void>(kj::NEVER_DONE); }
  Co<void> crashLoop(CrashLoopCall) override {
    co_await openActorSupervisor([&](ActorSupervisor& sup) -> Co<void> {
      co_await sup.startChild<FlakyImpl>("inner");
      for (;;) {
        auto inner = co_await sup.portal<FlakyActor>("inner");
        // Its error (ActorRestarted, then ActorDied) is not ours to raise: the supervisor's is.
        co_await errorOf([&]() { return inner.crash(3); });
      }
    });
  }
};

// Each instance's start, as a line in $TEST_TMPDIR/<file> (every process of the test shares
// it, forked by the zygote or not): how many instances of a child were started, seen from them.
std::string startsFile(const char* file) {
  const char* dir = getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + file;
}
size_t countStart(const char* file) {
  std::ofstream(startsFile(file), std::ios::app) << getpid() << "\n";
  std::ifstream in(startsFile(file));
  size_t lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  return lines;
}

// A child that crashes 10 ms after each of its first three starts (the issue's crash loop: the
// crash comes while a group restart may still be starting its siblings), then stays up.
class CrashesSoonImpl final : public FlakyImpl {
public:
  CrashesSoonImpl() {
    if (countStart("crashes-soon.starts") <= 3) {
      std::thread([]() {
        usleep(10 * 1000);
        _exit(3);
      }).detach();
    }
  }
};

// A sibling that counts its starts.
class CountedImpl final : public FlakyImpl {
public:
  CountedImpl() { countStart("counted.starts"); }
};

Implementations& implementations() {
  static Implementations* impls = []() {
    auto* i = new Implementations;
    i->add<FlakyImpl>("flaky");
    i->add<CrashesSoonImpl>("crashes-soon");
    i->add<CountedImpl>("counted");
    return i;
  }();
  return *impls;
}

std::string text(const kj::Exception& e) { return e.getDescription().cStr(); }
bool contains(const kj::Exception& e, const std::string& what) {
  return text(e).find(what) != std::string::npos;
}

class RestartTest : public testing::RootTest<> {
protected:
  RestartTest() : RootTest("restart-test", implementations()) {}

  // The pid of child `name`'s current instance, asked through the supervisor's portal.
  Co<pid_t> pidOf(ActorSupervisor& sup, kj::StringPtr name) {
    auto portal = co_await sup.portal<FlakyActor>(name);
    pid_t pid = (co_await portal.info())->getPid();
    known.insert(pid);
    co_return pid;
  }

  // Crashes child `name` through its current portal; returns the error its caller got.
  Co<kj::Exception> crash(ActorSupervisor& sup, kj::StringPtr name, int status = 3) {
    auto portal = co_await sup.portal<FlakyActor>(name);
    auto failure = co_await errorOf([&]() { return portal.crash(status); });
    KJ_IF_MAYBE(e, failure) co_return kj::mv(*e);
    KJ_FAIL_ASSERT("crash() answered", name);
  }

  // Three permanent children a, b, c (in that order) under `strategy`; crashes b; returns each
  // one's pid before and after.
  struct Pids {
    pid_t before[3];
    pid_t after[3];
    uint32_t generations[3];
  };
  // harrow_restarts_total{actor=...,child=`child`} of the root (<harrow/engine/metrics.h>).
  double restartsMetric(kj::StringPtr child) {
    for (auto& family : root.metrics().families(root.identity().name)) {
      if (family.name != "harrow_restarts_total") continue;
      for (auto& sample : family.samples) {
        if (sample.labels[1].value == child) return sample.value;
      }
    }
    return 0;
  }

  Pids crashTheMiddleOne(Strategy strategy) {
    Pids pids = {};
    const char* names[] = {"a", "b", "c"};
    auto failure = runRoot([&]() -> Co<void> {
      co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
        for (auto name : names) co_await sup.startChild<FlakyImpl>(name);
        for (int i = 0; i < 3; ++i) pids.before[i] = co_await pidOf(sup, names[i]);
        auto e = co_await crash(sup, "b");
        EXPECT_TRUE(is(e, ErrorKind::ACTOR_RESTARTED)) << text(e);
        for (int i = 0; i < 3; ++i) pids.after[i] = co_await pidOf(sup, names[i]);
        for (int i = 0; i < 3; ++i) pids.generations[i] = sup.generation(names[i]);
        EXPECT_EQ(sup.restartCount(), 1u);
        EXPECT_EQ(restartsMetric("b"), 1.0);  // harrow_restarts_total{child="b"}
      }, {.strategy = strategy});
    });
    KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
    return pids;
  }
};

// ---------------------------------------------------------------------------------------------
// Strategies

TEST_F(RestartTest, OneForOneRestartsOnlyTheCrashedChild) {
  auto pids = crashTheMiddleOne(Strategy::ONE_FOR_ONE);
  EXPECT_EQ(pids.after[0], pids.before[0]);
  EXPECT_NE(pids.after[1], pids.before[1]);
  EXPECT_EQ(pids.after[2], pids.before[2]);
  EXPECT_EQ(pids.generations[0], 1u);
  EXPECT_EQ(pids.generations[1], 2u);
  EXPECT_EQ(pids.generations[2], 1u);
}

TEST_F(RestartTest, OneForAllRestartsEveryChild) {
  auto pids = crashTheMiddleOne(Strategy::ONE_FOR_ALL);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NE(pids.after[i], pids.before[i]) << i;
    EXPECT_EQ(pids.generations[i], 2u) << i;
  }
}

TEST_F(RestartTest, RestForOneRestartsTheChildAndThoseStartedAfterIt) {
  auto pids = crashTheMiddleOne(Strategy::REST_FOR_ONE);
  EXPECT_EQ(pids.after[0], pids.before[0]);
  EXPECT_NE(pids.after[1], pids.before[1]);
  EXPECT_NE(pids.after[2], pids.before[2]);
  EXPECT_EQ(pids.generations[0], 1u);
  EXPECT_EQ(pids.generations[1], 2u);
  EXPECT_EQ(pids.generations[2], 2u);
}

// A sibling stopped by a one_for_all restart: its callers get ActorRestarted too, and the
// supervisor's portal is to its new instance.
TEST_F(RestartTest, OneForAllSiblingsOldPortalFailsTyped) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      co_await sup.startChild<FlakyImpl>("a");
      auto b = co_await sup.startChild<FlakyImpl>("b");
      known.insert((co_await b.info())->getPid());
      co_await crash(sup, "a");
      co_await pidOf(sup, "b");  // the new b is up: the old one has been stopped
      auto e = co_await errorOf([&]() { return b.info(); });
      KJ_IF_MAYBE(error, e) {
        EXPECT_TRUE(is(*error, ErrorKind::ACTOR_RESTARTED)) << text(*error);
        EXPECT_TRUE(contains(*error, "actor 'b' restarted (generation 2)")) << text(*error);
      } else {
        ADD_FAILURE() << "the old b answered";
      }
    }, {.strategy = Strategy::ONE_FOR_ALL});
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

// A child that crashes 10 ms after each start, with a sibling started after it: each crash is
// one group restart that stops and starts the whole group (the sibling too) before the next crash
// is decided, even when that crash comes while the group is still being started (OTP: the
// supervisor handles one exit at a time). Three crashes are three restarts: the sibling starts
// four times, and an intensity of 3 is not exceeded.
TEST_F(RestartTest, AGroupRestartStopsAndStartsTheWholeGroupBeforeTheNextCrashIsDecided) {
  for (Strategy strategy : {Strategy::REST_FOR_ONE, Strategy::ONE_FOR_ALL}) {
    SCOPED_TRACE(strategyName(strategy).cStr());
    unlink(startsFile("crashes-soon.starts").c_str());
    unlink(startsFile("counted.starts").c_str());
    auto failure = runRoot([&]() -> Co<void> {
      co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
        co_await sup.startChild<CrashesSoonImpl>("a");
        co_await sup.startChild<CountedImpl>("b");
        // Each of a's first three instances ends under a call that never answers (one may end
        // before it is called: a's first crash can come while b is still starting).
        for (;;) {
          auto a = co_await sup.portal<FlakyActor>("a");
          if (sup.generation("a") > 3) break;
          auto e = co_await errorOf([&]() { return a.hold(); });
          KJ_IF_MAYBE(error, e) {
            EXPECT_TRUE(is(*error, ErrorKind::ACTOR_RESTARTED)) << text(*error);
          } else {
            ADD_FAILURE() << "hold() answered";
          }
        }
        co_await pidOf(sup, "a");  // the fourth instance stays up
        co_await pidOf(sup, "b");  // and the group around it is up
        EXPECT_EQ(sup.generation("a"), 4u);
        EXPECT_EQ(sup.generation("b"), 4u);
        EXPECT_EQ(sup.restartCount(), 3u);
      }, {.strategy = strategy, .intensity = 3, .period = 60 * kj::SECONDS,
          .backoffBase = 1 * kj::MILLISECONDS, .backoffMax = 1 * kj::MILLISECONDS});
    });
    KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
    std::ifstream in(startsFile("counted.starts"));
    size_t starts = 0;
    for (std::string line; std::getline(in, line);) ++starts;
    EXPECT_EQ(starts, 4u) << "the sibling's starts";
  }
}

// ---------------------------------------------------------------------------------------------
// Restart types

TEST_F(RestartTest, TransientChildExitingCleanlyIsNotRestartedButACrashIs) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      co_await sup.startChild<FlakyImpl>("crashes", {.restart = Restart::TRANSIENT});
      co_await sup.startChild<FlakyImpl>("quits", {.restart = Restart::TRANSIENT});
      pid_t first = co_await pidOf(sup, "crashes");
      co_await pidOf(sup, "quits");

      auto e = co_await crash(sup, "crashes");
      EXPECT_TRUE(is(e, ErrorKind::ACTOR_RESTARTED)) << text(e);
      EXPECT_NE(co_await pidOf(sup, "crashes"), first);

      auto quits = co_await sup.portal<FlakyActor>("quits");
      co_await errorOf([&]() { return quits.quit(); });  // answered or not: it exits
      co_await sup.whenEnded("quits");
      EXPECT_EQ(sup.generation("quits"), 1u);
      EXPECT_TRUE(sup.pidOf("quits") == nullptr);
      auto ended = co_await errorOf([&]() { return sup.portal<FlakyActor>("quits"); });
      KJ_IF_MAYBE(error, ended) {
        EXPECT_TRUE(is(*error, ErrorKind::ACTOR_DIED)) << text(*error);
        EXPECT_TRUE(contains(*error, "not restarted")) << text(*error);
      } else {
        ADD_FAILURE() << "a transient child that exited cleanly has a portal";
      }
      EXPECT_EQ(sup.restartCount(), 1u);
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

TEST_F(RestartTest, TemporaryChildIsNeverRestartedAndIsNoError) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      co_await sup.startChild<FlakyImpl>("once", {.restart = Restart::TEMPORARY});
      co_await sup.startChild<FlakyImpl>("sibling");
      pid_t sibling = co_await pidOf(sup, "sibling");
      co_await pidOf(sup, "once");
      auto e = co_await crash(sup, "once");
      EXPECT_TRUE(is(e, ErrorKind::ACTOR_DIED)) << text(e);
      co_await sup.whenEnded("once");
      EXPECT_EQ(sup.generation("once"), 1u);
      EXPECT_EQ(sup.restartCount(), 0u);
      EXPECT_EQ(co_await pidOf(sup, "sibling"), sibling);
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << "a temporary child's crash failed the supervisor: "
                                        << text(*e);
}

TEST_F(RestartTest, StoppedChildIsNotRestarted) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      co_await sup.startChild<FlakyImpl>("w");
      co_await pidOf(sup, "w");
      sup.stopChild("w");
      co_await sup.whenEnded("w");
      EXPECT_EQ(sup.restartCount(), 0u);
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

// ---------------------------------------------------------------------------------------------
// Restart intensity

// OTP's default (1 restart in 5 s): the first crash is restarted, the second fails the
// supervisor, which stops its other children and raises RestartIntensity to its parent nursery;
// that nursery fails like any other, cancelling its own children.
TEST_F(RestartTest, CrashLoopHitsTheIntensityAndEscalatesToTheParent) {
  pid_t bystander = 0;
  pid_t sibling = 0;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& outer) -> Co<void> {
      auto other = co_await outer.startActor<FlakyImpl>("bystander");
      bystander = (co_await other.info())->getPid();
      known.insert(bystander);
      co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
        co_await sup.startChild<FlakyImpl>("w");
        co_await sup.startChild<FlakyImpl>("sibling");
        sibling = co_await pidOf(sup, "sibling");
        co_await pidOf(sup, "w");
        auto first = co_await crash(sup, "w");
        EXPECT_TRUE(is(first, ErrorKind::ACTOR_RESTARTED)) << text(first);
        co_await pidOf(sup, "w");
        // The supervisor gives up as this call fails: the body is cancelled under it.
        co_await crash(sup, "w");
        ADD_FAILURE() << "the body went on after its supervisor gave up";
      });
      ADD_FAILURE() << "the supervisor did not fail";
    });
  });
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(is(*e, ErrorKind::RESTART_INTENSITY)) << text(*e);
    EXPECT_TRUE(contains(*e, "actor 'w' (generation 2")) << text(*e);
    EXPECT_TRUE(contains(*e, "exited with status 3")) << text(*e);
    EXPECT_TRUE(contains(*e, "restart 2 within 5 s, over the supervisor's intensity of 1"))
        << text(*e);
  } else {
    ADD_FAILURE() << "the crash loop did not escalate";
  }
  EXPECT_NE(bystander, 0);
  EXPECT_NE(sibling, 0);
}

// In a child actor: the supervisor's RestartIntensity fails the handler that opened it and
// reaches the caller a level up as a RemoteActorError that still names its kind and the child.
TEST_F(RestartTest, ASupervisorInAChildEscalatesToTheCaller) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto mid = co_await nursery.startActor<FlakyImpl>("mid");
      known.insert((co_await mid.info())->getPid());
      auto crashLoopError = co_await errorOf([&]() { return mid.crashLoop(); });
      KJ_IF_MAYBE(e, crashLoopError) {
        EXPECT_TRUE(isRemoteActorError(*e)) << text(*e);
        EXPECT_TRUE(contains(*e, "harrow.RestartIntensity from actor 'mid'")) << text(*e);
        EXPECT_TRUE(contains(*e, "actor 'inner' (generation 2")) << text(*e);
      } else {
        ADD_FAILURE() << "crashLoop returned";
      }
      // mid itself is fine, and its supervisor's children are gone.
      known.insert((co_await mid.info())->getPid());
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

// Intensity 3 in 60 s: three crashes are restarted (generation 4), the fourth fails the
// supervisor.
TEST_F(RestartTest, IntensityAndPeriodAreConfigurable) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      co_await sup.startChild<FlakyImpl>("w");
      for (int i = 0; i < 3; ++i) {
        co_await pidOf(sup, "w");
        auto e = co_await crash(sup, "w");
        EXPECT_TRUE(is(e, ErrorKind::ACTOR_RESTARTED)) << i << ": " << text(e);
      }
      EXPECT_EQ(sup.generation("w"), 4u);
      co_await pidOf(sup, "w");
      co_await crash(sup, "w");
      ADD_FAILURE() << "the body went on after its supervisor gave up";
    }, {.intensity = 3, .period = 60 * kj::SECONDS});
  });
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(is(*e, ErrorKind::RESTART_INTENSITY)) << text(*e);
    EXPECT_TRUE(contains(*e, "restart 4 within 60 s")) << text(*e);
  } else {
    ADD_FAILURE() << "the crash loop did not escalate";
  }
}

// A child that cannot be started again (its program now fails before its handshake) is retried,
// each try counting as a restart, until the intensity ends the supervisor.
TEST_F(RestartTest, AChildThatFailsToStartAgainIsRetriedUntilTheIntensity) {
  // The child's program: this binary the first time, then one that exits at once.
  std::string dir = getenv("TEST_TMPDIR") != nullptr ? getenv("TEST_TMPDIR") : "/tmp";
  std::string token = testing::uniqueName("once").cStr();
  std::string script = dir + "/" + token + ".sh";
  std::string marker = dir + "/" + token + ".started";
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  ASSERT_GT(n, 0);
  self[n] = '\0';
  {
    std::ofstream out(script);
    out << "#!/bin/sh\n"
        << "if [ -e '" << marker << "' ]; then exit 7; fi\n"
        << "touch '" << marker << "'\n"
        << "exec '" << self << "' \"$@\"\n";
  }
  ASSERT_EQ(chmod(script.c_str(), 0755), 0);
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      co_await sup.startChild<FlakyActor>("w", "flaky",
                                          {.spawn = {.executable = script.c_str()}});
      co_await pidOf(sup, "w");
      co_await crash(sup, "w");
      co_await sup.whenEnded("w");
      ADD_FAILURE() << "the body went on after its supervisor gave up";
    }, {.intensity = 3});
  });
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(is(*e, ErrorKind::RESTART_INTENSITY)) << text(*e);
    EXPECT_TRUE(contains(*e, "actor 'w' failed to start again")) << text(*e);
    EXPECT_TRUE(contains(*e, "exited with status 7")) << text(*e);
    EXPECT_TRUE(contains(*e, "restart 4 within 5 s")) << text(*e);
  } else {
    ADD_FAILURE() << "the supervisor did not give up";
  }
  unlink(script.c_str());
  unlink(marker.c_str());
}

// ---------------------------------------------------------------------------------------------
// Portals and names

TEST_F(RestartTest, OldPortalGetsTheTypedRestartedErrorAndTheNewPortalWorks) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      auto old = co_await sup.startChild<FlakyImpl>("w");
      pid_t oldPid = (co_await old.info())->getPid();
      known.insert(oldPid);
      EXPECT_EQ(KJ_ASSERT_NONNULL(sup.pidOf("w")), oldPid);

      // The call in flight when it crashed...
      auto inFlight = co_await errorOf([&]() { return old.crash(3); });
      KJ_IF_MAYBE(e, inFlight) {
        EXPECT_TRUE(is(*e, ErrorKind::ACTOR_RESTARTED)) << text(*e);
        EXPECT_TRUE(contains(*e, "actor 'w' restarted (generation 2)")) << text(*e);
        EXPECT_TRUE(contains(*e, "harrow.ActorDied")) << text(*e);
        EXPECT_TRUE(contains(*e, "exited with status 3")) << text(*e);
      } else {
        ADD_FAILURE() << "crash() answered";
      }
      // ...the current portal, once the new instance is up...
      auto now = co_await sup.portal<FlakyActor>("w");
      pid_t newPid = (co_await now.info())->getPid();
      known.insert(newPid);
      EXPECT_NE(newPid, oldPid);
      EXPECT_EQ(sup.generation("w"), 2u);
      // ...and a later call on the old portal.
      auto later = co_await errorOf([&]() { return old.info(); });
      KJ_IF_MAYBE(e, later) {
        EXPECT_TRUE(is(*e, ErrorKind::ACTOR_RESTARTED)) << text(*e);
      } else {
        ADD_FAILURE() << "the old instance answered";
      }
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

// ---------------------------------------------------------------------------------------------
// Backoff

// Without jitter the delays are exact lower bounds (the KJ timer never fires early): 200 ms, then
// 400 ms for the same child's second restart within the period. Meanwhile the actor serves on:
// a sibling answers while the crashed child is waiting for its restart.
TEST_F(RestartTest, BackoffDoublesOnTheTimerWhileTheActorServesOn) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      co_await sup.startChild<FlakyImpl>("w");
      auto b = co_await sup.startChild<FlakyImpl>("b");
      co_await pidOf(sup, "w");
      for (kj::Duration expected : {200 * kj::MILLISECONDS, 400 * kj::MILLISECONDS}) {
        co_await crash(sup, "w");
        auto crashedAt = root.timer().now();
        bool restarted = false;
        co_await openNursery([&](TaskNursery& both) -> Co<void> {
          both.startSoon([&]() -> Co<void> {
            co_await pidOf(sup, "w");
            restarted = true;
          });
          known.insert((co_await b.info())->getPid());
          EXPECT_FALSE(restarted) << "the sibling answered only after the restart";
        });
        auto took = root.timer().now() - crashedAt;
        EXPECT_GE(took, expected) << (took / kj::MILLISECONDS) << " ms";
      }
      EXPECT_EQ(sup.generation("w"), 3u);
    }, {.intensity = 5, .backoffBase = 200 * kj::MILLISECONDS, .backoffMax = kj::SECONDS,
        .jitter = false});
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

size_t openFds() {
  size_t n = 0;
  DIR* dir = opendir("/proc/self/fd");
  KJ_ASSERT(dir != nullptr);
  while (struct dirent* entry = readdir(dir)) n += entry->d_name[0] != '.';
  closedir(dir);
  return n;
}

// A long-lived supervisor does not accumulate the channels of ended instances: each child keeps
// the records of its last 8 (their portals fail with ActorRestarted), older ones are dropped
// (their portals raise TransportClosed).
TEST_F(RestartTest, OnlyTheLastEightEndedInstancesKeepTheirChannels) {
  constexpr int RESTARTS = 20;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      co_await sup.startChild<FlakyImpl>("w");
      co_await pidOf(sup, "w");
      size_t before = openFds();
      kj::Vector<FlakyActor::Portal> portals;
      for (int i = 0; i < RESTARTS; ++i) {
        portals.add(co_await sup.portal<FlakyActor>("w"));
        co_await crash(sup, "w");
      }
      co_await pidOf(sup, "w");
      EXPECT_EQ(sup.generation("w"), uint32_t(RESTARTS + 1));
      size_t after = openFds();
      // 8 kept, and perhaps one or two whose records are still being dropped.
      EXPECT_LE(after, before + 10) << "before " << before << ", after " << after;
      auto oldest = co_await errorOf([&]() { return portals[0].info(); });
      KJ_IF_MAYBE(e, oldest) {
        EXPECT_TRUE(isTransportClosed(*e)) << text(*e);
      } else {
        ADD_FAILURE() << "the first instance answered";
      }
      auto recent = co_await errorOf([&]() { return portals[RESTARTS - 1].info(); });
      KJ_IF_MAYBE(e, recent) {
        EXPECT_TRUE(is(*e, ErrorKind::ACTOR_RESTARTED)) << text(*e);
      } else {
        ADD_FAILURE() << "the last ended instance answered";
      }
    }, {.intensity = RESTARTS, .period = 600 * kj::SECONDS, .backoffMax = 10 * kj::MILLISECONDS});
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

TEST_F(RestartTest, TheRegistryNameResolvesToTheNewInstance) {
  DiscoveryOptions options;
  options.isRoot = true;
  options.mayHostRegistry = true;
  options.registryAddress = testing::uniqueAbstractAddress("restart-registry");
  options.bindAddresses.add(testing::uniqueAbstractAddress("restart-root"));
  options.childTransport = TransportKind::UNIX_ABSTRACT;
  setDiscovery(root, kj::mv(options));
  auto name = testing::uniqueName("restarted");
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      co_await sup.startChild<FlakyImpl>(name);
      pid_t oldPid = co_await pidOf(sup, name);
      auto maybeFound = co_await findActor<FlakyActor>(name);
      auto found = KJ_ASSERT_NONNULL(kj::mv(maybeFound));
      EXPECT_EQ((co_await found.info())->getPid(), oldPid);

      co_await crash(sup, name);
      // Its parent's messages are served once the actor has registered: after this answer the
      // new instance is in the registry.
      pid_t newPid = co_await pidOf(sup, name);
      auto maybeAgain = co_await findActor<FlakyActor>(name);
      auto again = KJ_ASSERT_NONNULL(kj::mv(maybeAgain));
      EXPECT_EQ((co_await again.info())->getPid(), newPid);
      EXPECT_NE(newPid, oldPid);
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

TEST_F(RestartTest, BadUseIsRefusedClearly) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      co_await sup.startChild<FlakyImpl>("w");
      known.insert(co_await pidOf(sup, "w"));
      auto duplicate = co_await errorOf([&]() { return sup.startChild<FlakyImpl>("w"); });
      KJ_IF_MAYBE(e, duplicate) {
        EXPECT_TRUE(contains(*e, "runs under that name already")) << text(*e);
      } else {
        ADD_FAILURE() << "a second child named w started";
      }
      auto nobody = co_await errorOf([&]() { return sup.portal<FlakyActor>("nobody"); });
      KJ_IF_MAYBE(e, nobody) {
        EXPECT_TRUE(contains(*e, "no child of that name")) << text(*e);
      } else {
        ADD_FAILURE() << "a portal to nobody";
      }
      auto unknown = co_await errorOf([&]() {
                    return sup.startChild<FlakyActor>("x", "no-such-implementation");
                  });
      KJ_IF_MAYBE(e, unknown) {
        EXPECT_TRUE(is(*e, ErrorKind::SPAWN_FAILED)) << text(*e);
      } else {
        ADD_FAILURE() << "an unknown implementation started";
      }
      EXPECT_EQ(sup.restartCount(), 0u);
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  return harrow::testing::multiProcessTestMain(argc, argv, harrow::implementations(), "restart_test");
}
