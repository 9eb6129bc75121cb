// Actors in real child processes. This test binary is itself a harrow program: run with
// --harrow-child it is a Probe actor (see main() at the bottom), otherwise it runs the tests,
// each of which spawns probes through an actor nursery and talks to them over their channels.
//
// Every test runs under two failure guards: failAfter() on the root's real timer (scope
// cancellation, so the nursery still tears its children down) and, should even that hang, an
// alarm that ends the whole process. After every test no child process of ours may remain:
// neither one still running, nor a zombie, nor one that outlived us as an orphan.

#include <harrow/discovery/discovery.h>
#include <harrow/spawn/actor_nursery.h>
#include <harrow/spawn/forkserver.h>
#include <harrow/main.h>
#include "tests/spawn/process/probe.capnp.harrow.h"
#include "tests/event_log.h"
#include "tests/processes.h"
#include "tests/root_test.h"
#include "tests/test_main.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace harrow {
namespace {

using Item = ProbeActor::Schema::Item;

// ---------------------------------------------------------------------------------------------
// The child side: the Probe actor.

// Every error a probe raises comes from this line, so the caller can check file and line.
[[noreturn]] void raise(kj::StringPtr what) { kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str("probe.Refused: ", what))); }
constexpr uint32_t RAISE_LINE = __LINE__ - 1;

// How a handler ended, for the probe's log.
kj::String how(const kj::Exception& e) {
  if (isCancelled(e)) return kj::str("cancelled");
  return kj::str("failed: ", e.getDescription());
}

// A deliberate crash: no core file, just SIGABRT.
[[noreturn]] void crash() {
  struct rlimit none = {0, 0};
  setrlimit(RLIMIT_CORE, &none);
  abort();
}

class ProbeImpl final : public ProbeActor::Server {
public:
  Co<void> echo(EchoCall call) override {
    // Copied in with memcpy, not kj::str's byte loop: the 65 MiB echo of the oversized-value test
    // then costs seconds under TSan (which instruments each byte of a loop), not half a minute.
    constexpr kj::StringPtr PREFIX = "echo: "_kj;
    auto text = call.params().getText();
    auto reply = call.results().initText(PREFIX.size() + text.size());
    memcpy(reply.begin(), PREFIX.begin(), PREFIX.size());
    memcpy(reply.begin() + PREFIX.size(), text.begin(), text.size());
    co_return;
  }

  Co<void> fail(FailCall call) override {
    co_await kj::Promise<void>(kj::READY_NOW);
    raise(call.params().getText());
  }

  Co<void> count(CountCall call) override {
    for (uint32_t i = 0; i < call.params().getN(); ++i) {
      co_await call.yield([&](Item::Builder item) { item.setValue(i); });
    }
  }

  Co<void> countThenFail(CountThenFailCall call) override {
    uint32_t n = call.params().getN();
    for (uint32_t i = 0; i < n; ++i) {
      co_await call.yield([&](Item::Builder item) { item.setValue(i); });
    }
    raise(kj::str("in a stream after ", n, " items"));
  }

  Co<void> endless(EndlessCall call) override {
    try {
      for (;;) {
        co_await call.yield([&](Item::Builder item) { item.setValue(endlessSent); });
        ++endlessSent;
        note(kj::str("endless yielded ", endlessSent));
      }
    } catch (...) {
      note(kj::str("endless ended: ", how(currentException())));
      throw;
    }
  }

  Co<void> session(SessionCall call) override {
    try {
      uint32_t sum = call.params().getStart();
      co_await call.started([&](Item::Builder started) { started.setValue(sum); });
      co_await call.openStream([&](auto& stream) -> Co<void> {
        while (auto item = co_await stream.receive()) {
          sum += item->getValue();
          co_await stream.send([&](Item::Builder reply) { reply.setValue(sum); });
        }
      });
      call.results().setSum(sum);
    } catch (...) {
      note(kj::str("session ended: ", how(currentException())));
      throw;
    }
    note("session ended: returned");
  }

  Co<void> failingSession(FailingSessionCall call) override {
    uint32_t afterItems = call.params().getAfterItems();
    co_await call.started([&](Item::Builder started) { started.setValue(afterItems); });
    co_await call.openStream([&](auto& stream) -> Co<void> {
      for (uint32_t i = 0; i < afterItems; ++i) {
        auto item = co_await stream.receive();
        uint32_t value = item->getValue();
        co_await stream.send([&](Item::Builder reply) { reply.setValue(value); });
      }
      raise(kj::str("in a context after ", afterItems, " items"));
    });
  }

  Co<void> selfCancel(SelfCancelCall call) override {
    co_await call.started([&](Item::Builder started) { started.setValue(1); });
    call.cancel();
    co_await kj::Promise<void>(kj::NEVER_DONE);  // the checkpoint where the cancel lands
  }

  Co<void> abortCall(AbortCallCall) override {
    co_await kj::Promise<void>(kj::READY_NOW);
    crash();
  }

  Co<void> abortStream(AbortStreamCall call) override {
    for (uint32_t i = 0; i < call.params().getAfter(); ++i) {
      co_await call.yield([&](Item::Builder item) { item.setValue(i); });
    }
    crash();
  }

  Co<void> hang(HangCall) override {
    note("hang started");
    try {
      co_await kj::Promise<void>(kj::NEVER_DONE);
    } catch (...) {
      note(kj::str("hang ended: ", how(currentException())));
      throw;
    }
  }

  Co<void> stubborn(StubbornCall) override {
    note("stubborn started");
    co_await shielded([]() -> Co<void> { co_await kj::Promise<void>(kj::NEVER_DONE); });
  }

