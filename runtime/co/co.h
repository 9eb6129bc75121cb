// C++20 coroutines over kj::Promise for KJ 0.9.2, which has none.
//
//   harrow::Co<int> twice(kj::Promise<int> p) { co_return 2 * co_await kj::mv(p); }
//
// A function returning `Co<T>` may `co_await` any `kj::Promise<U>` (a `Co<U>` is one) and
// `co_return` a T. `Co<T>` *is* a `kj::Promise<T>`: it converts by move and composes with `.then()`,
// `exclusiveJoin()`, `TaskSet` and everything else in KJ.
//
// Why a subclass and not kj::Promise itself: GCC 12 crashes on coroutines whose declared return
// type has a noexcept(false) destructor, which kj::Promise has. `Co<T>` only adds a noexcept one.
//
// How it works: the coroutine frame *is* the promise node (the shape KJ 0.10 later adopted). The
// frame's promise_type implements kj::_::PromiseNode (so the Co<T> owns the frame) and
// kj::_::Event (so an awaited promise resumes the frame from the event loop, never from inside
// another promise's callback). Consequences users can rely on:
//   - Coroutines start eagerly: the body runs synchronously up to its first suspension.
//   - Dropping a Co<T> destroys the frame at its current suspension point; the awaited promise is
//     destroyed first (it may point into the frame's locals), so cancellation propagates down
//     synchronously, as everywhere in KJ. Only destructors run ("KJ cancellation").
//   - A frame whose promise is dropped by its own body (while it runs) is destroyed as soon as
//     the body next suspends; the awaited promise at that point is dropped unfired.
//   - Each `co_await` of a not-yet-ready promise returns to the event loop; a ready one is resumed
//     breadth-first on the next loop turn, so long loops of ready awaits neither grow the stack
//     nor starve other events.
//   - An exception thrown in the body (kj::Exception or std::exception) rejects the Co<T>; a
//     rejected awaited promise throws at the `co_await`.
//
// trio-style cancellation (a Cancelled exception delivered at a checkpoint, so code can unwind
// and still do async cleanup) is layered on top in cancel_scope.h: every `co_await` of a promise
// that is not itself a harrow coroutine is a checkpoint of the scope the coroutine runs in.

#pragma once

#include <kj/async.h>

#include <coroutine>
#include <exception>
#include <atomic>
#include <cstdint>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace harrow {

template <typename T>
class Co;

class CancelScope;

// The exception being handled (call inside a catch block) as a kj::Exception: a std::exception
// keeps its type name and what(). KJ 0.10 has this as currentException().
kj::Exception currentException();

// Raises `exception` again, as kj::throwFatalException does, but a cancellation (harrow.Cancelled)
// without appending a backtrace of this throw point to its trace. A cancellation's trace only says
// where a task was waiting when its scope ended, and nothing logs or sends it (a remote one goes
// without a stack, docs/PROTOCOL.md); yet in a graceful teardown every task of every actor raises
// one, and every coroutine it passes through raises it again: those backtraces (a walk of the
// unwind tables per frame) were 16 % of the actors' CPU samples (bench/README.md, "Graceful
// teardown at 1,000 actors").
[[noreturn]] void rethrow(kj::Exception&& exception);

