// Task nurseries: joins, one-cancels-all, MultiError, nesting, the started handshake.

#include <harrow/co/nursery.h>

#include "tests/test_util.h"

#include <string>
#include <vector>

namespace harrow {
namespace {

using NurseryTest = testing::EventLoopTest;
using testing::OnDestroy;
using testing::thrownBy;
using Log = std::vector<std::string>;

// A task that waits forever, records that it was cancelled, and cleans up in a shield.
Co<void> waitsUntilCancelled(Log& log, kj::StringPtr name) {
  try {
    co_await kj::Promise<void>(kj::NEVER_DONE);
  } catch (const kj::Exception& e) {
    log.push_back(kj::str(name, isCancelled(e) ? " cancelled" : " failed").cStr());
  }
  co_await shielded([&]() -> Co<void> {
    co_await kj::Promise<void>(kj::READY_NOW);
    log.push_back(kj::str(name, " cleaned up").cStr());
  });
  co_await kj::Promise<void>(kj::READY_NOW);  // re-raises Cancelled: we are still cancelled
}

TEST_F(NurseryTest, BlockResolvesOnlyAfterBodyAndAllChildren) {
  Log log;
  auto a = kj::newPromiseAndFulfiller<void>();
  auto b = kj::newPromiseAndFulfiller<void>();
  auto block = openNursery([&](TaskNursery& n) -> Co<void> {
    n.startSoon([&]() -> Co<void> { co_await kj::mv(a.promise); log.push_back("a"); });
    n.startSoon([&]() -> Co<void> { co_await kj::mv(b.promise); log.push_back("b"); });
    log.push_back("body");
    co_return;
  });
  EXPECT_FALSE(block.poll(waitScope));
  b.fulfiller->fulfill();
  EXPECT_FALSE(block.poll(waitScope));
  a.fulfiller->fulfill();
  block.wait(waitScope);
  EXPECT_EQ(log, (Log{"body", "b", "a"}));
}

TEST_F(NurseryTest, ChildFailureCancelsSiblingsAndBodyThenPropagates) {
  Log log;
  auto fail = kj::newPromiseAndFulfiller<void>();
  auto block = openNursery([&](TaskNursery& n) -> Co<void> {
    n.startSoon([&]() { return waitsUntilCancelled(log, "sibling"); });
    n.startSoon([&]() -> Co<void> {
      co_await kj::mv(fail.promise);
      KJ_FAIL_REQUIRE("child exploded");
    });
    co_await waitsUntilCancelled(log, "body");
  });
  EXPECT_FALSE(block.poll(waitScope));
  EXPECT_TRUE(log.empty());
  fail.fulfiller->fulfill();
  EXPECT_EQ(thrownBy([&] { block.wait(waitScope); }), "child exploded");
  std::sort(log.begin(), log.end());
  EXPECT_EQ(log, (Log{"body cancelled", "body cleaned up", "sibling cancelled",
                      "sibling cleaned up"}));
}

TEST_F(NurseryTest, ConcurrentFailuresArriveTogetherAsMultiError) {
  // Two tasks fail in the same turn, before any checkpoint; a third fails while unwinding from
  // the cancellation the first failure caused. All three are reported, none is lost.
  auto block = openNursery([&](TaskNursery& n) -> Co<void> {
    for (int i = 0; i < 2; ++i) {
      n.startSoon([i]() -> Co<void> {
        KJ_FAIL_REQUIRE("failure", i);
        co_return;
      });
    }
    n.startSoon([]() -> Co<void> {
      try {
        co_await kj::Promise<void>(kj::NEVER_DONE);
      } catch (const kj::Exception&) {
      }
      KJ_FAIL_REQUIRE("failure", 2);
    });
    co_return;
  });
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&]() { block.wait(waitScope); });
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(isMultiError(*e)) << e->getDescription().cStr();
    auto errors = errorsIn(*e);
    ASSERT_EQ(errors.size(), 3u) << e->getDescription().cStr();
    std::vector<std::string> sorted;
    for (auto& error : errors) sorted.push_back(error.cStr());
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, (Log{"failure; 2 = 2", "failure; i = 0", "failure; i = 1"}));
  } else {
    ADD_FAILURE() << "no error";
  }
}

