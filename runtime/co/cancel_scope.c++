#include <harrow/co/cancel_scope.h>

#include <kj/debug.h>

namespace harrow {
bool isCancelled(const kj::Exception& exception) {
  return is(exception, ErrorKind::CANCELLED);
}

bool isTooSlow(const kj::Exception& exception) {
  return is(exception, ErrorKind::DEADLINE_EXCEEDED);
}

namespace _ {

void throwCancelledFor(CancelScope*) {
  kj::throwFatalException(
      makeError(ErrorKind::CANCELLED, "the enclosing cancel scope was cancelled"));
}

}  // namespace _

void throwTooSlow(kj::Duration timeout) {
  kj::throwFatalException(kj::Exception(kj::Exception::Type::OVERLOADED, __FILE__, __LINE__,
      kj::str(errorPrefix(ErrorKind::DEADLINE_EXCEEDED), "deadline of ", timeout, " passed")));
}

kj::Duration Deadline::remaining() const {
  kj::TimePoint now = timer->now();
  return when > now ? when - now : 0 * kj::NANOSECONDS;
}

kj::Maybe<Deadline> currentDeadline() {
  kj::Maybe<Deadline> earliest;
  for (CancelScope* s = _::ambient().scope; s != nullptr; s = s->parent) {
    KJ_IF_MAYBE(when, s->deadlineAt) {
      Deadline candidate{s, *when, s->deadlineTimer};
      KJ_IF_MAYBE(best, earliest) {
        if (candidate.remaining() < best->remaining()) earliest = candidate;
      } else {
        earliest = candidate;
      }
    }
    if (s->shield) break;
  }
  return earliest;
}

kj::StringPtr currentTaskName() {
  for (const CancelScope* s = _::ambient().scope; s != nullptr; s = s->parent) {
    if (s->taskName.size() > 0) return s->taskName;
  }
  return "main";
}

CancelScope::CancelScope(bool shield)
    : parent(_::ambient().scope), shield(shield) {
  if (parent != nullptr) parent->children.add(*this);
}

CancelScope::~CancelScope() noexcept(false) {
  deadlineTask = nullptr;
  if (parent != nullptr) parent->children.remove(*this);
  // Coroutines running in this scope hold a pointer to it; the scope's owner must outlive them.
  KJ_ASSERT(waiters.empty(), "cancel scope destroyed while coroutines still await inside it");
  KJ_ASSERT(children.empty(), "cancel scope destroyed before the scopes nested in it");
}

bool CancelScope::isEffectivelyCancelled() const {
  for (const CancelScope* s = this; s != nullptr; s = s->parent) {
    if (s->cancelCalled_) return true;
    if (s->shield) return false;
  }
  return false;
}

void CancelScope::cancel() {
  if (cancelCalled_) return;
  cancelCalled_ = true;
  if (isEffectivelyCancelled()) deliver();
}

void CancelScope::setShield(bool newShield) {
  shield = newShield;
  if (!shield && isEffectivelyCancelled()) deliver();
}

void CancelScope::deliver() {
  while (!waiters.empty()) {
    _::LeafAwait& await = waiters.front();
    waiters.remove(await);
    await.interrupt();
  }
  for (CancelScope& child : children) {
    if (!child.shield) child.deliver();
  }
}

void CancelScope::setDeadline(kj::Timer& timer, kj::TimePoint deadline) {
  deadlineAt = deadline;
  deadlineTimer = &timer;
  deadlineTask = timer.atTime(deadline).then([this]() {
    deadlineExpired_ = true;
    cancel();
  }).eagerlyEvaluate(nullptr);
}

Co<void> CancelScope::run(kj::Function<kj::Promise<void>()> body) {
  KJ_REQUIRE(!ran, "a CancelScope runs one body; make another scope for the next");
  ran = true;
  // The coroutine that awaits the body runs *inside* this scope, so that a body which is a plain
  // promise (not a coroutine) is itself a checkpoint of this scope.
  _::AmbientScopeGuard guard(this);
  return runInside(kj::mv(body));
}

Co<void> CancelScope::runInside(kj::Function<kj::Promise<void>()> body) {
  kj::Maybe<kj::Exception> failure;
  try {
    co_await kj::evalNow([&]() { return body(); });
  } catch (...) {
    failure = currentException();
  }
  deadlineTask = nullptr;
  deadlineAt = nullptr;  // nothing runs in the scope any more: no call can carry it
  KJ_IF_MAYBE(exception, failure) {
    if (cancelCalled_ && isCancelled(*exception)) {
      cancelledCaught_ = true;
    } else {
      kj::throwFatalException(kj::mv(*exception));
    }
  }
}

}  // namespace harrow
