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

#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/function.h>
#include <kj/list.h>
#include <kj/one-of.h>
#include <kj/timer.h>
#include <kj/vector.h>

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

// The deadlines of the cancel scopes on one loop that share `timer`, behind one timer entry
// (trio's Runner.deadlines). Without it every scope with a deadline arms a kj timer of its own:
// an adapter, a promise node and a multimap entry allocated, inserted and erased per scope, which
// made a call under a deadline 1.05-1.08x a plain one (bench/README.md). With it, a scope's entry
// is intrusive (its slot in a binary heap held here) and the kj timer is armed only for a
// deadline earlier than the one already armed; a timer left armed for a scope that has since
// closed fires once, finds nothing due, and re-arms for the earliest left.
//
//   harrow::DeadlineQueue deadlines(timer);  // for the loop's life (harrow::Actor owns one)
//   ... scopes on this thread with setDeadline(timer, ...) use it ...
//
// Guarantees: deadlines fire in order of time, ties in the order they were set; every scope due
// at one firing is cancelled before any coroutine resumes (as trio's run loop expires all due
// deadlines at once). A scope on another timer, or on a thread with no queue, arms its own timer
// as before. The queue must be destroyed on its loop's thread, before the loop and the timer;
// scopes still waiting then lose their deadline (nothing would run them any more). Several may
// be installed on one thread (one per actor, say): a scope uses the newest one on its timer.
//
// Built on a loop's UnixEventPort (as harrow::Actor's is), the queue wakes the loop with a
// timerfd of its own instead of a kj timer entry: a pending kj timer makes every epoll_wait of
// the loop sleep with a timeout, and a sleep with a timeout costs the kernel a timer set and
// cancelled per wait (twice per call, caller and callee: bench/README.md, "Deadlines"). The
// timerfd is set (a syscall) only when a deadline earlier than the armed one arrives, as the kj
// entry was.
class DeadlineQueue {
public:
  explicit DeadlineQueue(kj::Timer& timer);
  // On `port`'s own timer (port.getTimer()), woken by a timerfd.
  explicit DeadlineQueue(kj::UnixEventPort& port);
  ~DeadlineQueue() noexcept(false);
  KJ_DISALLOW_COPY(DeadlineQueue);

  // The queue for `timer` installed on this thread (the innermost), if any.
  static DeadlineQueue* forTimer(kj::Timer& timer);

  size_t size() const { return heap.size(); }

private:
  kj::Timer& timer;
  DeadlineQueue* outer;           // the next older queue installed on this thread
  kj::Vector<CancelScope*> heap;  // min-heap by (deadline, order set)
  uint64_t nextOrder = 0;
  kj::Maybe<kj::TimePoint> armedAt;  // when the kj timer entry (or timerfd) fires, while armed
  kj::AutoCloseFd timerFd;           // with a UnixEventPort: the timerfd, on CLOCK_MONOTONIC
  kj::Maybe<kj::Own<kj::UnixEventPort::FdObserver>> timerFdObserver;
  bool watching = false;  // a whenBecomesReadable() of the timerfd is pending
  kj::Maybe<kj::Promise<void>> armed;
  bool expiring = false;

  void add(CancelScope& scope);
  void remove(CancelScope& scope);
  // Arms the timer for `when`; what it returns (if anything) is the promise to keep in `armed`.
  kj::Maybe<kj::Promise<void>> armFor(kj::TimePoint when);
  kj::Promise<void> watchTimerFd();
  kj::Promise<void> expire();
  bool before(size_t a, size_t b) const;
  void place(size_t slot, CancelScope* scope);
  void siftUp(size_t slot);
  void siftDown(size_t slot);

  friend class CancelScope;
};

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
  kj::Maybe<kj::Promise<void>> deadlineTask;  // a timer of its own, when no queue serves it
  DeadlineQueue* deadlineQueue = nullptr;     // the queue it waits in, if any
  size_t deadlineSlot = 0;                    // its index in that queue's heap
  uint64_t deadlineOrder = 0;                 // when it joined the queue, for ties
  kj::String taskName;

  kj::ListLink<CancelScope> childLink;
  kj::List<CancelScope, &CancelScope::childLink> children;
  kj::List<_::LeafAwait, &_::LeafAwait::link> waiters;

  void deliver();
  // The body has finished (with `failure`, if it raised): the deadline is dropped and a
  // Cancelled of this scope's own absorbed; any other error is raised again.
  void close(kj::Maybe<kj::Exception> failure);
  void close(kj::Maybe<kj::Own<kj::Exception>> failure);  // the same, for moveOnAfter's frame
  void expireDeadline();
  void dropDeadline();
  Co<void> runInside(kj::Function<kj::Promise<void>()> body);

  friend class _::CoroutineBase;
  friend class TaskNursery;
  friend class DeadlineQueue;
  friend kj::StringPtr currentTaskName();
  friend kj::Maybe<Deadline> currentDeadline();
  template <typename T> friend class TaskStatus;
  template <typename Body>
  friend Co<bool> moveOnAfter(kj::Timer& timer, kj::Duration timeout, Body body);
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
//
// What CancelScope::run() does, in this coroutine's own frame (as trio's `with` block runs in
// its task): no frame for the scope's body and no kj::Function, which made a call under a
// deadline cost more than the same call in a plain scope (bench/README.md, "Deadlines"). The
// body's error is kept on the heap, not in a kj::Maybe<kj::Exception> (376 bytes): with
// one, the frame was 1,240 bytes, past the largest size glibc's per-thread cache serves (1,032),
// and every call paid malloc's and free's slow paths (≈ 550 instructions).
template <typename Body>
Co<bool> moveOnAfter(kj::Timer& timer, kj::Duration timeout, Body body) {
  CancelScope scope;
  scope.setDeadline(timer, timer.now() + timeout);
  co_await _::EnterScope{&scope};
  kj::Maybe<kj::Own<kj::Exception>> failure;
  try {
    // As a kj::Promise<void>: evalNow would wrap a Co<void> in a Promise<Co<void>>.
    co_await kj::evalNow([&]() -> kj::Promise<void> { return body(); });
  } catch (...) {
    failure = kj::heap(currentException());  // not errorOf: that would give the body a frame
  }
  co_await _::EnterScope{scope.parent};
  scope.close(kj::mv(failure));
  co_return scope.cancelledCaught();
}

[[noreturn]] void throwTooSlow(kj::Duration timeout);

// The name of the innermost named scope around the running coroutine ("main" outside any).
kj::StringPtr currentTaskName();

// trio's fail_after: like moveOnAfter, but a body cut short by the deadline raises
// harrow.DeadlineExceeded (trio's TooSlowError; isTooSlow()).
template <typename Body>
Co<void> failAfter(kj::Timer& timer, kj::Duration timeout, Body body) {
  // Named first: GCC 12 frees the awaited Co too early in `if (co_await moveOnAfter(...))`.
  bool cut = co_await moveOnAfter(timer, timeout, kj::mv(body));
  if (cut) throwTooSlow(timeout);
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
    if (isCancelled(*e)) rethrow(kj::mv(*e));
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
  if (isCancelled(e)) rethrow(kj::mv(e));
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
  KJ_IF_MAYBE (e, failure) rethrow(kj::mv(*e));
}

}  // namespace harrow