// A child actor's loss reaches each task that waited on it (a caller, its supervisor) as the same
// exception: the nursery raises it once, not as a MultiError of copies. Different losses, and
// equal errors of other kinds, are all kept.
TEST_F(NurseryTest, TheSameChildLossFromSeveralTasksIsRaisedOnce) {
  auto raise = [&](kj::Function<kj::Exception(int)> error) {
    auto block = openNursery([&](TaskNursery& n) -> Co<void> {
      for (int i = 0; i < 3; ++i) {
        n.startSoon([&, i]() -> Co<void> {
          kj::throwFatalException(error(i));  // all in one turn, before any checkpoint
          co_return;
        });
      }
      co_return;
    });
    return KJ_ASSERT_NONNULL(kj::runCatchingExceptions([&]() { block.wait(waitScope); }));
  };
  auto lost = raise([](int) {
    return makeError(ErrorKind::ACTOR_UNREACHABLE, "actor 'b' on node 'b': silent");
  });
  EXPECT_FALSE(isMultiError(lost)) << lost.getDescription().cStr();
  EXPECT_TRUE(is(lost, ErrorKind::ACTOR_UNREACHABLE)) << lost.getDescription().cStr();
  auto died = raise([](int) {
    return makeError(ErrorKind::ACTOR_DIED, "actor 'a' (pid 7) killed by signal 9");
  });
  EXPECT_FALSE(isMultiError(died)) << died.getDescription().cStr();
  auto two = raise([](int i) {
    return makeError(ErrorKind::ACTOR_DIED, kj::str("actor 'a", i % 2, "' (pid 7) exited"));
  });
  EXPECT_EQ(errorsIn(two).size(), 2u) << two.getDescription().cStr();
  auto plain = raise([](int) {
    return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str("same"));
  });
  EXPECT_EQ(errorsIn(plain).size(), 3u) << plain.getDescription().cStr();
}

TEST_F(NurseryTest, GrandchildErrorCancelsTheWholeTree) {
  Log log;
  auto fail = kj::newPromiseAndFulfiller<void>();
  auto block = openNursery([&](TaskNursery& top) -> Co<void> {
    top.startSoon([&]() { return waitsUntilCancelled(log, "uncle"); });
    top.startSoon([&]() -> Co<void> {
      co_await openNursery([&](TaskNursery& middle) -> Co<void> {
        middle.startSoon([&]() { return waitsUntilCancelled(log, "sibling"); });
        middle.startSoon([&]() -> Co<void> {
          co_await kj::mv(fail.promise);
          KJ_FAIL_REQUIRE("grandchild failed");
        });
        co_return;
      });
    });
    co_return;
  });
  EXPECT_FALSE(block.poll(waitScope));
  fail.fulfiller->fulfill();
  EXPECT_EQ(thrownBy([&] { block.wait(waitScope); }), "grandchild failed");
  std::sort(log.begin(), log.end());
  EXPECT_EQ(log, (Log{"sibling cancelled", "sibling cleaned up", "uncle cancelled",
                      "uncle cleaned up"}));
}

TEST_F(NurseryTest, CancellingTheNurseryIsNotAnError) {
  Log log;
  openNursery([&](TaskNursery& n) -> Co<void> {
    n.startSoon([&]() { return waitsUntilCancelled(log, "a"); });
    n.startSoon([&]() { return waitsUntilCancelled(log, "b"); });
    co_await kj::Promise<void>(kj::READY_NOW);
    n.cancel();
  }).wait(waitScope);
  EXPECT_EQ(log.size(), 4u);
}

TEST_F(NurseryTest, OuterScopeCancellationReachesChildrenAndIsAbsorbedByThatScope) {
  Log log;
  CancelScope outer;
  auto promise = outer.run([&]() {
    return openNursery([&](TaskNursery& n) -> Co<void> {
      n.startSoon([&]() { return waitsUntilCancelled(log, "child"); });
      co_return;
    });
  });
  EXPECT_FALSE(promise.poll(waitScope));
  outer.cancel();
  promise.wait(waitScope);
  EXPECT_TRUE(outer.cancelledCaught());
  EXPECT_EQ(log, (Log{"child cancelled", "child cleaned up"}));
}