  Co<void> waitFor(WaitForCall call) override {
    call.results().setEntry(co_await events.waitFor(call.params().getPrefix()));
  }

  Co<void> report(ReportCall call) override {
    auto results = call.results();
    results.setPid(getpid());
    results.setEndlessSent(endlessSent);
    auto entries = results.initLog(events.entries().size());
    for (auto i : kj::indices(events.entries())) entries.set(i, events.entries()[i]);
    co_return;
  }

private:
  testing::EventLog events;
  uint32_t endlessSent = 0;

  void note(kj::StringPtr entry) { events.add(entry); }
};

// What this program can run in its children (the same binary, re-executed or forked).
Implementations& implementations() {
  static Implementations* impls = []() {
    auto* i = new Implementations;
    i->add<ProbeImpl>("probe");
    return i;
  }();
  return *impls;
}

// ---------------------------------------------------------------------------------------------
// Processes: who is our child, and does a pid still exist.

using testing::childrenOf;
using testing::describe;
using testing::ProcStat;
using testing::readStat;


bool contains(const kj::Exception& e, const std::string& what) {
  return std::string(e.getDescription().cStr()).find(what) != std::string::npos;
}


// ---------------------------------------------------------------------------------------------
// The root side.

constexpr kj::Duration GRACEFUL_EXIT = 10 * kj::SECONDS;  // grace period where none is needed

class ProcessTest : public testing::RootTest<> {
protected:
  // runRoot's guard is the default 60 s, a failure bound only: the 65 MiB round trip below takes
  // 3 s on a quiet machine and came near 30 s on 2 cores at load 20.
  ProcessTest() : RootTest("process-test", implementations(), {.watchdogSeconds = 90}) {}

  std::vector<pid_t> spawned;  // every probe's pid, as it reported it, in order

  void TearDown() override {
    known.insert(spawned.begin(), spawned.end());
    RootTest::TearDown();
  }

  // Spawns a probe in `nursery` and records its pid (asked over its channel).
  Co<ProbeActor::Portal> startProbe(ActorNursery& nursery, kj::StringPtr name) {
    ProbeActor::Portal probe = co_await nursery.startActor<ProbeActor>(name, "probe");
    auto report = co_await probe.report();
    pid_t pid = report->getPid();
    spawned.push_back(pid);
    EXPECT_NE(pid, getpid());
    // It is a real child process of ours, named after the actor.
    KJ_IF_MAYBE(stat, readStat(pid)) {
      EXPECT_EQ(stat->ppid, getpid()) << describe(*stat);
      EXPECT_EQ(stat->comm, std::string(name.cStr()).substr(0, 15));
    } else {
      ADD_FAILURE() << "the probe's pid " << pid << " does not exist";
    }
    co_return probe;
  }

  // The common case: one probe in an actor nursery, `body(probe)` inside it, and all of it must
  // succeed (the nursery included: its child is cancelled and reaped without error).
  // The grace period is long, so a probe that did not leave on cancel-actor by itself (and was
  // killed at the end of it instead) shows as a slow teardown.
  void withProbe(kj::StringPtr name, kj::Function<kj::Promise<void>(ProbeActor::Portal&)> body) {
    ActorNurseryOptions options;
    options.gracePeriod = GRACEFUL_EXIT;
    kj::Maybe<kj::TimePoint> bodyDone;
    auto failure = runRoot([&]() -> Co<void> {
      co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
        auto probe = co_await startProbe(nursery, name);
        co_await body(probe);
        bodyDone = root.timer().now();
      }, options);
      KJ_IF_MAYBE(done, bodyDone) {
        EXPECT_LT(root.timer().now() - *done, GRACEFUL_EXIT) << "the probe was killed";
      }
    });
    KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
    EXPECT_TRUE(bodyDone != nullptr);
    EXPECT_EQ(spawned.size(), 1u);
  }
};

// A RemoteActorError raised by raise() in actor `actor`, with `message`.
void expectRefused(const kj::Maybe<kj::Exception>& raised, kj::StringPtr message,
                   kj::StringPtr actor) {
  KJ_IF_MAYBE(e, raised) {
    EXPECT_TRUE(isRemoteActorError(*e)) << kj::str(*e).cStr();
    KJ_IF_MAYBE(info, remoteErrorInfo(*e)) {
      EXPECT_EQ(info->kind, wire::ErrorKind::FAILED);
      EXPECT_EQ(std::string(info->type.cStr()), "probe.Refused");
      EXPECT_EQ(std::string(info->message.cStr()), message.cStr());
      EXPECT_EQ(std::string(info->origin.name.cStr()), actor.cStr());
      EXPECT_EQ(info->origin.uuid.size(), 16u);
      EXPECT_EQ(std::string(info->file.cStr()), __FILE__);
      EXPECT_EQ(info->line, RAISE_LINE);
      EXPECT_EQ(info->relayPath.size(), 0u);
    } else {
      ADD_FAILURE() << "no remote error info in: " << kj::str(*e).cStr();
    }
  } else {
    ADD_FAILURE() << "expected a RemoteActorError (" << message.cStr() << ")";
  }
}

