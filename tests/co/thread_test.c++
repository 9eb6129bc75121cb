// Work off the event loop (harrow/co/thread_pool.h) and calls into a loop from other threads
// (harrow/co/loop_handle.h). Run under TSan too: bazel test --config=tsan //tests/co:thread_test
//
// No sleeps: threads and the loop meet through cross-thread promises (the loop waits on them) and
// a Gate (threads wait on it until the test opens it).

#include <harrow/co/cancel_scope.h>
#include <harrow/co/loop_handle.h>
#include <harrow/co/thread_pool.h>

#include "tests/test_util.h"

#include <kj/debug.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace harrow {
namespace {

// Threads wait here until the test opens it.
class Gate {
public:
  void open() {
    std::lock_guard<std::mutex> lock(mutex);
    isOpen = true;
    changed.notify_all();
  }
  void pass() {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&]() { return isOpen; });
  }

private:
  std::mutex mutex;
  std::condition_variable changed;
  bool isOpen = false;
};

// A signal from a pool thread that the loop can wait for.
struct Signal {
  kj::PromiseCrossThreadFulfillerPair<void> paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  void fire() const { paf.fulfiller->fulfill(); }
  void wait(kj::WaitScope& waitScope) { paf.promise.wait(waitScope); }
};

// Waits until `token` is set: work that only stops when told.
void untilCancelled(CancelToken& token) {
  while (!token.cancelled()) std::this_thread::yield();
}

class ThreadTest : public testing::EventLoopTest {
protected:
  std::thread::id loopThread = std::this_thread::get_id();
};

TEST_F(ThreadTest, ResultsComeBackOnTheLoopThread) {
  ThreadPool pool(2);
  std::thread::id workedOn, resumedOn;
  auto result = [&]() -> Co<int> {
    int value = co_await runInThread(pool, [&]() {
      workedOn = std::this_thread::get_id();
      return 42;
    });
    resumedOn = std::this_thread::get_id();
    co_return value;
  }().wait(waitScope);
  EXPECT_EQ(result, 42);
  EXPECT_NE(workedOn, loopThread);
  EXPECT_EQ(resumedOn, loopThread);
  // Move-only results and void work too, and the token is offered to work that takes one.
  auto text = runInThread(pool, [](CancelToken& token) {
    return kj::str(token.cancelled() ? "cancelled" : "running");
  }).wait(waitScope);
  EXPECT_EQ(std::string(text.cStr()), "running");
  bool ran = false;
  runInThread(pool, [&]() { ran = true; }).wait(waitScope);
  EXPECT_TRUE(ran);
}

TEST_F(ThreadTest, ExceptionsPropagate) {
  ThreadPool pool(1);
  auto kjError = testing::thrownBy([&]() {
    runInThread(pool, []() -> int { KJ_FAIL_REQUIRE("the file is unreadable"); }).wait(waitScope);
  });
  EXPECT_NE(kjError.find("the file is unreadable"), std::string::npos) << kjError;
  auto stdError = testing::thrownBy([&]() {
    runInThread(pool, []() { throw std::runtime_error("bad digest"); }).wait(waitScope);
  });
  EXPECT_NE(stdError.find("bad digest"), std::string::npos) << stdError;
}

// Cancelling the awaiting scope sets the token, and the scope does not end before the work has:
// the loop keeps running meanwhile (the scope's coroutine awaits the thread uncancellably).
TEST_F(ThreadTest, CancellationSetsTheTokenAndTheScopeWaits) {
  ThreadPool pool(1);
  Signal started, sawCancel;
  Gate finish;
  std::atomic<bool> returned{false};
  CancelScope scope;
  auto running = scope.run([&]() -> Co<void> {
    co_await runInThread(pool, [&](CancelToken& token) {
      started.fire();
      untilCancelled(token);
      sawCancel.fire();
      finish.pass();
      returned = true;
    });
    ADD_FAILURE() << "the cancelled await returned";
  });
  started.wait(waitScope);
  scope.cancel();
  sawCancel.wait(waitScope);  // the loop runs while the scope waits
  EXPECT_FALSE(running.poll(waitScope)) << "the scope ended while its work still ran";
  finish.open();
  running.wait(waitScope);
  EXPECT_TRUE(returned);
  EXPECT_TRUE(scope.cancelledCaught());
}