namespace _ {  // private

template <typename T>
using FixVoid = kj::_::FixVoid<T>;

class CoroutineBase;

// The current coroutine and its cancel scope, for the one event loop of this thread. This is
// what a trio task's "current cancel scope" is: set while a coroutine body runs, inherited by
// coroutines it creates. Not global state across threads: each thread has its own loop.
struct Ambient {
  CancelScope* scope = nullptr;
};
Ambient& ambient() noexcept;

// Swaps the ambient cancel scope for the lifetime of the guard: used by nurseries and scopes so
// that coroutines created inside start in the right scope.
class AmbientScopeGuard {
public:
  explicit AmbientScopeGuard(CancelScope* scope) noexcept
      : saved(ambient().scope) { ambient().scope = scope; }
  ~AmbientScopeGuard() noexcept { ambient().scope = saved; }
  KJ_DISALLOW_COPY(AmbientScopeGuard);

private:
  CancelScope* saved;
};

// One suspended `co_await` of a promise that is not a harrow coroutine. Cancel scopes keep these
// in a list so that cancelling a scope can interrupt exactly the leaf awaits inside it.
class LeafAwait {
public:
  void interrupt();  // drops the awaited promise and resumes the coroutine with Cancelled
  kj::ListLink<LeafAwait> link;

protected:
  // Initialised here, not assigned in a derived constructor's body: GCC 12 at -O3 otherwise
  // warns (-Wnonnull, falsely) about the disposer of the default-constructed kj::Own.
  explicit LeafAwait(kj::Own<kj::_::PromiseNode> node) : node(kj::mv(node)) {}

  friend class CoroutineBase;
  CoroutineBase* coroutine = nullptr;
  kj::Own<kj::_::PromiseNode> node;
  bool interrupted = false;
};

class CoroutineBase : public kj::_::PromiseNode, public kj::_::Event {
public:
  CoroutineBase(std::coroutine_handle<> handle, const kj::Disposer& disposer);
  // noexcept: GCC 12 crashes (ICE) compiling coroutines with some parameter types, kj::StringPtr
  // among them, when the promise type's destructor may throw.
  ~CoroutineBase() noexcept;
  KJ_DISALLOW_COPY(CoroutineBase);

  // PromiseNode
  void onReady(kj::_::Event* event) noexcept override;
  void tracePromise(kj::_::TraceBuilder& builder, bool stopAtNextEvent) override;

  // Event
  kj::Maybe<kj::Own<kj::_::Event>> fire() override;
  void traceEvent(kj::_::TraceBuilder& builder) override;

  // Called by the Co<T>'s disposer.
  void destroy();

  CancelScope* scope() const { return scope_; }
  // Moves the running body into `scope` (EnterScope below); only between awaits.
  void enterScope(CancelScope* scope) noexcept;

  // --- used by the awaiters ---
  void enterBody() noexcept;   // the body starts or resumes on this thread
  void leaveBody() noexcept;   // the body suspends or finishes
  // Returns false when the coroutine must not suspend: a checkpoint in a cancelled scope.
  bool suspendOn(LeafAwait& await, kj::Own<kj::_::PromiseNode>& node, bool checkpoint);
  void suspendOnCoroutine(kj::Own<kj::_::PromiseNode>& node);
  void resumed(LeafAwait* await) noexcept;
  void finished() noexcept;

  struct InitialSuspend {
    CoroutineBase& self;
    bool await_ready() const noexcept { return true; }
    void await_suspend(std::coroutine_handle<>) noexcept {}
    void await_resume() noexcept { self.enterBody(); }
  };
  struct FinalSuspend {
    CoroutineBase& self;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<>) noexcept { self.finished(); }
    void await_resume() noexcept {}
  };

private:
  std::coroutine_handle<> handle;
  const kj::Disposer& disposer;              // the Co<T>'s; reused to destroy a self-dropped frame
  CancelScope* scope_;                       // fixed at creation: the ambient scope then
  kj::_::Event* parentEvent = nullptr;       // armed when the coroutine completes
  kj::Own<kj::_::PromiseNode>* awaited = nullptr;  // the awaited promise while suspended
  LeafAwait* leafAwait = nullptr;            // the current leaf await, if suspended on one
  CancelScope* savedScope = nullptr;
  bool running = false;
  bool done = false;
  bool destroyRequested = false;

  friend class LeafAwait;
};

