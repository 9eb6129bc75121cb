#include <harrow/co/cancel_scope.h>

#include <kj/debug.h>

#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

namespace harrow {
bool isCancelled(const kj::Exception& exception) {
  return is(exception, ErrorKind::CANCELLED);
}

bool isTooSlow(const kj::Exception& exception) {
  return is(exception, ErrorKind::DEADLINE_EXCEEDED);
}

namespace _ {

void throwCancelledFor(CancelScope*) {
  rethrow(makeError(ErrorKind::CANCELLED, "the enclosing cancel scope was cancelled"));
}

}  // namespace _

void rethrow(kj::Exception&& exception) {
  if (isCancelled(exception)) {
    // What kj::throwFatalException does, less Exception::extendTrace (a backtrace).
    kj::getExceptionCallback().onFatalException(kj::mv(exception));
    abort();  // onFatalException throws
  }
  kj::throwFatalException(kj::mv(exception), 1);
}

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
  dropDeadline();
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
  dropDeadline();
  deadlineAt = deadline;
  deadlineTimer = &timer;
  if (DeadlineQueue* queue = DeadlineQueue::forTimer(timer)) {
    queue->add(*this);
  } else {
    deadlineTask =
        timer.atTime(deadline).then([this]() { expireDeadline(); }).eagerlyEvaluate(nullptr);
  }
}

void CancelScope::expireDeadline() {
  deadlineExpired_ = true;
  cancel();
}

void CancelScope::dropDeadline() {
  deadlineTask = nullptr;
  if (deadlineQueue != nullptr) deadlineQueue->remove(*this);
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
  close(kj::mv(failure));
}

void CancelScope::close(kj::Maybe<kj::Exception> failure) {
  dropDeadline();
  deadlineAt = nullptr;  // nothing runs in the scope any more: no call can carry it
  KJ_IF_MAYBE(exception, failure) {
    if (cancelCalled_ && isCancelled(*exception)) {
      cancelledCaught_ = true;
    } else {
      rethrow(kj::mv(*exception));
    }
  }
}

void CancelScope::close(kj::Maybe<kj::Own<kj::Exception>> failure) {
  KJ_IF_MAYBE (exception, failure) {
    close(kj::mv(**exception));
  } else {
    close(kj::Maybe<kj::Exception>(nullptr));
  }
}

namespace {
thread_local DeadlineQueue* innermostQueue = nullptr;
}  // namespace

DeadlineQueue::DeadlineQueue(kj::Timer& timer) : timer(timer), outer(innermostQueue) {
  innermostQueue = this;
}