// At most size() jobs run at once; the next waits in the queue, and a queued job whose scope is
// cancelled never runs (and its scope need not wait).
TEST_F(ThreadTest, PoolBoundIsRespected) {
  ThreadPool pool(2);
  Gate release;
  Signal firstUp, secondUp;
  std::atomic<bool> thirdRan{false}, droppedRan{false};
  auto first = runInThread(pool, [&]() { firstUp.fire(); release.pass(); return 1; });
  auto second = runInThread(pool, [&]() { secondUp.fire(); release.pass(); return 2; });
  firstUp.wait(waitScope);
  secondUp.wait(waitScope);
  auto third = runInThread(pool, [&]() { thirdRan = true; return 3; });
  EXPECT_EQ(pool.running(), 2u);
  EXPECT_EQ(pool.queued(), 1u);
  EXPECT_FALSE(thirdRan);

  CancelScope scope;
  auto dropped = scope.run([&]() -> Co<void> {
    co_await runInThread(pool, [&]() { droppedRan = true; });
  });
  EXPECT_EQ(pool.queued(), 2u);
  scope.cancel();
  dropped.wait(waitScope);  // at once: nothing of it ever ran
  EXPECT_TRUE(scope.cancelledCaught());
  EXPECT_EQ(pool.queued(), 1u);

  release.open();
  EXPECT_EQ(first.wait(waitScope), 1);
  EXPECT_EQ(second.wait(waitScope), 2);
  EXPECT_EQ(third.wait(waitScope), 3);
  EXPECT_TRUE(thirdRan);
  EXPECT_FALSE(droppedRan);
  EXPECT_EQ(pool.size(), 2u);
}

// KJ cancellation (the promise dropped) cannot await: the destructor sets the token and blocks
// until the work has returned, so nothing the work uses is freed under it.
TEST_F(ThreadTest, DroppingThePromiseWaitsForTheWork) {
  ThreadPool pool(1);
  Signal started;
  std::atomic<bool> returned{false};
  {
    auto promise = runInThread(pool, [&](CancelToken& token) {
      started.fire();
      untilCancelled(token);
      returned = true;
    });
    started.wait(waitScope);
  }
  EXPECT_TRUE(returned);
  EXPECT_EQ(pool.running(), 0u);
}

TEST_F(ThreadTest, DefaultPoolSizeComesFromTheEnvironment) {
  ASSERT_EQ(setenv("HARROW_THREADS", "3", 1), 0);
  EXPECT_EQ(ThreadPool::defaultSize(), 3u);
  ASSERT_EQ(setenv("HARROW_THREADS", "zero", 1), 0);
  auto error = testing::thrownBy([]() { ThreadPool::defaultSize(); });
  EXPECT_NE(error.find("HARROW_THREADS"), std::string::npos) << error;
  ASSERT_EQ(unsetenv("HARROW_THREADS"), 0);
  EXPECT_GE(ThreadPool::defaultSize(), 1u);
  EXPECT_LE(ThreadPool::defaultSize(), 4u);
  EXPECT_EQ(runInThread([]() { return 5; }).wait(waitScope), 5);  // this thread's default pool
}

// ---------------------------------------------------------------------------------------------
// LoopHandle

