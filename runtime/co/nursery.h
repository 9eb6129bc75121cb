// Task nurseries: trio's structured concurrency on the KJ event loop.
//
//   co_await harrow::openNursery([&](harrow::TaskNursery& n) -> harrow::Co<void> {
//     n.startSoon([&]() -> harrow::Co<void> { ... });      // trio: nursery.start_soon
//     int port = co_await n.start<int>(                     // trio: await nursery.start
//         [&](harrow::TaskStatus<int>& status) -> harrow::Co<void> {
//           status.started(8080);
//           ...
//         });
//   });  // resolves once the body and every child task have finished
//
// Semantics:
//  - No task outlives its nursery: the block resolves only after the body and all children end.
//  - The first failure (body or child) cancels the nursery's scope — scope cancellation, so every
//    other task gets Cancelled at its next checkpoint and may clean up — and the failure is
//    rethrown once all have stopped. Several failures arrive together as one MultiError.
//  - One failure, one error: a child actor's loss (ActorDied, ActorUnreachable) that reaches
//    several of the nursery's tasks (its callers, its supervisor) as the same exception is
//    raised once.
//    Cancellation itself is never reported as an error.
//  - Dropping the block's promise (KJ cancellation) destroys every task at once; only
//    destructors run.

#pragma once

#include <type_traits>

#include <harrow/co/cancel_scope.h>
#include <harrow/co/multi_error.h>

#include <kj/debug.h>
#include <kj/refcount.h>
#include <kj/vector.h>

namespace harrow {

template <typename T>
class TaskStatus;

class TaskNursery final : private kj::TaskSet::ErrorHandler {
public:
  TaskNursery();
  KJ_DISALLOW_COPY(TaskNursery);

  // trio's `nursery.start_soon(fn)`: starts `fn()` (returning a Co<void> or kj::Promise<void>)
  // as a child task in this nursery. The nursery owns `fn` until the task ends, so lambda
  // captures stay valid.
  template <typename Fn>
    requires std::is_convertible_v<std::invoke_result_t<Fn&>, kj::Promise<void>>
  void startSoon(Fn fn);

  // trio's `await nursery.start(fn)`: starts `fn(status)` and resolves with the value it passes
  // to `status.started(value)`. Until then the child is cancelled with the caller (and a failure
  // goes to the caller, not the nursery); afterwards it belongs to the nursery like any child.
  template <typename T = void, typename Fn>
    requires std::is_convertible_v<std::invoke_result_t<Fn&, TaskStatus<T>&>, kj::Promise<void>>
  Co<T> start(Fn fn);

  // Scope cancellation of the body and every child; the block then resolves normally.
  void cancel() { scope.cancel(); }
  CancelScope& cancelScope() { return scope; }

  // Declared after the scope so that tasks are destroyed (KJ cancellation) before it.
private:
  CancelScope scope;
  kj::TaskSet tasks;
  kj::Vector<kj::Exception> errors;
  kj::Maybe<kj::Exception> outerCancellation;
  bool closed = false;

  void record(kj::Exception&& exception);
  void taskFailed(kj::Exception&& exception) override;
  void add(kj::Function<kj::Promise<void>()> fn);
  Co<void> runTask(kj::Function<kj::Promise<void>()> fn);
  Co<void> join();

  friend Co<void> openNursery(kj::Function<kj::Promise<void>(TaskNursery&)> body);
  template <typename T> friend class TaskStatus;
};

// Opens a nursery, runs `body(nursery)` as its first task, and resolves once every task has
// finished; rethrows the failure(s) as described above.
Co<void> openNursery(kj::Function<kj::Promise<void>(TaskNursery&)> body);

template <typename T = void>
class TaskStatus final : public kj::Refcounted {
  // Handed to a task started with start(); call started() exactly once.
public:
  template <typename... Value>
  void started(Value&&... value) {
    KJ_REQUIRE(!isStarted, "started() called twice");
    isStarted = true;
    fulfiller->fulfill(kj::fwd<Value>(value)...);
  }

private:
  explicit TaskStatus(kj::Own<kj::PromiseFulfiller<T>> fulfiller)
      : fulfiller(kj::mv(fulfiller)) {}

  kj::Own<kj::PromiseFulfiller<T>> fulfiller;
  CancelScope handoff;  // cancelled with the caller until started()
  bool isStarted = false;

  friend class TaskNursery;
  template <typename U, typename... Params>
  friend kj::Own<U> kj::refcounted(Params&&... params);
};

// ---------------------------------------------------------------------------------------------

template <typename Fn>
  requires std::is_convertible_v<std::invoke_result_t<Fn&>, kj::Promise<void>>
void TaskNursery::startSoon(Fn fn) {
  add(kj::Function<kj::Promise<void>()>(kj::mv(fn)));
}

template <typename T, typename Fn>
  requires std::is_convertible_v<std::invoke_result_t<Fn&, TaskStatus<T>&>, kj::Promise<void>>
Co<T> TaskNursery::start(Fn fn) {
  auto paf = kj::newPromiseAndFulfiller<T>();
  kj::Own<TaskStatus<T>> status = [&]() {
    _::AmbientScopeGuard guard(&scope);
    return kj::refcounted<TaskStatus<T>>(kj::mv(paf.fulfiller));
  }();
  add([fn = kj::mv(fn), status = kj::addRef(*status)]() mutable -> Co<void> {
    TaskStatus<T>& s = *status;
    try {
      co_await s.handoff.run([&]() { return fn(s); });
    } catch (...) {
      if (s.isStarted) throw;
      // Before started() the failure belongs to the caller alone.
      s.fulfiller->reject(currentException());
      co_return;
    }
    if (!s.isStarted) {
      s.fulfiller->reject(KJ_EXCEPTION(FAILED, "task finished without calling started()"));
    }
  });
  // If the caller is cancelled during the handshake, so is the child (trio runs it in the
  // caller's context until it has started). A Cancelled caught here is the caller's to raise.
  struct CancelChildUnlessStarted {
    TaskStatus<T>& status;
    ~CancelChildUnlessStarted() noexcept(false) {
      if (!status.isStarted) status.handoff.cancel();
    }
  } guard{*status};
  co_return co_await kj::mv(paf.promise);
}

}  // namespace harrow
