// Cancel scopes: trio cancellation delivered at checkpoints, deadlines, shields.

#include <harrow/co/cancel_scope.h>

#include "tests/test_util.h"

#include <kj/async-io.h>

#include <string>
#include <vector>

namespace harrow {
namespace {

using CancelScopeTest = testing::EventLoopTest;
using testing::OnDestroy;
using testing::thrownBy;

TEST_F(CancelScopeTest, CancelInterruptsTheAwaitAndIsCaughtByItsScope) {
  std::vector<std::string> log;
  CancelScope* inside = nullptr;
  auto task = [&]() -> Co<void> {
    CancelScope scope;
    inside = &scope;
    co_await scope.run([&]() -> Co<void> {
      auto never = kj::Promise<void>(kj::NEVER_DONE)
          .attach(kj::heap<OnDestroy>([&]() { log.push_back("awaited promise dropped"); }));
      try {
        co_await kj::mv(never);
      } catch (const kj::Exception& e) {
        log.push_back(isCancelled(e) ? "cancelled" : "other error");
        throw;
      }
    });
    log.push_back(scope.cancelledCaught() ? "caught" : "not caught");
  };
  auto promise = task();
  EXPECT_FALSE(promise.poll(waitScope));
  inside->cancel();
  promise.wait(waitScope);
  EXPECT_EQ(log, (std::vector<std::string>{"awaited promise dropped", "cancelled", "caught"}));
}

TEST_F(CancelScopeTest, EveryCheckpointAfterCancelRaises) {
  int checkpointsPassed = 0;
  CancelScope scope;
  scope.run([&]() -> Co<void> {
    co_await kj::Promise<void>(kj::READY_NOW);
    ++checkpointsPassed;
    scope.cancel();
    try {
      co_await kj::Promise<void>(kj::READY_NOW);  // already cancelled: raises without waiting
      ++checkpointsPassed;
    } catch (const kj::Exception&) {
    }
    co_await kj::Promise<void>(kj::READY_NOW);  // and again
    ++checkpointsPassed;
  }).wait(waitScope);
  EXPECT_EQ(checkpointsPassed, 1);
  EXPECT_TRUE(scope.cancelledCaught());
}

TEST_F(CancelScopeTest, OuterCancellationPassesThroughInnerScope) {
  CancelScope outer;
  bool innerCaught = true;
  auto promise = outer.run([&]() -> Co<void> {
    CancelScope inner;
    try {
      co_await inner.run([&]() -> Co<void> { co_await kj::Promise<void>(kj::NEVER_DONE); });
    } catch (...) {
      innerCaught = inner.cancelledCaught();
      throw;
    }
  });
  EXPECT_FALSE(promise.poll(waitScope));
  outer.cancel();
  promise.wait(waitScope);
  EXPECT_FALSE(innerCaught);
  EXPECT_TRUE(outer.cancelledCaught());
}

TEST_F(CancelScopeTest, ShieldedCleanupRunsWhileCancelled) {
  // The pattern for async cleanup: catch Cancelled, await the cleanup inside a shield (here the
  // remote peer's acknowledgement), then re-raise.
  std::vector<std::string> log;
  auto ack = kj::newPromiseAndFulfiller<void>();
  CancelScope scope;
  auto promise = scope.run([&]() -> Co<void> {
    bool cancelled = false;
    try {
      co_await kj::Promise<void>(kj::NEVER_DONE);
    } catch (const kj::Exception& e) {
      cancelled = isCancelled(e);
    }
    EXPECT_TRUE(cancelled);
    co_await shielded([&]() -> Co<void> {
      log.push_back("cleanup started");
      co_await kj::mv(ack.promise);
      log.push_back("peer acknowledged");
    });
    log.push_back("after shield");
    co_await kj::Promise<void>(kj::READY_NOW);  // unshielded again: raises
    log.push_back("not reached");
  });
  EXPECT_FALSE(promise.poll(waitScope));
  scope.cancel();
  EXPECT_FALSE(promise.poll(waitScope));
  EXPECT_EQ(log, (std::vector<std::string>{"cleanup started"}));
  ack.fulfiller->fulfill();
  promise.wait(waitScope);
  EXPECT_EQ(log,
            (std::vector<std::string>{"cleanup started", "peer acknowledged", "after shield"}));
  EXPECT_TRUE(scope.cancelledCaught());
}

TEST_F(CancelScopeTest, MoveOnAfterDeadlineExpiresMidAwait) {
  bool unwound = false;
  auto promise = moveOnAfter(timer, 100 * kj::MILLISECONDS, [&]() -> Co<void> {
    OnDestroy onUnwind{[&]() { unwound = true; }};
    co_await kj::Promise<void>(kj::NEVER_DONE);
  });
  advance(99 * kj::MILLISECONDS);
  EXPECT_FALSE(promise.poll(waitScope));
  advance(1 * kj::MILLISECONDS);
  EXPECT_TRUE(promise.wait(waitScope));
  EXPECT_TRUE(unwound);
}

TEST_F(CancelScopeTest, MoveOnAfterReportsBodyThatFinishedFirst) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto promise = moveOnAfter(timer, 1 * kj::SECONDS, [&]() -> Co<void> {
    co_await kj::mv(paf.promise);
  });
  paf.fulfiller->fulfill();
  EXPECT_FALSE(promise.wait(waitScope));
  advance(2 * kj::SECONDS);  // the deadline no longer fires into anything
}

TEST_F(CancelScopeTest, FailAfterRaisesTooSlow) {
  auto promise = failAfter(timer, 50 * kj::MILLISECONDS, [&]() -> Co<void> {
    co_await kj::Promise<void>(kj::NEVER_DONE);
  });
  advance(50 * kj::MILLISECONDS);
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&]() { promise.wait(waitScope); });
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(isTooSlow(*e)) << e->getDescription().cStr();
    EXPECT_TRUE(is(*e, ErrorKind::DEADLINE_EXCEEDED)) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "failAfter did not raise";
  }
}