// Whether an awaited promise node is a harrow coroutine frame (whose await is not a
// checkpoint). Asked at every co_await, so it is memoised by the node's dynamic type: a
// dynamic_cast per await was 3 % of a stream's CPU (bench/README.md). The cache maps a
// std::type_info address to the answer (low bit), direct-mapped; a type's answer never changes,
// so a race between threads costs at most a miss, and relaxed atomics keep it free of data races.
class CoroutineTypes {
public:
  static bool contains(kj::_::PromiseNode& node) {
    const std::type_info* type = &typeid(node);
    auto key = reinterpret_cast<std::uintptr_t>(type);
    std::uintptr_t entry = slots[(key >> 4) % kSlots].load(std::memory_order_relaxed);
    if ((entry & ~std::uintptr_t(1)) == key) return entry & 1;
    return learn(node, key);
  }

private:
  static constexpr std::size_t kSlots = 64;
  static std::atomic<std::uintptr_t> slots[kSlots];
  static bool learn(kj::_::PromiseNode& node, std::uintptr_t key);  // the dynamic_cast
};

// Awaits a kj::Promise<U> from a coroutine.
template <typename U>
class PromiseAwaiter : public LeafAwait {
public:
  PromiseAwaiter(kj::Promise<U>&& promise, bool checkpoint)
      : LeafAwait(kj::_::PromiseNode::from(kj::mv(promise))), checkpoint(checkpoint) {}
  KJ_DISALLOW_COPY(PromiseAwaiter);
  PromiseAwaiter(PromiseAwaiter&&) = delete;

  bool await_ready() const noexcept { return false; }

  template <typename P>
  bool await_suspend(std::coroutine_handle<P> handle) {
    CoroutineBase& co = handle.promise();
    coroutine = &co;
    if (isCoroutineNode()) {
      // Awaiting another harrow coroutine is not a checkpoint: cancellation reaches that
      // coroutine's own leaf awaits, so it can unwind and clean up before we see its result.
      co.suspendOnCoroutine(node);
      return true;
    }
    return co.suspendOn(*this, node, checkpoint);
  }

  U await_resume() {
    coroutine->resumed(this);
    if (interrupted) throwCancelledHere();
    kj::_::ExceptionOr<FixVoid<U>> result;
    node->get(result);
    node = nullptr;  // the awaited promise is done; free it before the body continues
    if (result.value == nullptr) {
      KJ_IF_MAYBE (e, result.exception) rethrow(kj::mv(*e));
    }
    return kj::_::convertToReturn(kj::mv(result));
  }

private:
  bool checkpoint;
  bool isCoroutineNode() { return CoroutineTypes::contains(*node); }
  void throwCancelledHere();
};

[[noreturn]] void throwCancelledFor(CancelScope* scope);

template <typename U>
void PromiseAwaiter<U>::throwCancelledHere() {
  node = nullptr;
  throwCancelledFor(coroutine->scope());
}

// `co_await EnterScope{&scope}`: the awaiting coroutine runs inside `scope` from here on (its
// checkpoints are that scope's, coroutines it creates start in it), as trio's `with` block does,
// without a coroutine frame for the scope's body (moveOnAfter). Never suspends. The coroutine
// must enter the scope it came from again before `scope` is destroyed.
struct EnterScope {
  CancelScope* scope;
};

// Marks a promise as awaited without a cancellation checkpoint: used internally where a scope
// must wait for work it has already told to stop (a nursery joining its cancelled children).
template <typename T>
struct Uncancellable {
  kj::Promise<T> promise;
};

// Post-mortem debugging at the handler (<harrow/spawn/debug.h>). The incoming-task runner sets
// nextCoIsHandler just before it calls a server's dispatch(): the first coroutine created then is
// the handler's own. In debug mode the debugger installs a HandlerHook on its actor's thread; it
// is called when an exception leaves that handler's body, inside its coroutine (its frame and
// locals still alive, under the throw's remaining frames), before the error is handed on.
// Thread-local: one actor (and at most one debugger) per event loop thread, nothing shared.
extern thread_local bool nextCoIsHandler;
class HandlerHook {
public:
  virtual void handlerRaised(const kj::Exception& error) = 0;

protected:
  ~HandlerHook() = default;
};
extern thread_local HandlerHook* handlerHook;