DeadlineQueue::DeadlineQueue(kj::UnixEventPort& port) : DeadlineQueue(port.getTimer()) {
  // The timerfd is set in CLOCK_MONOTONIC time, which is what KJ's port timer counts from its
  // origin (systemPreciseMonotonicClock). Checked, not assumed: a timer that reads otherwise (it
  // lags the clock by at most the time since the loop last woke) keeps the kj timer entry.
  struct timespec ts;
  KJ_SYSCALL(clock_gettime(CLOCK_MONOTONIC, &ts));
  kj::Duration lag = kj::origin<kj::TimePoint>() + ts.tv_sec * kj::SECONDS +
                     ts.tv_nsec * kj::NANOSECONDS - timer.now();
  if (lag < 0 * kj::SECONDS || lag > 3600 * kj::SECONDS) return;
  int fd;
  KJ_SYSCALL(fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  timerFd = kj::AutoCloseFd(fd);
  timerFdObserver = kj::heap<kj::UnixEventPort::FdObserver>(
      port, fd, kj::UnixEventPort::FdObserver::OBSERVE_READ);
}

DeadlineQueue::~DeadlineQueue() noexcept(false) {
  for (DeadlineQueue** q = &innermostQueue; *q != nullptr; q = &(*q)->outer) {
    if (*q == this) {
      *q = outer;
      break;
    }
  }
  for (CancelScope* scope : heap) scope->deadlineQueue = nullptr;
}

DeadlineQueue* DeadlineQueue::forTimer(kj::Timer& timer) {
  for (DeadlineQueue* q = innermostQueue; q != nullptr; q = q->outer) {
    if (&q->timer == &timer) return q;
  }
  return nullptr;
}

bool DeadlineQueue::before(size_t a, size_t b) const {
  const CancelScope& x = *heap[a];
  const CancelScope& y = *heap[b];
  kj::TimePoint xWhen = KJ_ASSERT_NONNULL(x.deadlineAt);
  kj::TimePoint yWhen = KJ_ASSERT_NONNULL(y.deadlineAt);
  return xWhen < yWhen || (xWhen == yWhen && x.deadlineOrder < y.deadlineOrder);
}

void DeadlineQueue::place(size_t slot, CancelScope* scope) {
  heap[slot] = scope;
  scope->deadlineSlot = slot;
}

void DeadlineQueue::siftUp(size_t slot) {
  while (slot > 0) {
    size_t up = (slot - 1) / 2;
    if (!before(slot, up)) break;
    CancelScope* s = heap[slot];
    place(slot, heap[up]);
    place(up, s);
    slot = up;
  }
}

void DeadlineQueue::siftDown(size_t slot) {
  for (;;) {
    size_t first = slot;
    for (size_t child = 2 * slot + 1; child <= 2 * slot + 2 && child < heap.size(); ++child) {
      if (before(child, first)) first = child;
    }
    if (first == slot) break;
    CancelScope* s = heap[slot];
    place(slot, heap[first]);
    place(first, s);
    slot = first;
  }
}

void DeadlineQueue::add(CancelScope& scope) {
  kj::TimePoint when = KJ_ASSERT_NONNULL(scope.deadlineAt);
  scope.deadlineQueue = this;
  scope.deadlineOrder = nextOrder++;
  heap.add(&scope);
  scope.deadlineSlot = heap.size() - 1;
  siftUp(scope.deadlineSlot);
  if (expiring) return;  // expire() arms for whatever is earliest once it has finished
  KJ_IF_MAYBE (at, armedAt) {
    if (*at <= when) return;  // the armed entry fires first; expire() re-arms from there
  }
  // A kj entry replaces (disarms) the later one; the timerfd is set again, its watch kept.
  KJ_IF_MAYBE (promise, armFor(when)) armed = kj::mv(*promise);
}

void DeadlineQueue::remove(CancelScope& scope) {
  // The timer stays armed: it fires at most once for nothing, which costs less than re-arming
  // it for every scope that closes before its deadline (the common case).
  size_t slot = scope.deadlineSlot;
  scope.deadlineQueue = nullptr;
  CancelScope* last = heap.back();
  heap.removeLast();
  if (last == &scope) return;
  place(slot, last);
  siftUp(slot);
  siftDown(last->deadlineSlot);
}

kj::Maybe<kj::Promise<void>> DeadlineQueue::armFor(kj::TimePoint when) {
  armedAt = when;
  if (timerFd == nullptr) {
    return timer.atTime(when).then([this]() { return expire(); }).eagerlyEvaluate(nullptr);
  }
  // 0 would disarm it: a deadline at or before the clock's origin is simply due (1 ns is past).
  int64_t ns = kj::max((when - kj::origin<kj::TimePoint>()) / kj::NANOSECONDS, 1);
  struct itimerspec spec = {};
  spec.it_value.tv_sec = ns / 1000000000;
  spec.it_value.tv_nsec = ns % 1000000000;
  KJ_SYSCALL(timerfd_settime(timerFd, TFD_TIMER_ABSTIME, &spec, nullptr));
  if (watching) return nullptr;
  return watchTimerFd();
}

kj::Promise<void> DeadlineQueue::watchTimerFd() {
  watching = true;
  return KJ_ASSERT_NONNULL(timerFdObserver)
      ->whenBecomesReadable()
      .then([this]() -> kj::Promise<void> {
        watching = false;
        uint64_t expirations;
        ssize_t n;
        // Read, or the edge-triggered observer would not see it fire again.
        KJ_NONBLOCKING_SYSCALL(n = ::read(timerFd, &expirations, sizeof(expirations)));
        if (n < 0) return watchTimerFd();  // set again (earlier) since it fired: not due yet
        return expire();
      })
      .eagerlyEvaluate(nullptr);
}

kj::Promise<void> DeadlineQueue::expire() {
  armedAt = nullptr;
  kj::TimePoint now = timer.now();
  expiring = true;
  KJ_DEFER(expiring = false);
  while (heap.size() > 0 && KJ_ASSERT_NONNULL(heap[0]->deadlineAt) <= now) {
    CancelScope& due = *heap[0];
    remove(due);
    due.expireDeadline();  // may close other scopes (dropped frames), which leave the heap
  }
  if (heap.size() == 0) return kj::READY_NOW;
  // Chained to the promise that is firing now (which must not be replaced from inside itself).
  KJ_IF_MAYBE (promise, armFor(KJ_ASSERT_NONNULL(heap[0]->deadlineAt))) return kj::mv(*promise);
  return kj::READY_NOW;
}

}  // namespace harrow
