// Cancel scopes: trio's cancellation, delivered at checkpoints, on top of harrow coroutines.
//
// Two kinds of cancellation meet in harrow; every operation says which one it uses.
//  - KJ cancellation: dropping a promise. Synchronous; only destructors run; nothing can await.
//  - Scope cancellation (trio's): cancelling a CancelScope delivers a Cancelled exception at the
//    next checkpoint of every coroutine running inside it (and inside its unshielded nested
//    scopes). A checkpoint is a `co_await` of any promise that is not itself a harrow coroutine;
//    a coroutine suspended at one is woken at once and the awaited promise is dropped (KJ
//    cancellation of that leaf only). The coroutine then unwinds normally and may still await
//    cleanup inside a shielded scope, e.g. tell a remote actor to stop and wait for its ack.
//
// A Cancelled exception leaving a scope's body is absorbed by that scope if the scope itself was
// cancelled (cancelledCaught() then reports it); otherwise it propagates to the scope that was.
// Cancellation is never an error: nurseries do not report it.
//
//   harrow::CancelScope scope;                    // child of the current coroutine's scope
//   co_await scope.run([&]() -> harrow::Co<void> { ... scope.cancel(); ... });
//   if (scope.cancelledCaught()) ...

#pragma once

#include <harrow/co/co.h>
#include <harrow/co/errors.h>

#include <kj/debug.h>
#include <kj/function.h>
#include <kj/list.h>
#include <kj/one-of.h>
#include <kj/timer.h>

namespace harrow {

// True for the exception that scope cancellation delivers at a checkpoint.
bool isCancelled(const kj::Exception& exception);

// True for the exception failAfter() throws when its deadline passes (trio's TooSlowError):
// harrow.DeadlineExceeded, the same kind a call raises when the deadline it carried to another
// actor passed (is(e, ErrorKind::DEADLINE_EXCEEDED)).
bool isTooSlow(const kj::Exception& exception);

// The deadline that governs the running coroutine (trio's current_effective_deadline).
struct Deadline {
  CancelScope* scope;   // the scope whose deadline it is
  kj::TimePoint when;   // on `timer`'s clock
  kj::Timer* timer;

  // What is left of it now, by its timer (zero once it has passed).
  kj::Duration remaining() const;
};

// The earliest deadline among the scopes around the running coroutine, up to and including the
// innermost shielded one (a shield keeps the deadlines outside it out, as it keeps their
// cancellation out); nullptr if none has one. Scopes on different timers are compared by what
// remains of each. A call started here carries `remaining()` to its callee (docs/PROTOCOL.md).
kj::Maybe<Deadline> currentDeadline();

class CancelScope {
public:
  // The new scope nests inside the scope of the coroutine that is running (if any).
  explicit CancelScope(bool shield = false);
  ~CancelScope() noexcept(false);
  KJ_DISALLOW_COPY(CancelScope);

  // Runs `body()` (returning a Co<void> or kj::Promise<void>) inside this scope and resolves when
  // it has finished. A Cancelled caused by this scope's own cancel() is absorbed. The returned
  // promise owns `body`, so a lambda's captures outlive the coroutine it starts. A scope runs one
  // body: a second run() raises (as trio's does), since its deadline and state belong to the first.
  Co<void> run(kj::Function<kj::Promise<void>()> body);

  // Scope cancellation of everything inside this scope. Idempotent; takes effect immediately for
  // suspended coroutines, and at the next checkpoint for the one calling it.
  void cancel();

  // Cancels the scope when `timer` reaches `deadline` (while the scope is still open). A later
  // call replaces the deadline. Calls started inside the scope carry what remains of it to the
  // actor they call (currentDeadline()); a deadline moved after a call started does not reach
  // that call's callee.
  void setDeadline(kj::Timer& timer, kj::TimePoint deadline);
  kj::Maybe<kj::TimePoint> deadline() const { return deadlineAt; }

  // A shielded scope is not reached by cancellation of the scopes around it.
  void setShield(bool shield);

  bool cancelCalled() const { return cancelCalled_; }
  bool cancelledCaught() const { return cancelledCaught_; }
  bool deadlineExpired() const { return deadlineExpired_; }

  // Whether a checkpoint inside this scope would raise Cancelled now.
  bool isEffectivelyCancelled() const;

  // Names the task running in this scope, for log lines (see currentTaskName()).
  void setName(kj::String name) { taskName = kj::mv(name); }

private:
  CancelScope* parent;
  bool shield;
  bool cancelCalled_ = false;
  bool cancelledCaught_ = false;
  bool deadlineExpired_ = false;
  bool ran = false;
  kj::Maybe<kj::TimePoint> deadlineAt;
  kj::Timer* deadlineTimer = nullptr;
  kj::Maybe<kj::Promise<void>> deadlineTask;
  kj::String taskName;

  kj::ListLink<CancelScope> childLink;
  kj::List<CancelScope, &CancelScope::childLink> children;
  kj::List<_::LeafAwait, &_::LeafAwait::link> waiters;

  void deliver();
  Co<void> runInside(kj::Function<kj::Promise<void>()> body);

