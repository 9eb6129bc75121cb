// Coroutines over kj::Promise: values, errors, KJ cancellation, self-drop, and memory use.

#include <harrow/co/co.h>

#include "tests/test_util.h"

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <malloc.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace harrow {
namespace {

using CoTest = testing::EventLoopTest;
using testing::OnDestroy;
using testing::thrownBy;

Co<int> addOne(kj::Promise<int> p) { co_return 1 + co_await kj::mv(p); }

TEST_F(CoTest, ReturnsValueOfAwaitedPromises) {
  auto paf = kj::newPromiseAndFulfiller<int>();
  Co<int> result = addOne(kj::mv(paf.promise));
  EXPECT_FALSE(result.poll(waitScope));
  paf.fulfiller->fulfill(41);
  EXPECT_EQ(result.wait(waitScope), 42);
}

Co<void> setWhenDone(kj::Promise<void> p, bool& done) {
  co_await kj::mv(p);
  done = true;
}

TEST_F(CoTest, VoidCoroutine) {
  bool done = false;
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto co = setWhenDone(kj::mv(paf.promise), done);
  EXPECT_FALSE(co.poll(waitScope));
  paf.fulfiller->fulfill();
  co.wait(waitScope);
  EXPECT_TRUE(done);
}

Co<kj::Own<std::string>> wrap(kj::Promise<kj::Own<std::string>> p) {
  kj::Own<std::string> s = co_await kj::mv(p);
  *s += "!";
  co_return kj::mv(s);
}

TEST_F(CoTest, MoveOnlyValues) {
  kj::Promise<kj::Own<std::string>> input = kj::heap<std::string>("hi");
  EXPECT_EQ(*wrap(kj::mv(input)).wait(waitScope), "hi!");
}

Co<int> completesSynchronously() { co_return 7; }

TEST_F(CoTest, CompletesSynchronouslyAndCanBeDroppedUnawaited) {
  EXPECT_EQ(completesSynchronously().wait(waitScope), 7);
  { auto dropped = completesSynchronously(); }
}

Co<int> throwsKj() {
  co_await kj::Promise<void>(kj::READY_NOW);
  KJ_FAIL_REQUIRE("broken on purpose");
}
Co<int> throwsStd() {
  co_await kj::Promise<void>(kj::READY_NOW);
  throw std::runtime_error("std failure");
}

TEST_F(CoTest, ExceptionsInTheBodyRejectThePromise) {
  EXPECT_EQ(thrownBy([&] { throwsKj().wait(waitScope); }),
            "broken on purpose");
  EXPECT_EQ(thrownBy([&] { throwsStd().wait(waitScope); }), "std::runtime_error: std failure");
}

Co<kj::String> catchesRejection(kj::Promise<int> p) {
  try {
    co_await kj::mv(p);
  } catch (const kj::Exception& e) {
    co_return kj::str("caught: ", e.getDescription());
  }
  co_return kj::str("not reached");
}

TEST_F(CoTest, RejectedAwaitThrowsAtCoAwait) {
  kj::Promise<int> failing = KJ_EXCEPTION(FAILED, "remote went away");
  EXPECT_EQ(catchesRejection(kj::mv(failing)).wait(waitScope), "caught: remote went away");
}

Co<void> awaitWithLocal(kj::Promise<void> p, std::vector<std::string>& log) {
  OnDestroy local{[&]() { log.push_back("local"); }};
  co_await kj::mv(p);
  log.push_back("resumed");
}

TEST_F(CoTest, DroppingThePromiseDestroysAwaitedPromiseBeforeLocals) {
  std::vector<std::string> log;
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto awaited = paf.promise.attach(kj::heap<OnDestroy>([&]() { log.push_back("awaited"); }));
  {
    auto co = awaitWithLocal(kj::mv(awaited), log);
    EXPECT_FALSE(co.poll(waitScope));
  }
  EXPECT_EQ(log, (std::vector<std::string>{"awaited", "local"}));
  EXPECT_FALSE(paf.fulfiller->isWaiting());  // the awaited operation saw the cancellation
}

TEST_F(CoTest, CancellationRacingCompletion) {
  // The awaited promise is fulfilled (the coroutine's resumption is queued) and then the
  // coroutine is dropped before the loop runs it.
  std::vector<std::string> log;
  auto paf = kj::newPromiseAndFulfiller<void>();
  auto co = kj::heap<Co<void>>(awaitWithLocal(kj::mv(paf.promise), log));
  paf.fulfiller->fulfill();
  co = nullptr;
  waitScope.poll();
  EXPECT_EQ(log, (std::vector<std::string>{"local"}));
}

struct SelfDropper {
  kj::Maybe<Co<void>> self;
  std::vector<std::string> log;

  Co<void> run(kj::Promise<void> trigger) {
    OnDestroy local{[this]() { log.push_back("local destroyed"); }};
    co_await kj::mv(trigger);
    self = nullptr;  // drops the promise that owns this very frame
    log.push_back("still running after self-drop");
    co_await kj::Promise<void>(kj::NEVER_DONE);
    log.push_back("not reached");
  }
};

TEST_F(CoTest, CoroutineWhosePromiseIsDroppedByItsOwnBody) {
  SelfDropper dropper;
  auto paf = kj::newPromiseAndFulfiller<void>();
  dropper.self = dropper.run(kj::mv(paf.promise));
  paf.fulfiller->fulfill();
  waitScope.poll();
  EXPECT_EQ(dropper.self, nullptr);
  EXPECT_EQ(dropper.log,
            (std::vector<std::string>{"still running after self-drop", "local destroyed"}));
}

// GCC 12 once crashed compiling exactly this (a kj::StringPtr parameter); keep it compiled.
Co<kj::String> greet(kj::StringPtr name, kj::Promise<void> ready) {
  co_await kj::mv(ready);
  co_return kj::str("hello, ", name);
}

TEST_F(CoTest, StringPtrParameters) {
  EXPECT_EQ(greet("world", kj::READY_NOW).wait(waitScope), "hello, world");
}

Co<int> inner(kj::Promise<int> p) { co_return co_await kj::mv(p) * 2; }
Co<int> outer(kj::Promise<int> p) { co_return co_await inner(kj::mv(p)) + 1; }

TEST_F(CoTest, NestedCoroutinesComposeAndCancelDownward) {
  EXPECT_EQ(outer(kj::Promise<int>(20)).wait(waitScope), 41);

  auto paf = kj::newPromiseAndFulfiller<int>();
  { auto co = outer(kj::mv(paf.promise)); EXPECT_FALSE(co.poll(waitScope)); }
  EXPECT_FALSE(paf.fulfiller->isWaiting());
}

Co<uint64_t> countReadyAwaits(uint64_t n, uintptr_t& firstFrame, uintptr_t& lastFrame) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < n; ++i) {
    sum += co_await kj::Promise<uint64_t>(uint64_t(1));
    int marker = 0;
    uintptr_t here = reinterpret_cast<uintptr_t>(&marker);
    // Local addresses stay put while the frame lives: what must not grow is the machine stack
    // beneath the resumption, so compare the resuming stack pointer.
    uintptr_t sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
    (void)here;
    if (i == 0) firstFrame = sp;
    lastFrame = sp;
  }
  co_return sum;
}

TEST_F(CoTest, MillionReadyAwaitsGrowNeitherStackNorHeap) {
  uintptr_t first = 0, last = 0;
  // Warm up allocator caches so the comparison measures growth, not first use.
  countReadyAwaits(1000, first, last).wait(waitScope);
  size_t heapBefore = mallinfo2().uordblks;
  uint64_t sum = countReadyAwaits(1000000, first, last).wait(waitScope);
  size_t heapAfter = mallinfo2().uordblks;
  EXPECT_EQ(sum, 1000000u);
  EXPECT_EQ(first, last) << "each resumption starts from the event loop, not a deeper stack";
  EXPECT_LT(heapAfter, heapBefore + 64 * 1024) << "heap grew by " << heapAfter - heapBefore;
}

}  // namespace
}  // namespace harrow