TEST_F(CancelScopeTest, ShieldedScopeIgnoresOuterCancelButNotItsOwnDeadline) {
  CancelScope outer;
  bool finished = false;
  auto promise = outer.run([&]() -> Co<void> {
    co_await shielded([&]() -> Co<void> {
      bool cut = co_await moveOnAfter(timer, 10 * kj::MILLISECONDS, [&]() -> Co<void> {
        co_await kj::Promise<void>(kj::NEVER_DONE);
      });
      finished = cut;
    });
  });
  outer.cancel();
  EXPECT_FALSE(promise.poll(waitScope));
  advance(10 * kj::MILLISECONDS);
  promise.wait(waitScope);
  EXPECT_TRUE(finished);
}

TEST_F(CancelScopeTest, ErrorsOtherThanCancelledPropagate) {
  CancelScope scope;
  auto promise = scope.run([&]() -> Co<void> {
    co_await kj::Promise<void>(kj::READY_NOW);
    KJ_FAIL_REQUIRE("real failure");
  });
  EXPECT_EQ(thrownBy([&] { promise.wait(waitScope); }), "real failure");
  EXPECT_FALSE(scope.cancelledCaught());
}

TEST_F(CancelScopeTest, ErrorOrResolvesToTheBodysValue) {
  auto result = errorOr([&]() -> Co<int> {
    co_await kj::Promise<void>(kj::READY_NOW);
    co_return 7;
  }).wait(waitScope);
  EXPECT_TRUE(result.error() == nullptr);
  EXPECT_EQ(*result, 7);
}

TEST_F(CancelScopeTest, ErrorOrResolvesToTheErrorTheBodyRaised) {
  auto result = errorOr([&]() -> Co<kj::Own<int>> {
    co_await kj::Promise<void>(kj::READY_NOW);
    kj::throwFatalException(makeError(ErrorKind::ACTOR_DIED, "gone"));
  }).wait(waitScope);
  KJ_IF_MAYBE(e, result.error()) {
    EXPECT_TRUE(is(*e, ErrorKind::ACTOR_DIED)) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "errorOr did not hold the error";
  }
}

TEST_F(CancelScopeTest, ErrorOrLetsCancellationThrough) {
  CancelScope scope;
  bool reached = false;
  auto promise = scope.run([&]() -> Co<void> {
    (void)co_await errorOr([&]() -> Co<int> {
      co_await kj::Promise<void>(kj::NEVER_DONE);
      co_return 1;
    });
    reached = true;
  });
  EXPECT_FALSE(promise.poll(waitScope));
  scope.cancel();
  promise.wait(waitScope);
  EXPECT_FALSE(reached);
  EXPECT_TRUE(scope.cancelledCaught());
}

TEST_F(CancelScopeTest, FinallyRunsTheCleanupAfterABodyThatSucceeded) {
  std::vector<std::string> log;
  finally([&]() -> Co<void> {
    co_await kj::Promise<void>(kj::READY_NOW);
    log.push_back("body");
  }, [&]() -> Co<void> {
    co_await kj::Promise<void>(kj::READY_NOW);
    log.push_back("cleanup");
  }).wait(waitScope);
  EXPECT_EQ(log, (std::vector<std::string>{"body", "cleanup"}));
}

