// Calling into an event loop from another thread (trio's from_thread.run, tractor's
// to_asyncio in reverse): a LoopHandle, taken on the loop's own thread, lets any other thread
// run a function on that loop and get its result back.
//
//   auto handle = harrow::LoopHandle::current();          // on the actor's loop
//   std::thread worker([handle = handle]() {
//     int n = handle.run([&]() { return counter.value(); });  // runs on the actor's loop
//   });
//
// Built on kj::Executor (kj::getCurrentThreadExecutor()). What the function captures must be
// safe to use from the loop's thread; it is destroyed on the calling thread. A function that
// returns a promise (a harrow::Co) is awaited on the loop, outside any cancel scope. Once the
// loop has ended (its kj::EventLoop destroyed), run() raises harrow.LoopGone, including for a
// call that was waiting when it ended.

#pragma once

#include <harrow/co/co.h>
#include <harrow/co/errors.h>

#include <kj/async.h>

#include <thread>

namespace harrow {

class LoopHandle {
public:
  // The loop of the calling thread (which must have one).
  static LoopHandle current();

  LoopHandle(const LoopHandle& other) : executor(other.executor->addRef()), owner(other.owner) {}
  LoopHandle(LoopHandle&&) = default;
  LoopHandle& operator=(LoopHandle&&) = default;

  // Whether the loop still exists. A true answer can turn false at any moment.
  bool isLive() const { return executor->isLive(); }

  // Runs `fn()` on the loop and blocks the calling thread until it has finished: returns what it
  // returned (for a promise: what that resolved to) or raises what it raised. The calling thread
  // may have no event loop; if it has one, that loop does not run while it waits (use runAsync()
  // there). Raises harrow.LoopGone when the loop has ended, and refuses (KJ_REQUIRE) to be called
  // on the loop's own thread, where it would wait for itself forever.
  template <typename Fn>
  auto run(Fn&& fn) const {
    checkCallable();
    try {
      return executor->executeSync(kj::fwd<Fn>(fn));
    } catch (const kj::Exception& e) {
      rethrowLoopGone(*executor, e);
      throw;
    }
  }

  // From a thread with an event loop of its own: a promise, on that loop, for fn's result.
  // Dropping it waits (blocks) until the target loop has acknowledged the cancellation, as
  // kj::Executor::executeAsync() does. A loop that has ended raises harrow.LoopGone.
  template <typename Fn>
  auto runAsync(Fn&& fn) const {
    checkCallable();
    using T = PromiseValue<decltype(executor->executeAsync(kj::fwd<Fn>(fn)))>;
    return executor->executeAsync(kj::fwd<Fn>(fn))
        .catch_([target = executor->addRef()](kj::Exception&& e) -> kj::Promise<T> {
          rethrowLoopGone(*target, e);
          return kj::mv(e);
        });
  }

private:
  LoopHandle(kj::Own<const kj::Executor> executor, std::thread::id owner)
      : executor(kj::mv(executor)), owner(owner) {}

  kj::Own<const kj::Executor> executor;
  std::thread::id owner;  // the loop's thread

  void checkCallable() const;
  // Raises harrow.LoopGone instead of `e` if `target`'s loop has ended; returns otherwise.
  static void rethrowLoopGone(const kj::Executor& target, const kj::Exception& e);
};

}  // namespace harrow