// Implementations know the interface they serve: starting one as another interface fails before
// anything is spawned, naming both; starting one by its type needs no name at all.
TEST_F(ProcessTest, ImplementationsAreCheckedAgainstTheInterfaceTheyAreStartedAs) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      kj::Maybe<kj::Exception> wrong;
      try {
        co_await nursery.startActor<RegistryActor>("not-a-registry", "probe");
      } catch (...) {
        wrong = currentException();
      }
      KJ_IF_MAYBE(e, wrong) {
        EXPECT_TRUE(is(*e, ErrorKind::SPAWN_FAILED)) << kj::str(*e).cStr();
        EXPECT_NE(std::string(e->getDescription().cStr())
                      .find("implementation 'probe' serves Probe, not Registry"),
                  std::string::npos) << kj::str(*e).cStr();
      } else {
        ADD_FAILURE() << "a Probe implementation started as a Registry";
      }
      EXPECT_EQ(nursery.size(), 0u) << "something was spawned";

      ProbeActor::Portal byType = co_await nursery.startActor<ProbeImpl>("by-type");
      auto report = co_await byType.report();
      spawned.push_back(report->getPid());
      auto echo = co_await byType.echo("typed");
      EXPECT_EQ(std::string(echo->getText().cStr()), "echo: typed");
    }, {GRACEFUL_EXIT});
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
}

// tractor's Portal.cancel_actor: one child of a nursery is cancelled, gracefully; calls on it
// fail from then on, its sibling carries on, and the nursery ends without an error.
TEST_F(ProcessTest, CancellingOneChildLeavesItsSiblingRunning) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto a = co_await startProbe(nursery, "cancel-a");
      auto b = co_await startProbe(nursery, "cancel-b");
      nursery.cancelActor(a);
      kj::Maybe<kj::Exception> late;
      try {
        co_await a.echo("late");
      } catch (...) {
        late = currentException();
      }
      EXPECT_TRUE(late != nullptr) << "a call on a cancelled child succeeded";
      auto echo = co_await b.echo("still here");
      EXPECT_EQ(std::string(echo->getText().cStr()), "echo: still here");
    }, {GRACEFUL_EXIT});
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
}

// A portal kept past its actor nursery (the child is gone, and so is the channel it pointed to)
// raises harrow.TransportClosed when used: it never touches freed memory (checked under ASan).
TEST_F(ProcessTest, APortalOutlivingItsNurseryFailsSafely) {
  kj::Maybe<ProbeActor::Portal> kept;
  kj::Maybe<kj::Exception> late;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto probe = co_await startProbe(nursery, "probe-kept");
      kept = probe;  // a copy, kept past the nursery
    }, {GRACEFUL_EXIT});
    auto& portal = KJ_ASSERT_NONNULL(kept);
    try {
      co_await portal.echo("anyone there?");
    } catch (...) {
      late = currentException();
    }
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
  KJ_IF_MAYBE(e, late) {
    EXPECT_TRUE(is(*e, ErrorKind::TRANSPORT_CLOSED)) << kj::str(*e).cStr();
    EXPECT_TRUE(contains(*e, "this portal's channel is gone")) << kj::str(*e).cStr();
  } else {
    ADD_FAILURE() << "a call through a portal to a reaped actor succeeded";
  }
}

// startActor owns what it needs after its first suspension: started with temporaries for the
// name and the implementation, stored and awaited later (how children start concurrently), each
// child runs the right implementation under the right name.
TEST_F(ProcessTest, ActorsStartedConcurrentlyFromTemporaryNames) {
  constexpr int N = 4;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      kj::Vector<Co<ProbeActor::Portal>> starting;
      for (int i = 0; i < N; ++i) {
        starting.add(nursery.startActor<ProbeActor>(kj::str("temp-", i), kj::str("probe")));
      }
      for (int i = 0; i < N; ++i) {
        auto probe = co_await kj::mv(starting[i]);
        auto report = co_await probe.report();
        spawned.push_back(report->getPid());
        KJ_IF_MAYBE(stat, readStat(report->getPid())) {
          EXPECT_EQ(stat->comm, "temp-" + std::to_string(i));
        }
        auto echo = co_await probe.echo(kj::str("hello ", i));
        EXPECT_EQ(std::string(echo->getText().cStr()), "echo: hello " + std::to_string(i));
      }
    }, {GRACEFUL_EXIT});
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
}

TEST_F(ProcessTest, CallStreamAndContextWorkAcrossProcesses) {
  withProbe("probe-kinds", [&](ProbeActor::Portal& probe) -> Co<void> {
    // A call.
    auto reply = co_await probe.echo("hi");
    EXPECT_EQ(std::string(reply->getText().cStr()), "echo: hi");

    // A stream, longer than the credit window, so credit has to flow back.
    std::vector<uint32_t> got;
    co_await probe.count(300, [&](ProbeActor::Portal::CountStream& items) -> Co<void> {
      while (auto item = co_await items.receive()) got.push_back(item->getValue());
    });
    KJ_ASSERT(got.size() == 300u, got.size());
    for (uint32_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], i);

    // A context: started, a stream both ways, then the result.
    std::vector<uint32_t> sums;
    uint32_t startedWith = 0;
    auto result = co_await probe.session(100,
        [&](ProbeActor::Portal::SessionContext& ctx, Item::Reader started) -> Co<void> {
          startedWith = started.getValue();
          co_await ctx.openStream([&](auto& stream) -> Co<void> {
            for (uint32_t by = 1; by <= 5; ++by) {
              co_await stream.send([&](Item::Builder item) { item.setValue(by); });
              auto sum = co_await stream.receive();
              sums.push_back(sum->getValue());
            }
          });
        });
    EXPECT_EQ(startedWith, 100u);
    EXPECT_EQ(sums, (std::vector<uint32_t>{101, 103, 106, 110, 115}));
    KJ_ASSERT(bool(result));
    EXPECT_EQ(result->getSum(), 115u);
    auto ended = co_await probe.waitFor("session ended");
    EXPECT_EQ(std::string(ended->getEntry().cStr()), "session ended: returned");
  });
}

