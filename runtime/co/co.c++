#include <harrow/co/co.h>

#include <harrow/co/cancel_scope.h>

#include <cxxabi.h>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <typeinfo>

namespace harrow {

kj::Exception currentException() {
#if defined(__GLIBCXX__)
  // The common case, a kj::Exception, found as `catch (const kj::Exception&)` finds it but
  // without raising it again: every coroutine a cancellation crosses handles it here, and a
  // rethrow is a second walk of the unwind tables per frame (bench/README.md, "Graceful teardown
  // at 1,000 actors"). libstdc++'s exception_ptr is the thrown object's address, and a
  // type_info's __do_catch is the test (and base adjustment) its catch clauses use.
  if (const std::type_info* thrown = abi::__cxa_current_exception_type()) {
    std::exception_ptr current = std::current_exception();
    static_assert(sizeof(current) == sizeof(void*), "libstdc++'s exception_ptr is one pointer");
    void* object;
    memcpy(&object, &current, sizeof(object));
    if (object != nullptr && typeid(kj::Exception).__do_catch(thrown, &object, 1)) {
      return kj::cp(*static_cast<const kj::Exception*>(object));  // the caller may rethrow it
    }
  }
#endif
  try {
    throw;
  } catch (const kj::Exception& e) {
    return kj::cp(e);  // a copy: the caller may still rethrow the original with `throw;`
  } catch (std::exception& e) {
    int status = 0;
    char* name = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
    KJ_DEFER(free(name));
    return kj::Exception(kj::Exception::Type::FAILED, "(unknown)", -1,
                         kj::str(status == 0 ? name : typeid(e).name(), ": ", e.what()));
  } catch (...) {
    return kj::Exception(kj::Exception::Type::FAILED, "(unknown)", -1,
                         kj::str("unknown non-KJ exception of type ",
                                 abi::__cxa_current_exception_type()->name()));
  }
}

namespace _ {

thread_local bool nextCoIsHandler = false;
thread_local HandlerHook* handlerHook = nullptr;

std::atomic<std::uintptr_t> CoroutineTypes::slots[kSlots] = {};

bool CoroutineTypes::learn(kj::_::PromiseNode& node, std::uintptr_t key) {
  // type_info objects are at least pointer-aligned, which leaves the low bit for the answer.
  bool isCoroutine = dynamic_cast<CoroutineBase*>(&node) != nullptr;
  slots[(key >> 4) % kSlots].store(key | std::uintptr_t(isCoroutine), std::memory_order_relaxed);
  return isCoroutine;
}

Ambient& ambient() noexcept {
  static thread_local Ambient state;
  return state;
}

void LeafAwait::interrupt() {
  // Called by a cancelled scope, which has already unlinked us. Drop the awaited promise (KJ
  // cancellation of the leaf) and resume the coroutine, whose await_resume throws Cancelled.
  interrupted = true;
  coroutine->leafAwait = nullptr;
  coroutine->awaited = nullptr;
  node = nullptr;
  coroutine->armDepthFirst();
}

CoroutineBase::CoroutineBase(std::coroutine_handle<> handle, const kj::Disposer& disposer)
    : handle(handle), disposer(disposer), scope_(ambient().scope) {}

CoroutineBase::~CoroutineBase() noexcept {}

void CoroutineBase::onReady(kj::_::Event* event) noexcept {
  parentEvent = event;
  if (done && event != nullptr) event->armBreadthFirst();
}

void CoroutineBase::tracePromise(kj::_::TraceBuilder& builder, bool stopAtNextEvent) {
  if (stopAtNextEvent) return;
  if (awaited != nullptr && *awaited) (*awaited)->tracePromise(builder, false);
  builder.add(handle.address());
}

void CoroutineBase::traceEvent(kj::_::TraceBuilder& builder) {
  if (awaited != nullptr && *awaited) (*awaited)->tracePromise(builder, true);
  builder.add(handle.address());
  if (parentEvent != nullptr) parentEvent->traceEvent(builder);
}

kj::Maybe<kj::Own<kj::_::Event>> CoroutineBase::fire() {
  enterBody();
  handle.resume();
  if (destroyRequested) {
    // Our promise was dropped while the body ran. The body has now suspended; the loop destroys
    // the frame through this Own once fire() has returned (an Event may not free itself here).
    return kj::Own<kj::_::Event>(this, disposer);
  }
  return nullptr;
}

void CoroutineBase::destroy() {
  if (running) {
    // Dropped from inside its own body: finish destruction when the body next suspends.
    destroyRequested = true;
    parentEvent = nullptr;
    return;
  }
  // The awaited promise goes first: it may refer to the frame's locals.
  if (leafAwait != nullptr) {
    scope_->waiters.remove(*leafAwait);
    leafAwait = nullptr;
  }
  if (awaited != nullptr) {
    *awaited = nullptr;
    awaited = nullptr;
  }
  handle.destroy();
}

void CoroutineBase::enterBody() noexcept {
  running = true;
  savedScope = ambient().scope;
  ambient().scope = scope_;
}

void CoroutineBase::enterScope(CancelScope* scope) noexcept {
  scope_ = scope;
  ambient().scope = scope;
}

void CoroutineBase::leaveBody() noexcept {
  ambient().scope = savedScope;
  running = false;
}

bool CoroutineBase::suspendOn(LeafAwait& await, kj::Own<kj::_::PromiseNode>& node,
                              bool checkpoint) {
  if (checkpoint && scope_ != nullptr && scope_->isEffectivelyCancelled()) {
    await.interrupted = true;  // do not suspend: await_resume raises Cancelled now
    return false;
  }
  node->setSelfPointer(&node);
  node->onReady(this);
  awaited = &node;
  if (checkpoint && scope_ != nullptr) {
    scope_->waiters.add(await);
    leafAwait = &await;
  }
  leaveBody();
  return true;
}

void CoroutineBase::suspendOnCoroutine(kj::Own<kj::_::PromiseNode>& node) {
  node->setSelfPointer(&node);
  node->onReady(this);
  awaited = &node;
  leaveBody();
}

void CoroutineBase::resumed(LeafAwait* await) noexcept {
  if (leafAwait != nullptr) {
    scope_->waiters.remove(*leafAwait);
    leafAwait = nullptr;
  }
  awaited = nullptr;
}

void CoroutineBase::finished() noexcept {
  done = true;
  leaveBody();
  if (parentEvent != nullptr && !destroyRequested) parentEvent->armDepthFirst();
}

}  // namespace _
}  // namespace harrow
