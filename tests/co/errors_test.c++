// The error vocabulary (harrow/co/errors.h) and errorOf().

#include <harrow/co/cancel_scope.h>
#include <harrow/co/errors.h>
#include <harrow/co/multi_error.h>
#include <harrow/co/nursery.h>

#include "tests/test_util.h"

namespace harrow {
namespace {

using ErrorsTest = testing::EventLoopTest;

TEST_F(ErrorsTest, EveryKindRoundTripsThroughItsDescription) {
  for (int k = static_cast<int>(ErrorKind::CANCELLED);
       k <= static_cast<int>(ErrorKind::UNSAFE_FILE); ++k) {
    auto kind = static_cast<ErrorKind>(k);
    ASSERT_NE(errorKindName(kind), "") << "kind " << k << " has no name";
    auto e = makeError(kind, "what happened");
    EXPECT_EQ(errorKind(e), kind) << e.getDescription().cStr();
    EXPECT_TRUE(e.getDescription().startsWith(kj::str("harrow.", errorKindName(kind), ": ")));
  }
  EXPECT_EQ(makeError(ErrorKind::TRANSPORT_CLOSED, "x").getType(),
            kj::Exception::Type::DISCONNECTED);
}

TEST_F(ErrorsTest, KindsAreReadFromThePrefixOnly) {
  auto plain = [](kj::StringPtr text) {
    return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str(text));
  };
  EXPECT_EQ(errorKind(plain("std::runtime_error: harrow.ActorDied: quoted")), ErrorKind::NONE);
  EXPECT_EQ(errorKind(plain("harrow.ActorDiedLater: no such kind")), ErrorKind::NONE);
  EXPECT_EQ(errorKind(plain("harrow.ActorDied")), ErrorKind::NONE);
  EXPECT_TRUE(is(plain("harrow.ActorDied: actor 'a' (pid 7) killed by signal 9"),
                 ErrorKind::ACTOR_DIED));
  // trio's name for a passed deadline, as older harrow wrote it, is the same kind.
  EXPECT_EQ(errorKind(plain("harrow.TooSlow: deadline of 1s passed")),
            ErrorKind::DEADLINE_EXCEEDED);
  EXPECT_EQ(errorKindName(ErrorKind::TOO_SLOW), "DeadlineExceeded");
  // The predicates other layers export agree with the vocabulary.
  EXPECT_TRUE(isMultiError(makeMultiError(kj::heapArray<kj::Exception>(
      {plain("one"), plain("two")}))) );
  EXPECT_TRUE(is(makeMultiError(kj::heapArray<kj::Exception>({plain("one"), plain("two")})),
                 ErrorKind::MULTI_ERROR));
}

TEST_F(ErrorsTest, ThePredicatesOfEachLayerMatchAsIsDoesNotByABarePrefix) {
  auto plain = [](kj::StringPtr text) {
    return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str(text));
  };
  EXPECT_FALSE(isCancelled(plain("harrow.Cancelled")));
  EXPECT_FALSE(isCancelled(plain("harrow.CancelledTwice: no such kind")));
  EXPECT_TRUE(isCancelled(plain("harrow.Cancelled: the scope was cancelled")));
  EXPECT_FALSE(isMultiError(plain("harrow.MultiError")));
  EXPECT_EQ(errorTypeName(ErrorKind::ACTOR_DIED), "harrow.ActorDied");
  EXPECT_EQ(errorPrefix(ErrorKind::ACTOR_DIED), "harrow.ActorDied: ");
}

TEST_F(ErrorsTest, ErrorOfGivesTheErrorAndNothingOnSuccess) {
  auto failing = errorOf([]() -> Co<void> {
    co_await kj::Promise<void>(kj::READY_NOW);
    kj::throwFatalException(makeError(ErrorKind::SPAWN_FAILED, "no such binary"));
  }).wait(waitScope);
  KJ_IF_MAYBE(e, failing) {
    EXPECT_TRUE(is(*e, ErrorKind::SPAWN_FAILED));
  } else {
    ADD_FAILURE() << "the error was lost";
  }
  int value = 0;
  auto fine = errorOf([&]() -> Co<void> {
    co_await kj::Promise<void>(kj::READY_NOW);
    value = 42;
  }).wait(waitScope);
  EXPECT_TRUE(fine == nullptr);
  EXPECT_EQ(value, 42);
}

TEST_F(ErrorsTest, ErrorOfLetsCancellationThrough) {
  bool after = false;
  openNursery([&](TaskNursery& n) -> Co<void> {
    n.startSoon([&]() -> Co<void> {
      auto e = co_await errorOf([]() { return kj::Promise<void>(kj::NEVER_DONE); });
      after = true;  // never: the cancellation is not swallowed
      (void)e;
    });
    n.cancel();
    co_return;
  }).wait(waitScope);
  EXPECT_FALSE(after);
}

}  // namespace
}  // namespace harrow