TEST_F(ProcessTest, ErrorsInEveryKindOfMethodArriveAsRemoteActorError) {
  withProbe("probe-errors", [&](ProbeActor::Portal& probe) -> Co<void> {
    // A call.
    kj::Maybe<kj::Exception> callError;
    try {
      co_await probe.fail("in a call");
    } catch (...) {
      callError = currentException();
    }
    expectRefused(callError, "in a call", "probe-errors");

    // A stream: the items yielded before the error arrive, then the error.
    std::vector<uint32_t> got;
    kj::Maybe<kj::Exception> streamError;
    try {
      co_await probe.countThenFail(3, [&](ProbeActor::Portal::CountThenFailStream& items) -> Co<void> {
        while (auto item = co_await items.receive()) got.push_back(item->getValue());
      });
    } catch (...) {
      streamError = currentException();
    }
    EXPECT_EQ(got, (std::vector<uint32_t>{0, 1, 2}));
    expectRefused(streamError, "in a stream after 3 items", "probe-errors");

    // A context, after started and two items each way.
    std::vector<uint32_t> echoed;
    kj::Maybe<kj::Exception> contextError;
    try {
      co_await probe.failingSession(2,
          [&](ProbeActor::Portal::FailingSessionContext& ctx, Item::Reader) -> Co<void> {
            co_await ctx.openStream([&](auto& stream) -> Co<void> {
              for (uint32_t i = 10; i < 12; ++i) {
                co_await stream.send([&](Item::Builder item) { item.setValue(i); });
                echoed.push_back((co_await stream.receive())->getValue());
              }
              co_await stream.receive();  // the callee fails instead of answering
              ADD_FAILURE() << "the failing context's stream went on";
            });
          });
    } catch (...) {
      contextError = currentException();
    }
    EXPECT_EQ(echoed, (std::vector<uint32_t>{10, 11}));
    expectRefused(contextError, "in a context after 2 items", "probe-errors");

    // Each error ended its own task only: the actor still serves.
    auto reply = co_await probe.echo("still alive");
    EXPECT_EQ(std::string(reply->getText().cStr()), "echo: still alive");
  });
}

// A stream from a child process broadcast to local subscribers (MsgStream::subscribe): readers
// get every item, an idle SKIP subscriber only its newest few; an error reaches every one.
TEST_F(ProcessTest, AStreamFromAChildIsBroadcastToLocalSubscribers) {
  withProbe("probe-broadcast", [&](ProbeActor::Portal& probe) -> Co<void> {
    std::vector<uint32_t> a, b, skipped;
    co_await probe.count(300, [&](ProbeActor::Portal::CountStream& items) -> Co<void> {
      auto first = items.subscribe();
      auto second = items.subscribe({.onLag = OnLag::BACKPRESSURE});
      auto idle = items.subscribe({.capacity = 8, .onLag = OnLag::SKIP});
      co_await openNursery([&](TaskNursery& n) -> Co<void> {
        n.startSoon([&]() -> Co<void> {
          while (auto item = co_await first.receive()) a.push_back(item->getValue());
        });
        n.startSoon([&]() -> Co<void> {
          while (auto item = co_await second.receive()) b.push_back(item->getValue());
        });
        co_return;
      });
      while (auto item = co_await idle.receive()) skipped.push_back(item->getValue());
    });
    KJ_ASSERT(a.size() == 300u, a.size());
    for (uint32_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], i);
    EXPECT_EQ(b, a);
    EXPECT_EQ(skipped, (std::vector<uint32_t>{292, 293, 294, 295, 296, 297, 298, 299}));

    std::vector<kj::Maybe<kj::Exception>> errors(2);
    auto streamError = co_await errorOf([&]() {
      return probe.countThenFail(3, [&](ProbeActor::Portal::CountThenFailStream& items)
                                        -> Co<void> {
        auto first = items.subscribe();
        auto second = items.subscribe();
        co_await openNursery([&](TaskNursery& n) -> Co<void> {
          auto drainInto = [](Subscriber<Item>& subscriber, kj::Maybe<kj::Exception>& error) {
            return [&subscriber, &error]() -> Co<void> {
              error = co_await errorOf([&]() -> Co<void> {
                while (co_await subscriber.receive()) {}
              });
            };
          };
          n.startSoon(drainInto(first, errors[0]));
          n.startSoon(drainInto(second, errors[1]));
          co_return;
        });
      });
    });
    expectRefused(streamError, "in a stream after 3 items", "probe-broadcast");
    expectRefused(errors[0], "in a stream after 3 items", "probe-broadcast");
    expectRefused(errors[1], "in a stream after 3 items", "probe-broadcast");
  });
}

TEST_F(ProcessTest, LeavingAStreamBlockEarlyCancelsTheRemoteTask) {
  withProbe("probe-early-exit", [&](ProbeActor::Portal& probe) -> Co<void> {
    std::vector<uint32_t> got;
    co_await probe.endless([&](ProbeActor::Portal::EndlessStream& items) -> Co<void> {
      for (int i = 0; i < 5; ++i) {
        auto item = co_await items.receive();
        got.push_back(item->getValue());
      }
    });  // leaving early is not an error
    EXPECT_EQ(got, (std::vector<uint32_t>{0, 1, 2, 3, 4}));
    auto ended = co_await probe.waitFor("endless ended");
    EXPECT_EQ(std::string(ended->getEntry().cStr()), "endless ended: cancelled");
  });
}

