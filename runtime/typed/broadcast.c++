#include <harrow/typed/broadcast.h>

#include <harrow/co/errors.h>

#include <kj/debug.h>

#include <stdlib.h>

namespace harrow {

kj::Maybe<uint64_t> laggedBy(const kj::Exception& exception) {
  if (!is(exception, ErrorKind::LAGGED)) return nullptr;
  // "harrow.Lagged: <n> items missed ..." (see SubscriberState::receive).
  kj::StringPtr text = exception.getDescription();
  kj::StringPtr rest = text.slice(text.findFirst(':').orDefault(0) + 1);
  char* end = nullptr;
  unsigned long long n = strtoull(rest.cStr(), &end, 10);
  if (end == rest.cStr()) return nullptr;
  return uint64_t(n);
}

namespace _ {

// ---------------------------------------------------------------------------------------------
// SubscriberState

SubscriberState::SubscriberState(kj::Own<Broadcaster> hubRef, SubscribeOptions options)
    : hub(kj::mv(hubRef)), options_(options) {
  KJ_REQUIRE(options_.capacity >= 1, "a subscriber's capacity must be at least 1");
  hub->subscribers.add(*this);
}

SubscriberState::~SubscriberState() noexcept(false) {
  hub->subscribers.remove(*this);
  // This one may have been the full BACKPRESSURE subscriber the others were waiting for: they
  // look again (from their own coroutines: no new take starts inside a destructor).
  if (options_.onLag == OnLag::BACKPRESSURE && full()) hub->wakeAll();
}

bool SubscriberState::waiting() {
  KJ_IF_MAYBE(w, waiter) return (*w)->isWaiting();
  return false;
}

void SubscriberState::wake() {
  KJ_IF_MAYBE(w, waiter) {
    (*w)->fulfill();
    waiter = nullptr;
  }
}

void SubscriberState::push(kj::Own<SharedItem> item) {
  if (full()) {
    // Only a RAISE or SKIP subscriber can be full here: no take starts while a BACKPRESSURE one
    // is (Broadcaster::maybeTake), and a new subscriber starts empty.
    KJ_ASSERT(options_.onLag != OnLag::BACKPRESSURE);
    ++lag;
    ++missedTotal;
    if (!headPromised) {
      buffer.pop_front();
    } else if (buffer.size() > 1) {
      buffer.erase(buffer.begin() + 1);  // the oldest but the one promised
    } else {
      return;  // capacity 1, holding the promised item: the newcomer is the one missed
    }
  }
  buffer.push_back(kj::mv(item));
  wake();
}

Co<kj::Maybe<kj::Own<IncomingMessage>>> SubscriberState::receive() {
  KJ_REQUIRE(!waiting(),
             "two tasks receive from one subscriber at once: give each task its own "
             "(subscriber.subscribe())");
  for (;;) {
    // Once a gap is reported, the item after it is handed out before the next report: items
    // dropped while the Lagged travels to the handler (the loop turns meanwhile) are a gap after
    // that item, the next Lagged's. Raising again first would starve a slow subscriber.
    if (lag > 0 && options_.onLag == OnLag::RAISE && !headPromised) {
      uint64_t n = lag;
      lag = 0;
      headPromised = !buffer.empty();
      kj::throwFatalException(makeError(ErrorKind::LAGGED,
          kj::str(n, " items missed: this subscriber fell behind the stream by more than its "
                  "capacity of ", options_.capacity, " items; it continues with the oldest it "
                  "still holds")));
    }
    if (options_.onLag != OnLag::RAISE) lag = 0;
    if (!buffer.empty()) {
      headPromised = false;
      bool wasFull = full();
      kj::Own<SharedItem> item = kj::mv(buffer.front());
      buffer.pop_front();
      // A BACKPRESSURE subscriber that was full held up the stream: the others may go on.
      if (wasFull && options_.onLag == OnLag::BACKPRESSURE) hub->maybeTake();
      IncomingMessage& message = *item->message;
      co_return kj::attachRef(message, kj::mv(item));
    }
    KJ_IF_MAYBE(e, hub->failure) kj::throwFatalException(kj::cp(*e));
    if (hub->ended_) co_return nullptr;
    if (hub->raw == nullptr) {
      kj::throwFatalException(KJ_EXCEPTION(FAILED,
          "the stream this subscriber listens to is closed: its block has ended"));
    }
    auto paf = kj::newPromiseAndFulfiller<void>();
    waiter = kj::mv(paf.fulfiller);
    hub->maybeTake();
    co_await kj::mv(paf.promise);
  }
}

kj::Own<SubscriberState> SubscriberState::subscribe(SubscribeOptions options) {
  return hub->subscribe(options);
}

// ---------------------------------------------------------------------------------------------
// Broadcaster

Broadcaster::Broadcaster(RawStream& raw, capnp::StructSchema itemType)
    : raw(&raw), itemType(itemType) {}

Broadcaster::~Broadcaster() noexcept(false) {
  // Every subscriber holds a reference, so none is left.
  KJ_ASSERT(subscribers.empty()) { break; }
}

kj::Own<SubscriberState> Broadcaster::subscribe(SubscribeOptions options) {
  return kj::heap<SubscriberState>(kj::addRef(*this), options);
}

void Broadcaster::detach() {
  raw = nullptr;
  take = nullptr;  // drops a take in flight: the raw stream returns no item it did not take
  taking = false;
  wakeAll();       // waiting subscribers see the closed stream
}

void Broadcaster::maybeTake() {
  if (taking || raw == nullptr || ended_ || failure != nullptr) return;
  bool wanted = false;
  for (auto& s : subscribers) {
    if (s.options_.onLag == OnLag::BACKPRESSURE && s.full()) return;
    wanted = wanted || s.waiting();
  }
  if (!wanted) return;
  taking = true;
  // Outside every cancel scope: the take belongs to the stream, not to the subscriber whose wait
  // started it. Dropping it (detach) is the only way it stops early.
  _::AmbientScopeGuard noScope(nullptr);
  take = raw->receive()
             .then(
                 [this](kj::Maybe<kj::Own<IncomingMessage>>&& item) {
                   taking = false;
                   KJ_IF_MAYBE(message, item) {
                     deliver(kj::mv(*message));
                   } else {
                     finish(nullptr);
                   }
                 },
                 [this](kj::Exception&& e) {
                   taking = false;
                   finish(kj::mv(e));
                 })
             .eagerlyEvaluate(nullptr);
}

void Broadcaster::deliver(kj::Own<IncomingMessage> message) {
  // Decoded once for all subscribers; a payload that is not an Item fails every one of them (and
  // the engine reports the violation to the peer, as for a single consumer).
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { message->check(itemType); })) {
    finish(kj::mv(*e));
    return;
  }
  auto item = kj::refcounted<SharedItem>(kj::mv(message));
  for (auto& s : subscribers) s.push(kj::addRef(*item));
}

void Broadcaster::finish(kj::Maybe<kj::Exception> why) {
  ended_ = why == nullptr;  // a clean end (the peer's stop), not a failure
  failure = kj::mv(why);
  wakeAll();
}

void Broadcaster::wakeAll() {
  for (auto& s : subscribers) s.wake();
}

}  // namespace _
}  // namespace harrow