  friend class _::CoroutineBase;
  friend class TaskNursery;
  friend kj::StringPtr currentTaskName();
  friend kj::Maybe<Deadline> currentDeadline();
  template <typename T> friend class TaskStatus;
};

// Runs `body` shielded from cancellation of the enclosing scopes: for cleanup that must finish.
// Guard it with a deadline (shielded scopes can still be cancelled themselves).
template <typename Body>
Co<void> shielded(Body body) {
  CancelScope scope(true);
  co_await scope.run(kj::mv(body));
}

// trio's move_on_after: runs `body`, cancelling it when `timeout` passes. Resolves to true when
// the deadline cut the body short, false when the body finished first.
template <typename Body>
Co<bool> moveOnAfter(kj::Timer& timer, kj::Duration timeout, Body body) {
  CancelScope scope;
  scope.setDeadline(timer, timer.now() + timeout);
  co_await scope.run(kj::mv(body));
  co_return scope.cancelledCaught();
}

[[noreturn]] void throwTooSlow(kj::Duration timeout);

// The name of the innermost named scope around the running coroutine ("main" outside any).
kj::StringPtr currentTaskName();

// trio's fail_after: like moveOnAfter, but a body cut short by the deadline raises
// harrow.DeadlineExceeded (trio's TooSlowError; isTooSlow()).
template <typename Body>
Co<void> failAfter(kj::Timer& timer, kj::Duration timeout, Body body) {
  CancelScope scope;
  scope.setDeadline(timer, timer.now() + timeout);
  co_await scope.run(kj::mv(body));
  if (scope.cancelledCaught()) throwTooSlow(timeout);
}

// Runs `body` (a function returning a promise) and resolves to the error it raised, or nullptr
// if it succeeded. A cancellation is not caught: it propagates, so the enclosing scope still
// ends (trio never lets a task swallow Cancelled). C++ forbids co_await inside a catch block;
// errorOf, errorOr and finally are the one place that pattern is written (tests/lint checks it),
// so callers can co_await while handling the error:
//
//   KJ_IF_MAYBE(e, co_await harrow::errorOf([&]() { return portal.add(5); })) {
//     if (harrow::is(*e, ErrorKind::ACTOR_DIED)) co_await restart();
//   }
//
// A value the body produces is the body's to keep (capture it inside the lambda), or use errorOr.
template <typename Body>
Co<kj::Maybe<kj::Exception>> errorOf(Body body) {
  kj::Maybe<kj::Exception> failure;
  try {
    co_await body();
  } catch (...) {
    failure = currentException();
  }
  KJ_IF_MAYBE(e, failure) {
    if (isCancelled(*e)) kj::throwFatalException(kj::mv(*e));
  }
  co_return kj::mv(failure);
}

// What errorOr resolves to: the body's value, or the error it raised (Rust's Result<T, Error>).
template <typename T>
class ErrorOr {
public:
  ErrorOr(T&& value) : state(kj::mv(value)) {}
  ErrorOr(kj::Exception&& error) : state(kj::mv(error)) {}

  // The error the body raised; nullptr if it produced a value.
  kj::Maybe<kj::Exception&> error() {
    if (state.template is<kj::Exception>()) return state.template get<kj::Exception>();
    return nullptr;
  }
  // The value; only when error() is nullptr.
  T& operator*() {
    KJ_IREQUIRE(state.template is<T>(), "the body raised: check error() first");
    return state.template get<T>();
  }
  T* operator->() { return &**this; }

private:
  kj::OneOf<T, kj::Exception> state;
};

// errorOf for a body that produces a value the caller keeps: resolves to the value or the error.
// A cancellation is not caught, as in errorOf.
//
//   auto channel = co_await harrow::errorOr([&]() { return listener.accept(); });
//   KJ_IF_MAYBE(e, channel.error()) { log(*e); co_return; }
//   serve(kj::mv(*channel));
template <typename Body>
Co<ErrorOr<PromiseValue<decltype(kj::instance<Body&>()())>>> errorOr(Body body) {
  using T = PromiseValue<decltype(kj::instance<Body&>()())>;
  kj::Maybe<kj::Exception> failure;
  try {
    co_return ErrorOr<T>(co_await body());
  } catch (...) {
    failure = currentException();
  }
  auto& e = KJ_ASSERT_NONNULL(failure);
  if (isCancelled(e)) kj::throwFatalException(kj::mv(e));
  co_return ErrorOr<T>(kj::mv(e));
}

// trio's `try: body finally: cleanup`: runs `body`, then `cleanup` whether the body succeeded,
// raised or was cancelled, then re-raises the body's error (Cancelled included). The cleanup runs
// shielded, so a cancelled task can still await it (tell a child to stop and wait for its exit);
// bound it by its own deadline. An error the cleanup raises replaces the body's, as in Python.
// A cleanup returning void runs synchronously (unlike KJ_DEFER, not when the frame is dropped).
//
//   co_await harrow::finally([&]() { return peer.serve(); },
//                            [&]() { return stop(child); });
template <typename Body, typename Cleanup>
Co<void> finally(Body body, Cleanup cleanup) {
  kj::Maybe<kj::Exception> failure;
  try {
    co_await body();
  } catch (...) {
    failure = currentException();
  }
  if constexpr (std::is_void_v<decltype(cleanup())>) {
    cleanup();
  } else {
    co_await shielded(kj::mv(cleanup));
  }
  KJ_IF_MAYBE(e, failure) kj::throwFatalException(kj::mv(*e));
}

}  // namespace harrow