TEST_F(ProcessTest, ContextCancelledByTheCallerIsAbsorbed) {
  withProbe("probe-caller-cancel", [&](ProbeActor::Portal& probe) -> Co<void> {
    uint32_t firstSum = 0;
    auto result = co_await probe.session(7,
        [&](ProbeActor::Portal::SessionContext& ctx, Item::Reader started) -> Co<void> {
          EXPECT_EQ(started.getValue(), 7u);
          co_await ctx.openStream([&](auto& stream) -> Co<void> {
            co_await stream.send([&](Item::Builder item) { item.setValue(5); });
            firstSum = (co_await stream.receive())->getValue();
            ctx.cancel();  // while the callee waits for our next item
          });
          EXPECT_TRUE(ctx.cancelCalled());
        });
    EXPECT_EQ(firstSum, 12u);
    EXPECT_FALSE(result);  // cancelled by us: no result, and no error
    auto ended = co_await probe.waitFor("session ended");
    EXPECT_EQ(std::string(ended->getEntry().cStr()), "session ended: cancelled");
  });
}

TEST_F(ProcessTest, ContextCancelledByTheCalleeRaisesContextCancelled) {
  withProbe("probe-self-cancel", [&](ProbeActor::Portal& probe) -> Co<void> {
    bool started = false;
    kj::Maybe<kj::Exception> error;
    try {
      co_await probe.selfCancel(
          [&](ProbeActor::Portal::SelfCancelContext& ctx, Item::Reader value) -> Co<void> {
            started = value.getValue() == 1;
            co_await ctx.openStream([&](auto& stream) -> Co<void> {
              co_await stream.receive();  // the callee cancels instead of sending
              ADD_FAILURE() << "the self-cancelled context's stream went on";
            });
          });
    } catch (...) {
      error = currentException();
    }
    EXPECT_TRUE(started);
    KJ_IF_MAYBE(e, error) {
      EXPECT_TRUE(isContextCancelled(*e)) << kj::str(*e).cStr();
      EXPECT_FALSE(isRemoteActorError(*e));
      KJ_IF_MAYBE(info, remoteErrorInfo(*e)) {
        EXPECT_EQ(info->kind, wire::ErrorKind::CONTEXT_CANCELLED);
        EXPECT_EQ(std::string(info->origin.name.cStr()), "probe-self-cancel");
      } else {
        ADD_FAILURE() << "no remote error info in: " << kj::str(*e).cStr();
      }
    } else {
      ADD_FAILURE() << "a context the callee cancelled returned normally";
    }
    auto reply = co_await probe.echo("after");
    EXPECT_EQ(std::string(reply->getText().cStr()), "echo: after");
  });
}

// What a caller, or the nursery, raises for an actor that died: ActorDied naming the actor, its
// pid (when the test knows it) and how it ended.
void expectActorDied(const kj::Maybe<kj::Exception>& raised, kj::StringPtr actor, pid_t pid,
                     kj::StringPtr how) {
  KJ_IF_MAYBE(e, raised) {
    EXPECT_TRUE(isActorDied(*e)) << kj::str(*e).cStr();
    auto named = pid > 0 ? kj::str("actor '", actor, "' (pid ", pid, ") ")
                         : kj::str("actor '", actor, "' (pid ");
    EXPECT_TRUE(contains(*e, named.cStr())) << kj::str(*e).cStr();
    EXPECT_TRUE(contains(*e, how.cStr())) << kj::str(*e).cStr();
    EXPECT_FALSE(isCancelled(*e));
    EXPECT_FALSE(isTooSlow(*e)) << "the guard fired: something hung";
  } else {
    ADD_FAILURE() << "nothing was raised for an actor that died (" << actor.cStr() << ")";
  }
}

constexpr kj::StringPtr ABORTED = "killed by signal 6 (Aborted)"_kj;
constexpr kj::StringPtr KILLED = "killed by signal 9 (Killed)"_kj;

TEST_F(ProcessTest, ChildAbortingMidCallIsAnErrorNotAHang) {
  kj::Maybe<kj::Exception> callError;
  auto nurseryError = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto probe = co_await startProbe(nursery, "probe-abort-call");
      try {
        co_await probe.abortCall();
      } catch (...) {
        callError = currentException();
      }
    });
  });
  KJ_ASSERT(spawned.size() == 1);
  expectActorDied(callError, "probe-abort-call", spawned[0], ABORTED);
  expectActorDied(nurseryError, "probe-abort-call", spawned[0], ABORTED);
}

TEST_F(ProcessTest, ChildAbortingMidStreamIsAnErrorNotAHang) {
  std::vector<uint32_t> got;
  kj::Maybe<kj::Exception> streamError;
  auto nurseryError = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto probe = co_await startProbe(nursery, "probe-abort-stream");
      try {
        co_await probe.abortStream(5, [&](ProbeActor::Portal::AbortStreamStream& items) -> Co<void> {
          while (auto item = co_await items.receive()) got.push_back(item->getValue());
        });
      } catch (...) {
        streamError = currentException();
      }
    });
  });
  // What the child wrote before it died may arrive; nothing else does.
  EXPECT_LE(got.size(), 5u);
  for (uint32_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], i);
  KJ_ASSERT(spawned.size() == 1);
  expectActorDied(streamError, "probe-abort-stream", spawned[0], ABORTED);
  expectActorDied(nurseryError, "probe-abort-stream", spawned[0], ABORTED);
}