TEST_F(NurseryTest, StartResumesTheCallerWithTheValueTheTaskStartedWith) {
  Log log;
  auto finish = kj::newPromiseAndFulfiller<void>();
  openNursery([&](TaskNursery& n) -> Co<void> {
    int port = co_await n.start<int>([&](TaskStatus<int>& status) -> Co<void> {
      co_await kj::Promise<void>(kj::READY_NOW);
      status.started(8080);
      co_await kj::mv(finish.promise);
      log.push_back("server done");
    });
    log.push_back(kj::str("listening on ", port).cStr());
    finish.fulfiller->fulfill();
  }).wait(waitScope);
  EXPECT_EQ(log, (Log{"listening on 8080", "server done"}));
}

TEST_F(NurseryTest, FailureBeforeStartedGoesToTheCallerNotTheNursery) {
  Log log;
  openNursery([&](TaskNursery& n) -> Co<void> {
    n.startSoon([&]() -> Co<void> {
      co_await kj::Promise<void>(kj::READY_NOW);
      log.push_back("sibling unaffected");
    });
    try {
      co_await n.start<int>([&](TaskStatus<int>&) -> Co<void> {
        co_await kj::Promise<void>(kj::READY_NOW);
        KJ_FAIL_REQUIRE("could not bind");
      });
    } catch (const kj::Exception& e) {
      log.push_back(e.getDescription().cStr());
    }
  }).wait(waitScope);
  std::sort(log.begin(), log.end());
  EXPECT_EQ(log, (Log{"could not bind", "sibling unaffected"}));
}

TEST_F(NurseryTest, TaskThatNeverCallsStartedIsAnErrorForTheCaller) {
  std::string error;
  openNursery([&](TaskNursery& n) -> Co<void> {
    try {
      co_await n.start<void>([&](TaskStatus<void>&) -> Co<void> { co_return; });
    } catch (const kj::Exception& e) {
      error = e.getDescription().cStr();
    }
  }).wait(waitScope);
  EXPECT_EQ(error, "task finished without calling started()");
}

TEST_F(NurseryTest, CancellingTheCallerDuringTheHandshakeCancelsTheChild) {
  Log log;
  CancelScope callerScope;
  auto block = openNursery([&](TaskNursery& n) -> Co<void> {
    co_await callerScope.run([&]() -> Co<void> {
      co_await n.start<void>([&](TaskStatus<void>&) {
        return waitsUntilCancelled(log, "starting child");
      });
      log.push_back("not reached");
    });
    log.push_back(callerScope.cancelledCaught() ? "caller cancelled" : "caller not cancelled");
  });
  EXPECT_FALSE(block.poll(waitScope));
  callerScope.cancel();
  block.wait(waitScope);
  EXPECT_EQ(log, (Log{"starting child cancelled", "caller cancelled",
                      "starting child cleaned up"}));
}

TEST_F(NurseryTest, DroppingTheBlockDestroysEveryTask) {
  int destroyed = 0;
  {
    auto block = openNursery([&](TaskNursery& n) -> Co<void> {
      for (int i = 0; i < 3; ++i) {
        n.startSoon([&]() -> Co<void> {
          OnDestroy guard{[&]() { ++destroyed; }};
          co_await kj::Promise<void>(kj::NEVER_DONE);
        });
      }
      co_await kj::Promise<void>(kj::NEVER_DONE);
    });
    EXPECT_FALSE(block.poll(waitScope));
  }
  EXPECT_EQ(destroyed, 3);
}

TEST_F(NurseryTest, ManyShortTasksDoNotAccumulate) {
  size_t finished = 0;
  openNursery([&](TaskNursery& n) -> Co<void> {
    for (int i = 0; i < 10000; ++i) {
      n.startSoon([&]() -> Co<void> {
        co_await kj::Promise<void>(kj::READY_NOW);
        ++finished;
      });
      if (i % 100 == 0) co_await kj::Promise<void>(kj::READY_NOW);
    }
  }).wait(waitScope);
  EXPECT_EQ(finished, 10000u);
}

}  // namespace
}  // namespace harrow