template <typename T>
class CoroutinePromise : public CoroutineBase {
public:
  CoroutinePromise();

  Co<T> get_return_object();
  InitialSuspend initial_suspend() noexcept { return {*this}; }
  FinalSuspend final_suspend() noexcept { return {*this}; }
  void unhandled_exception() {
    auto error = currentException();
    if (isHandler && handlerHook != nullptr) handlerHook->handlerRaised(error);
    result.addException(kj::mv(error));
  }

  template <typename U>
  PromiseAwaiter<U> await_transform(kj::Promise<U>&& promise) {
    return PromiseAwaiter<U>(kj::mv(promise), true);
  }
  template <typename U>
  PromiseAwaiter<U> await_transform(Uncancellable<U>&& u) {
    return PromiseAwaiter<U>(kj::mv(u.promise), false);
  }
  std::suspend_never await_transform(EnterScope enter) noexcept {
    enterScope(enter.scope);
    return {};
  }

  void get(kj::_::ExceptionOrValue& output) noexcept override {
    output.as<FixVoid<T>>() = kj::mv(result);
  }

protected:
  kj::_::ExceptionOr<FixVoid<T>> result;

private:
  bool isHandler = std::exchange(nextCoIsHandler, false);
};

template <typename T>
class ValuePromise : public CoroutinePromise<T> {
public:
  void return_value(T&& value) { this->result.value = kj::fwd<T>(value); }
  void return_value(const T& value)
      requires(std::is_copy_constructible_v<T> && !std::is_reference_v<T>) {
    this->result.value = value;
  }
};

class VoidPromise : public CoroutinePromise<void> {
public:
  void return_void() { this->result.value = kj::_::Void(); }
};

template <typename T>
class CoroutineDisposer final : public kj::Disposer {
public:
  void disposeImpl(void* pointer) const override {
    static_cast<CoroutinePromise<T>*>(pointer)->destroy();
  }
  static const CoroutineDisposer instance;
};
template <typename T>
const CoroutineDisposer<T> CoroutineDisposer<T>::instance;

}  // namespace _

template <typename T>
class [[nodiscard]] Co : public kj::Promise<T> {
  // A kj::Promise<T> that may be implemented as a coroutine. See the top of this file.
  //
  // [[nodiscard]]: a Co that is dropped unawaited is cancelled at once, so `portal.add(5);`
  // without co_await would start a call and cancel it. The compiler refuses it instead.
public:
  using promise_type = std::conditional_t<std::is_void_v<T>, _::VoidPromise, _::ValuePromise<T>>;

  Co(kj::Promise<T>&& promise) : kj::Promise<T>(kj::mv(promise)) {}
  Co(Co&&) = default;
  Co& operator=(Co&&) = default;
  ~Co() noexcept {}
};

template <typename T>
_::CoroutinePromise<T>::CoroutinePromise()
    : CoroutineBase(std::coroutine_handle<CoroutinePromise>::from_promise(*this),
                    CoroutineDisposer<T>::instance) {}

template <typename T>
Co<T> _::CoroutinePromise<T>::get_return_object() {
  kj::Own<kj::_::PromiseNode> self(this, CoroutineDisposer<T>::instance);
  return Co<T>(kj::_::PromiseNode::to<kj::Promise<T>>(kj::mv(self)));
}

namespace _ {
template <typename U>
U promiseValueOf(kj::Promise<U>*);
}  // namespace _

// The value type of a promise type: PromiseValue<Co<int>> and PromiseValue<kj::Promise<int>> are
// both int.
template <typename P>
using PromiseValue = decltype(_::promiseValueOf(static_cast<P*>(nullptr)));

// `co_await harrow::uncancellable(p)`: await `p` without a cancellation checkpoint. Use only to
// wait for work that is already guaranteed to finish (it has been told to stop).
template <typename T>
_::Uncancellable<T> uncancellable(kj::Promise<T>&& promise) {
  return {kj::mv(promise)};
}

}  // namespace harrow