TEST_F(CancelScopeTest, FinallyReraisesTheBodysErrorAfterTheCleanup) {
  std::vector<std::string> log;
  auto promise = finally([&]() -> Co<void> {
    co_await kj::Promise<void>(kj::READY_NOW);
    KJ_FAIL_REQUIRE("body failed");
  }, [&]() -> Co<void> {
    co_await kj::Promise<void>(kj::READY_NOW);
    log.push_back("cleanup");
  });
  EXPECT_EQ(thrownBy([&] { promise.wait(waitScope); }), "body failed");
  EXPECT_EQ(log, (std::vector<std::string>{"cleanup"}));
}

TEST_F(CancelScopeTest, FinallyAwaitsItsCleanupShieldedWhenTheBodyIsCancelled) {
  std::vector<std::string> log;
  auto ack = kj::newPromiseAndFulfiller<void>();
  CancelScope scope;
  auto promise = scope.run([&]() -> Co<void> {
    co_await finally([&]() { return kj::Promise<void>(kj::NEVER_DONE); },
                     [&]() -> Co<void> {
                       log.push_back("cleanup started");
                       co_await kj::mv(ack.promise);
                       log.push_back("peer acknowledged");
                     });
    log.push_back("not reached");
  });
  EXPECT_FALSE(promise.poll(waitScope));
  scope.cancel();
  EXPECT_FALSE(promise.poll(waitScope));
  EXPECT_EQ(log, (std::vector<std::string>{"cleanup started"}));
  ack.fulfiller->fulfill();
  promise.wait(waitScope);
  EXPECT_EQ(log, (std::vector<std::string>{"cleanup started", "peer acknowledged"}));
  EXPECT_TRUE(scope.cancelledCaught());
}

TEST_F(CancelScopeTest, FinallyRunsACleanupReturningVoidBeforeReraising) {
  bool cleaned = false;
  auto promise = finally([&]() -> Co<void> {
    co_await kj::Promise<void>(kj::READY_NOW);
    KJ_FAIL_REQUIRE("body failed");
  }, [&]() { cleaned = true; });
  EXPECT_EQ(thrownBy([&] { promise.wait(waitScope); }), "body failed");
  EXPECT_TRUE(cleaned);
}

TEST_F(CancelScopeTest, ASecondRunOfOneScopeIsAnError) {
  CancelScope scope;
  scope.setDeadline(timer, timer.now() + 1 * kj::SECONDS);
  scope.run([]() { return kj::Promise<void>(kj::READY_NOW); }).wait(waitScope);
  EXPECT_NE(thrownBy([&] {
              scope.run([]() { return kj::Promise<void>(kj::NEVER_DONE); }).wait(waitScope);
            }).find("runs one body"),
            std::string::npos);
}

// ---- deadlines on one timer share one timer entry (DeadlineQueue, the fixture's `deadlines`) ----

TEST_F(CancelScopeTest, ScopesOnOneTimerShareOneTimerEntry) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto first = moveOnAfter(timer, 10 * kj::MILLISECONDS,
                           [&]() -> Co<void> { co_await kj::mv(paf.promise); });
  auto second = moveOnAfter(timer, 20 * kj::MILLISECONDS,
                            [&]() -> Co<void> { co_await kj::Promise<void>(kj::NEVER_DONE); });
  EXPECT_EQ(deadlines.size(), 2u);
  EXPECT_EQ(KJ_ASSERT_NONNULL(timer.nextEvent()), timer.now() + 10 * kj::MILLISECONDS);
  paf.fulfiller->fulfill();  // the first closes before its deadline
  EXPECT_FALSE(first.wait(waitScope));
  EXPECT_EQ(deadlines.size(), 1u);
  // Its timer entry stays: no entry is armed for the second, whose deadline comes later.
  EXPECT_EQ(KJ_ASSERT_NONNULL(timer.nextEvent()), timer.now() + 10 * kj::MILLISECONDS);
  advance(10 * kj::MILLISECONDS);  // fires for nothing and re-arms for the second
  EXPECT_FALSE(second.poll(waitScope));
  EXPECT_EQ(KJ_ASSERT_NONNULL(timer.nextEvent()), timer.now() + 10 * kj::MILLISECONDS);
  advance(10 * kj::MILLISECONDS);
  EXPECT_TRUE(second.wait(waitScope));
  EXPECT_EQ(deadlines.size(), 0u);
}