// kill -9 of a child while calls to it are in flight: one it is running, one sent after the kill
// before anyone noticed (its send may meet a broken pipe), and one once it is known dead. Every
// caller gets ActorDied naming the child, its pid and the signal, never the channel's EOF or
// reset; the nursery raises the same.
TEST_F(ProcessTest, KillMinus9MidCallEveryCallerGetsActorDied) {
  kj::Maybe<kj::Exception> runningError, sentAfterError, laterError;
  auto nurseryError = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto probe = co_await startProbe(nursery, "probe-kill-call");
      co_await openNursery([&](TaskNursery& calls) -> Co<void> {
        calls.startSoon([&]() -> Co<void> {
          try {
            co_await probe.hang();
          } catch (...) {
            runningError = currentException();
          }
        });
        co_await probe.waitFor("hang started");
        KJ_SYSCALL(kill(spawned[0], SIGKILL));
        try {
          co_await probe.echo("after the kill");
        } catch (...) {
          sentAfterError = currentException();
        }
      });
      try {
        co_await probe.echo("once it is known dead");
      } catch (...) {
        laterError = currentException();
      }
    });
  });
  KJ_ASSERT(spawned.size() == 1);
  expectActorDied(runningError, "probe-kill-call", spawned[0], KILLED);
  expectActorDied(sentAfterError, "probe-kill-call", spawned[0], KILLED);
  expectActorDied(laterError, "probe-kill-call", spawned[0], KILLED);
  expectActorDied(nurseryError, "probe-kill-call", spawned[0], KILLED);
}

// kill -9 of a child in the middle of a stream it sends: what it sent before may still arrive,
// then the consumer gets ActorDied.
TEST_F(ProcessTest, KillMinus9MidStreamTheConsumerGetsActorDied) {
  uint32_t got = 0;
  kj::Maybe<kj::Exception> streamError;
  auto nurseryError = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto probe = co_await startProbe(nursery, "probe-kill-stream");
      try {
        co_await probe.endless([&](ProbeActor::Portal::EndlessStream& items) -> Co<void> {
          while (auto item = co_await items.receive()) {
            EXPECT_EQ(item->getValue(), got);
            if (got++ == 0) {
              KJ_SYSCALL(kill(spawned[0], SIGKILL));
            }
          }
          ADD_FAILURE() << "the stream of a killed child ended normally";
        });
      } catch (...) {
        streamError = currentException();
      }
    });
  });
  KJ_ASSERT(spawned.size() == 1);
  EXPECT_GE(got, 1u);
  expectActorDied(streamError, "probe-kill-stream", spawned[0], KILLED);
  expectActorDied(nurseryError, "probe-kill-stream", spawned[0], KILLED);
}

// kill -9 of a child in the middle of a context while the caller keeps sending into it: the
// sends go on into the dead channel only until the loss is known (at most a credit window), then
// the caller gets ActorDied.
TEST_F(ProcessTest, KillMinus9MidContextTheSendingCallerGetsActorDied) {
  uint32_t sent = 0;
  kj::Maybe<kj::Exception> contextError;
  auto nurseryError = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto probe = co_await startProbe(nursery, "probe-kill-context");
      try {
        co_await probe.session(0,
            [&](ProbeActor::Portal::SessionContext& ctx, Item::Reader) -> Co<void> {
              co_await ctx.openStream([&](auto& stream) -> Co<void> {
                co_await stream.send([&](Item::Builder item) { item.setValue(1); });
                EXPECT_EQ((co_await stream.receive())->getValue(), 1u);  // the session is up
                KJ_SYSCALL(kill(spawned[0], SIGKILL));
                for (;;) {
                  co_await stream.send([&](Item::Builder item) { item.setValue(1); });
                  ++sent;
                }
              });
            });
      } catch (...) {
        contextError = currentException();
      }
    });
  });
  KJ_ASSERT(spawned.size() == 1);
  EXPECT_LE(sent, PeerOptions{}.window);
  expectActorDied(contextError, "probe-kill-context", spawned[0], KILLED);
  expectActorDied(nurseryError, "probe-kill-context", spawned[0], KILLED);
}

// A child that ends before its hello (here a program that is no harrow actor at all): startActor
// raises ActorDied, naming the actor and its exit status.
TEST_F(ProcessTest, ChildDyingBeforeItsHandshakeRaisesActorDied) {
  kj::Maybe<kj::Exception> startError;
  auto nurseryError = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      SpawnOptions options;
      options.executable = "/bin/false";
      try {
        co_await nursery.startActor<ProbeActor>("probe-no-hello", "probe", options);
      } catch (...) {
        startError = currentException();
      }
    });
  });
  expectActorDied(startError, "probe-no-hello", 0, "exited with status 1");
  KJ_IF_MAYBE(e, nurseryError) ADD_FAILURE() << "the nursery raised: " << kj::str(*e).cStr();
}

TEST_F(ProcessTest, TenThousandConcurrentCallsOnOneChildsChannel) {
  withProbe("probe-load", [&](ProbeActor::Portal& probe) -> Co<void> {
    constexpr int CALLS = 10000;
    int ok = 0;
    co_await openNursery([&](TaskNursery& n) -> Co<void> {
      for (int i = 0; i < CALLS; ++i) {
        n.startSoon([&probe, &ok, i]() -> Co<void> {
          auto text = kj::str(i);
          auto reply = co_await probe.echo(text);
          if (reply->getText() == kj::str("echo: ", i)) ++ok;
        });
      }
      co_return;
    });
    EXPECT_EQ(ok, CALLS);
  });
}