TEST_F(ThreadTest, AForeignThreadCallsIntoTheLoop) {
  auto handle = LoopHandle::current();
  int counter = 10;  // the loop's: only the loop's thread touches it
  std::thread::id ranOn;
  Signal done;
  int got = 0, fromPromise = 0;
  std::string failure;
  LoopHandle theirs = handle;  // a copy for the other thread (they are cheap: a reference count)
  std::thread foreign([&]() {
    auto& handle = theirs;
    got = handle.run([&]() {
      ranOn = std::this_thread::get_id();
      return ++counter;
    });
    // A promise is awaited on the loop.
    fromPromise = handle.run([&]() { return kj::evalLater([&]() { return counter * 2; }); });
    try {
      handle.run([]() { KJ_FAIL_REQUIRE("refused on the loop"); });
    } catch (const kj::Exception& e) {
      failure = e.getDescription().cStr();
    }
    done.fire();
  });
  done.wait(waitScope);  // the loop runs the calls while it waits
  foreign.join();
  EXPECT_EQ(got, 11);
  EXPECT_EQ(counter, 11);
  EXPECT_EQ(ranOn, loopThread);
  EXPECT_EQ(fromPromise, 22);
  EXPECT_NE(failure.find("refused on the loop"), std::string::npos) << failure;
  // On the loop's own thread it would wait for itself.
  auto own = testing::thrownBy([&]() { handle.run([]() { return 1; }); });
  EXPECT_NE(own.find("own thread"), std::string::npos) << own;
}

TEST_F(ThreadTest, AnotherLoopCallsInWithAPromise) {
  auto handle = LoopHandle::current();
  Signal done;
  int got = 0;
  LoopHandle theirs = handle;
  std::thread other([&]() {
    auto& handle = theirs;
    kj::EventLoop loop;
    kj::WaitScope waitScope(loop);
    got = handle.runAsync([]() { return 3; }).wait(waitScope);
    done.fire();
  });
  done.wait(waitScope);
  other.join();
  EXPECT_EQ(got, 3);
}

TEST_F(ThreadTest, ALoopThatIsGoneGivesLoopGone) {
  kj::Maybe<LoopHandle> handle;
  std::thread owner([&]() {
    kj::EventLoop loop;
    kj::WaitScope waitScope(loop);
    handle = LoopHandle::current();
  });  // the loop ends with its thread
  owner.join();
  auto& gone = KJ_ASSERT_NONNULL(handle);
  EXPECT_FALSE(gone.isLive());
  kj::Maybe<kj::Exception> raised =
      kj::runCatchingExceptions([&]() { gone.run([]() { return 1; }); });
  KJ_IF_MAYBE(e, raised) {
    EXPECT_TRUE(is(*e, ErrorKind::LOOP_GONE)) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "a call into a loop that is gone returned";
  }
  raised = kj::runCatchingExceptions([&]() {
    gone.runAsync([]() { return 1; }).wait(waitScope);
  });
  KJ_IF_MAYBE(e, raised) {
    EXPECT_TRUE(is(*e, ErrorKind::LOOP_GONE)) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "an async call into a loop that is gone returned";
  }
}

// A call that is waiting on the loop when the loop ends gets LoopGone too, not a hang.
TEST_F(ThreadTest, ACallWaitingWhenTheLoopEndsGetsLoopGone) {
  std::mutex mutex;
  std::condition_variable published;
  kj::Maybe<LoopHandle> handle;
  kj::Maybe<kj::Own<kj::CrossThreadPromiseFulfiller<void>>> exitNow;
  std::thread owner([&]() {
    kj::EventLoop loop;
    kj::WaitScope waitScope(loop);
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    {
      std::lock_guard<std::mutex> lock(mutex);
      handle = LoopHandle::current();
      exitNow = kj::mv(paf.fulfiller);
    }
    published.notify_all();
    paf.promise.wait(waitScope);  // runs the foreign call until told to end the loop
  });
  {
    std::unique_lock<std::mutex> lock(mutex);
    published.wait(lock, [&]() { return handle != nullptr; });
  }
  Signal started;
  kj::Maybe<kj::Exception> raised;
  std::thread foreign([&]() {
    raised = kj::runCatchingExceptions([&]() {
      KJ_ASSERT_NONNULL(handle).run([&]() {
        started.fire();
        return kj::Promise<int>(kj::NEVER_DONE);  // still waiting when the loop ends
      });
    });
  });
  started.wait(waitScope);
  {
    std::lock_guard<std::mutex> lock(mutex);
    KJ_ASSERT_NONNULL(exitNow)->fulfill();
  }
  owner.join();
  foreign.join();
  KJ_IF_MAYBE(e, raised) {
    EXPECT_TRUE(is(*e, ErrorKind::LOOP_GONE)) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "the waiting call returned";
  }
}

}  // namespace
}  // namespace harrow