TEST_F(CancelScopeTest, AnEarlierDeadlineSetLaterFiresFirst) {
  std::vector<std::string> order;
  auto late = moveOnAfter(timer, 100 * kj::MILLISECONDS, [&]() -> Co<void> {
    OnDestroy onUnwind{[&]() { order.push_back("late"); }};
    co_await kj::Promise<void>(kj::NEVER_DONE);
  });
  auto early = moveOnAfter(timer, 20 * kj::MILLISECONDS, [&]() -> Co<void> {
    OnDestroy onUnwind{[&]() { order.push_back("early"); }};
    co_await kj::Promise<void>(kj::NEVER_DONE);
  });
  advance(20 * kj::MILLISECONDS);
  EXPECT_TRUE(early.wait(waitScope));
  EXPECT_FALSE(late.poll(waitScope));
  advance(80 * kj::MILLISECONDS);
  EXPECT_TRUE(late.wait(waitScope));
  EXPECT_EQ(order, (std::vector<std::string>{"early", "late"}));
}

TEST_F(CancelScopeTest, AMovedDeadlineFiresAtItsNewTimeOnly) {
  CancelScope sooner;
  CancelScope later;
  sooner.setDeadline(timer, timer.now() + 50 * kj::MILLISECONDS);
  later.setDeadline(timer, timer.now() + 10 * kj::MILLISECONDS);
  sooner.setDeadline(timer, timer.now() + 5 * kj::MILLISECONDS);  // moved earlier
  later.setDeadline(timer, timer.now() + 30 * kj::MILLISECONDS);  // moved later
  EXPECT_EQ(deadlines.size(), 2u);
  advance(5 * kj::MILLISECONDS);
  EXPECT_TRUE(sooner.deadlineExpired());
  EXPECT_FALSE(later.deadlineExpired());
  advance(20 * kj::MILLISECONDS);  // past the later scope's old deadline
  EXPECT_FALSE(later.deadlineExpired());
  advance(5 * kj::MILLISECONDS);
  EXPECT_TRUE(later.deadlineExpired());
  EXPECT_TRUE(later.cancelCalled());
}

TEST_F(CancelScopeTest, AScopeCancelledBeforeItsDeadlineLeavesTheQueue) {
  CancelScope scope;
  scope.setDeadline(timer, timer.now() + 10 * kj::MILLISECONDS);
  auto promise = scope.run([&]() -> Co<void> { co_await kj::Promise<void>(kj::NEVER_DONE); });
  scope.cancel();
  promise.wait(waitScope);
  EXPECT_TRUE(scope.cancelledCaught());
  EXPECT_EQ(deadlines.size(), 0u);
  advance(10 * kj::MILLISECONDS);
  EXPECT_FALSE(scope.deadlineExpired());
}

TEST_F(CancelScopeTest, NestedDeadlinesFireInTheirOwnOrder) {
  // The outer scope's deadline comes first: the inner one, later, never fires; then the reverse.
  bool innerCut = false;
  auto outerFirst = moveOnAfter(timer, 10 * kj::MILLISECONDS, [&]() -> Co<void> {
    innerCut = co_await moveOnAfter(timer, 20 * kj::MILLISECONDS, [&]() -> Co<void> {
      co_await kj::Promise<void>(kj::NEVER_DONE);
    });
  });
  advance(10 * kj::MILLISECONDS);
  EXPECT_TRUE(outerFirst.wait(waitScope));
  EXPECT_FALSE(innerCut);
  EXPECT_EQ(deadlines.size(), 0u);
  advance(10 * kj::MILLISECONDS);

  bool outerCut = true;
  auto innerFirst = moveOnAfter(timer, 20 * kj::MILLISECONDS, [&]() -> Co<void> {
    innerCut = co_await moveOnAfter(timer, 10 * kj::MILLISECONDS, [&]() -> Co<void> {
      co_await kj::Promise<void>(kj::NEVER_DONE);
    });
  });
  advance(10 * kj::MILLISECONDS);
  EXPECT_TRUE(innerCut);
  outerCut = innerFirst.wait(waitScope);
  EXPECT_FALSE(outerCut);
}