TEST_F(ProcessTest, SlowConsumerHoldsAFastProducerToTheWindowWhileCallsFlow) {
  withProbe("probe-credit", [&](ProbeActor::Portal& probe) -> Co<void> {
    const uint32_t window = PeerOptions{}.window;  // what actor nurseries' channels use
    co_await probe.endless([&](ProbeActor::Portal::EndlessStream& items) -> Co<void> {
      auto first = co_await items.receive();
      EXPECT_EQ(first->getValue(), 0u);
      // We stop reading. The producer fills the window, then waits for credit...
      co_await probe.waitFor(kj::str("endless yielded ", window));
      // ...while calls on the same channel keep flowing,
      for (int i = 0; i < 100; ++i) {
        auto reply = co_await probe.echo("still here");
        EXPECT_EQ(std::string(reply->getText().cStr()), "echo: still here");
      }
      // and it has not yielded a single item beyond the window.
      EXPECT_EQ((co_await probe.report())->getEndlessSent(), window);

      // Consuming half a window returns that much credit, and, the items being small, grows the
      // window (doubling, docs/PROTOCOL.md, "Flow control"): the producer moves on by exactly as
      // much.
      for (uint32_t i = 1; i < window / 2; ++i) {
        auto item = co_await items.receive();
        EXPECT_EQ(item->getValue(), i);
      }
      const uint32_t growth = kj::min(window, PeerOptions{}.maxWindow - window);
      const uint32_t held = window + window / 2 + growth;
      co_await probe.waitFor(kj::str("endless yielded ", held));
      for (int i = 0; i < 20; ++i) co_await probe.echo("again");
      EXPECT_EQ((co_await probe.report())->getEndlessSent(), held);
    });
    auto ended = co_await probe.waitFor("endless ended");
    EXPECT_EQ(std::string(ended->getEntry().cStr()), "endless ended: cancelled");
  });
}

TEST_F(ProcessTest, CancelScopeAroundAHangingCallCancelsTheRemoteTask) {
  withProbe("probe-hang-scope", [&](ProbeActor::Portal& probe) -> Co<void> {
    bool returned = false;
    CancelScope scope;
    co_await scope.run([&]() -> Co<void> {
      co_await openNursery([&](TaskNursery& n) -> Co<void> {
        n.startSoon([&]() -> Co<void> {
          co_await probe.hang();
          returned = true;
        });
        co_await probe.waitFor("hang started");
        scope.cancel();
      });
    });
    EXPECT_TRUE(scope.cancelledCaught());
    EXPECT_FALSE(returned);
    auto ended = co_await probe.waitFor("hang ended");
    EXPECT_EQ(std::string(ended->getEntry().cStr()), "hang ended: cancelled");
  });
}

TEST_F(ProcessTest, MoveOnAfterAHangingCallCancelsTheRemoteTask) {
  withProbe("probe-hang-timer", [&](ProbeActor::Portal& probe) -> Co<void> {
    bool returned = false;
    bool cut = co_await moveOnAfter(root.timer(), 200 * kj::MILLISECONDS, [&]() -> Co<void> {
      co_await probe.hang();
      returned = true;
    });
    EXPECT_TRUE(cut);
    EXPECT_FALSE(returned);
    auto ended = co_await probe.waitFor("hang ended");
    EXPECT_EQ(std::string(ended->getEntry().cStr()), "hang ended: cancelled");
    auto report = co_await probe.report();
    std::vector<std::string> log;
    for (auto entry : report->getLog()) log.push_back(entry.cStr());
    EXPECT_EQ(log, (std::vector<std::string>{"hang started", "hang ended: cancelled"}));
  });
}

// Every KJ log line of this process at WARNING or above.
class WarningCapture final : public kj::ExceptionCallback {
public:
  std::vector<std::string> warnings;
  void logMessage(kj::LogSeverity severity, const char* file, int line, int contextDepth,
                  kj::String&& text) override {
    if (severity >= kj::LogSeverity::WARNING) warnings.push_back(text.cStr());
    next.logMessage(severity, file, line, contextDepth, kj::mv(text));
  }
};

// A value over the message limit: the caller gets exactly one typed error, at the call, naming
// the method, the actor and the limit; the start never leaves, so the child hears of nothing and
// the channel carries on. The root's limit is inherited by its child (spawnSpec): a value over the
// default 64 MiB, within the root's 80 MiB, goes through both ways.
TEST_F(ProcessTest, OversizedValueGivesOneTypedErrorAndTheLimitIsInherited) {
  WarningCapture capture;
  root.setMaxMessageBytes(80u << 20);
  auto filled = [](size_t bytes) {
    auto text = kj::heapString(bytes);
    memset(text.begin(), 'v', bytes);
    return text;
  };
  withProbe("probe-large", [&](ProbeActor::Portal& probe) -> Co<void> {
    auto reply = co_await probe.echo(filled(65u << 20));
    EXPECT_EQ(reply->getText().size(), (65u << 20) + 6);

    kj::Maybe<kj::Exception> failure;
    try {
      co_await probe.echo(filled(81u << 20));
    } catch (...) {
      failure = currentException();
    }
    KJ_IF_MAYBE(e, failure) {
      EXPECT_TRUE(isMessageTooLarge(*e)) << kj::str(*e).cStr();
      EXPECT_FALSE(isRemoteActorError(*e));
      EXPECT_TRUE(contains(*e, "the call Probe.echo to actor 'probe-large'")) << kj::str(*e).cStr();
      EXPECT_TRUE(contains(*e, "over the limit of 83886080 bytes")) << kj::str(*e).cStr();
    } else {
      ADD_FAILURE() << "an 81 MiB value went through an 80 MiB limit";
    }
    auto again = co_await probe.echo("small");
    EXPECT_EQ(std::string(again->getText().cStr()), "echo: small");
  });
  EXPECT_TRUE(capture.warnings.empty()) << capture.warnings.front();
}