TEST_F(CancelScopeTest, DeadlinesDueTogetherAreAllCancelledBeforeAnyTaskResumes) {
  // trio expires every due deadline before it runs a task; so does the queue, in the order the
  // deadlines were set.
  CancelScope first;
  CancelScope second;
  first.setDeadline(timer, timer.now() + 10 * kj::MILLISECONDS);
  second.setDeadline(timer, timer.now() + 10 * kj::MILLISECONDS);
  bool secondCancelledWhenFirstUnwound = false;
  auto a = first.run([&]() -> Co<void> {
    OnDestroy onUnwind{[&]() { secondCancelledWhenFirstUnwound = second.cancelCalled(); }};
    co_await kj::Promise<void>(kj::NEVER_DONE);
  });
  auto b = second.run([&]() -> Co<void> { co_await kj::Promise<void>(kj::NEVER_DONE); });
  advance(10 * kj::MILLISECONDS);
  a.wait(waitScope);
  b.wait(waitScope);
  EXPECT_TRUE(secondCancelledWhenFirstUnwound);
  EXPECT_TRUE(first.cancelledCaught());
  EXPECT_TRUE(second.cancelledCaught());
}

TEST_F(CancelScopeTest, AScopeOnATimerWithoutAQueueArmsItsOwn) {
  kj::TimerImpl other(kj::origin<kj::TimePoint>());
  auto promise = moveOnAfter(other, 10 * kj::MILLISECONDS,
                             [&]() -> Co<void> { co_await kj::Promise<void>(kj::NEVER_DONE); });
  EXPECT_EQ(deadlines.size(), 0u);
  other.advanceTo(other.now() + 10 * kj::MILLISECONDS);
  EXPECT_TRUE(promise.wait(waitScope));
}

// ---- a queue on a loop's UnixEventPort (as an actor's) wakes the loop by a timerfd ----

class DeadlineQueueOnAPortTest : public ::testing::Test {
protected:
  ~DeadlineQueueOnAPortTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  DeadlineQueue deadlines{io.unixEventPort};
  kj::TimerImpl& timer = static_cast<kj::TimerImpl&>(io.unixEventPort.getTimer());

  // Fails the test rather than hanging if `promise` is not done within a minute. A kj timer of
  // its own, not moveOnAfter: a guard must not go through the DeadlineQueue under test.
  bool waitGuarded(kj::Promise<bool> promise) {
    return promise
        .exclusiveJoin(timer.afterDelay(60 * kj::SECONDS).then([]() -> bool {
          ADD_FAILURE() << "the deadline never woke the loop";
          return false;
        }))
        .wait(io.waitScope);
  }
};

TEST_F(DeadlineQueueOnAPortTest, ADeadlineLeavesTheLoopNoTimerEntryToSleepOn) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto call =
      moveOnAfter(timer, 3600 * kj::SECONDS, [&]() -> Co<void> { co_await kj::mv(paf.promise); });
  EXPECT_EQ(deadlines.size(), 1u);
  // A pending kj timer entry would make every epoll_wait of the loop sleep with a timeout.
  EXPECT_TRUE(timer.nextEvent() == nullptr);
  paf.fulfiller->fulfill();
  EXPECT_FALSE(call.wait(io.waitScope));
}

TEST_F(DeadlineQueueOnAPortTest, AnEarlierDeadlineSetLaterWakesTheLoopAtItsTime) {
  auto later = moveOnAfter(timer, 3600 * kj::SECONDS,
                           [&]() -> Co<void> { co_await kj::Promise<void>(kj::NEVER_DONE); });
  kj::TimePoint start = timer.now();
  auto sooner = moveOnAfter(timer, 20 * kj::MILLISECONDS,
                            [&]() -> Co<void> { co_await kj::Promise<void>(kj::NEVER_DONE); });
  EXPECT_TRUE(waitGuarded(kj::mv(sooner)));
  EXPECT_GE(timer.now() - start, 20 * kj::MILLISECONDS);
  EXPECT_EQ(deadlines.size(), 1u);  // the hour's, still waiting
}

TEST_F(DeadlineQueueOnAPortTest, ATimerfdThatFiresForAClosedScopeWakesTheNextOnTime) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto first = moveOnAfter(timer, 10 * kj::MILLISECONDS,
                           [&]() -> Co<void> { co_await kj::mv(paf.promise); });
  kj::TimePoint start = timer.now();
  auto second = moveOnAfter(timer, 40 * kj::MILLISECONDS,
                            [&]() -> Co<void> { co_await kj::Promise<void>(kj::NEVER_DONE); });
  paf.fulfiller->fulfill();  // the first closes early: the timerfd stays set for its deadline
  EXPECT_FALSE(first.wait(io.waitScope));
  EXPECT_TRUE(waitGuarded(kj::mv(second)));
  EXPECT_GE(timer.now() - start, 40 * kj::MILLISECONDS);
  EXPECT_EQ(deadlines.size(), 0u);
}

}  // namespace
}  // namespace harrow