TEST_F(ProcessTest, CancellingTheScopeAroundAnActorNurseryStopsItsChildren) {
  CancelScope outer;
  bool returned = false;
  auto failure = runRoot([&]() -> Co<void> {
    co_await outer.run([&]() -> Co<void> {
      co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
        auto first = co_await startProbe(nursery, "probe-outer-1");
        auto second = co_await startProbe(nursery, "probe-outer-2");
        co_await openNursery([&](TaskNursery& n) -> Co<void> {
          n.startSoon([&]() -> Co<void> {
            co_await first.hang();
            returned = true;
          });
          n.startSoon([&]() -> Co<void> {
            co_await second.hang();
            returned = true;
          });
          co_await first.waitFor("hang started");
          co_await second.waitFor("hang started");
          outer.cancel();
        });
      });
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
  EXPECT_TRUE(outer.cancelledCaught());
  EXPECT_FALSE(returned);
  EXPECT_EQ(spawned.size(), 2u);
}

TEST_F(ProcessTest, BodyErrorCancelsTheChildrenAndIsRaisedAsIs) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto first = co_await startProbe(nursery, "probe-body-1");
      auto second = co_await startProbe(nursery, "probe-body-2");
      co_await first.echo("a");
      co_await second.echo("b");
      kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                            kj::str("test.GaveUp: the body failed")));
    });
  });
  KJ_IF_MAYBE(e, failure) {
    EXPECT_EQ(std::string(e->getDescription().cStr()), "test.GaveUp: the body failed");
  } else {
    ADD_FAILURE() << "the body's error was lost";
  }
  EXPECT_EQ(spawned.size(), 2u);
}

TEST_F(ProcessTest, ActorIgnoringCancelIsKilledAfterTheGracePeriod) {
  ActorNurseryOptions options;
  options.gracePeriod = 300 * kj::MILLISECONDS;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto probe = co_await startProbe(nursery, "probe-stubborn");
      // Leave a call running that the probe will not give up: we stop waiting for it, it goes on.
      CancelScope scope;
      co_await scope.run([&]() -> Co<void> {
        co_await openNursery([&](TaskNursery& n) -> Co<void> {
          n.startSoon([&]() -> Co<void> { co_await probe.stubborn(); });
          co_await probe.waitFor("stubborn started");
          scope.cancel();
        });
      });
      // The body ends normally: cancel-actor cannot end the probe, the grace period must.
    }, options);
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
  EXPECT_EQ(spawned.size(), 1u);
}

TEST_F(ProcessTest, ActorIgnoringCancelIsKilledWhenTheNurseryIsCancelled) {
  ActorNurseryOptions options;
  options.gracePeriod = 300 * kj::MILLISECONDS;
  CancelScope outer;
  auto failure = runRoot([&]() -> Co<void> {
    co_await outer.run([&]() -> Co<void> {
      co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
        auto probe = co_await startProbe(nursery, "probe-stubborn-2");
        co_await openNursery([&](TaskNursery& n) -> Co<void> {
          n.startSoon([&]() -> Co<void> { co_await probe.stubborn(); });
          co_await probe.waitFor("stubborn started");
          outer.cancel();
        });
      }, options);
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
  EXPECT_TRUE(outer.cancelledCaught());
  EXPECT_EQ(spawned.size(), 1u);
}

// An implementation this program does not have: known before anything is spawned, and said.
TEST_F(ProcessTest, UnknownImplementationFailsClearly) {
  kj::Maybe<kj::Exception> startError;
  auto nurseryError = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      try {
        co_await nursery.startActor<ProbeActor>("probe-unknown", "no-such-thing");
      } catch (...) {
        startError = currentException();
      }
      EXPECT_EQ(nursery.size(), 0u) << "a child was spawned for an unknown implementation";
    });
  });
  KJ_IF_MAYBE(e, nurseryError) ADD_FAILURE() << kj::str(*e).cStr();
  KJ_IF_MAYBE(e, startError) {
    EXPECT_TRUE(is(*e, ErrorKind::SPAWN_FAILED)) << kj::str(*e).cStr();
    EXPECT_TRUE(contains(*e, "actor 'probe-unknown'")) << kj::str(*e).cStr();
    EXPECT_TRUE(contains(*e, "'no-such-thing'; registered: probe")) << kj::str(*e).cStr();
  } else {
    ADD_FAILURE() << "starting an unknown implementation did not fail";
  }
}

TEST_F(ProcessTest, RunInActorGivesTheResultAndCancelsTheActor) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto echoed = co_await nursery.runInActor<ProbeImpl>(
          "probe-one-shot", [](ProbeActor::Portal& probe) { return probe.echo("once"); });
      auto reply = co_await echoed.result();
      EXPECT_EQ(std::string(reply->getText().cStr()), "echo: once");
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
}

TEST_F(ProcessTest, RunInActorErrorReachesTheNurseryAndTheResult) {
  kj::Maybe<kj::Exception> resultError;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      // The form by interface and registered name, as the typed one above forwards to.
      auto failed = co_await nursery.runInActor<ProbeActor>(
          "probe-one-shot-fails", "probe",
          [](ProbeActor::Portal& probe) { return probe.fail("no thanks"); });
      try {
        co_await failed.result();
      } catch (...) {
        resultError = currentException();
      }
    });
  });
  expectRefused(resultError, "no thanks", "probe-one-shot-fails");
  expectRefused(failure, "no thanks", "probe-one-shot-fails");
}

}  // namespace
}  // namespace harrow

// ---------------------------------------------------------------------------------------------

namespace {


}  // namespace

int main(int argc, char** argv) {
  return harrow::testing::multiProcessTestMain(argc, argv, harrow::implementations(), "process_test");
}
