// Broadcast of a received item stream to many local subscribers (tractor: MsgStream.subscribe(),
// BroadcastReceiver, Lagged). The typed face is in typed.h: `stream.subscribe(options)` returns a
// `Subscriber<Item>`; this header holds the options and the untyped machinery behind it.
//
// How it works. A stream with subscribers has no pump task of its own: a subscriber whose buffer
// is empty, and that is waiting, makes the broadcaster take the stream's next item (the engine
// returns credit to the producer as items are taken, docs/PROTOCOL.md, "Flow control") and append
// one shared reference to it to every subscriber's buffer. The take happens only while every
// BACKPRESSURE subscriber has room, so the producer's credit follows the slowest of those; a RAISE
// or SKIP subscriber whose buffer is full loses its oldest item instead, so it never slows anyone
// and never holds more than its capacity. The take runs outside every cancel scope (it belongs to
// the stream, not to the task that asked for it): cancelling a waiting subscriber never loses an
// item another subscriber would have received.

#pragma once

#include <harrow/co/co.h>
#include <harrow/typed/task.h>

#include <kj/list.h>
#include <kj/refcount.h>

#include <deque>

namespace harrow {

// What a subscriber does when an item arrives and its buffer is full.
enum class OnLag {
  // Its oldest item is dropped; its next receive() raises harrow.Lagged saying how many it
  // missed (laggedBy(e)), and the one after hands out the oldest item it held when it raised,
  // then the rest in order (tokio's broadcast). Items dropped in between are reported by the next
  // Lagged, after that item: one Lagged per gap, so a slow subscriber is never starved.
  RAISE,
  // Its oldest item is dropped silently; missed() counts them.
  SKIP,
  // Nothing is dropped: the stream takes no more items until it has room, so the producer's
  // credit follows this subscriber (and the others wait for it).
  BACKPRESSURE,
};

struct SubscribeOptions {
  size_t capacity = 64;  // items this subscriber may hold unread (at least 1)
  OnLag onLag = OnLag::RAISE;
};

// The n of a harrow.Lagged error: how many items the subscriber missed. nullptr for any other
// exception.
kj::Maybe<uint64_t> laggedBy(const kj::Exception& exception);

namespace _ {  // private: Subscriber<T> (typed.h) and MsgStream use these

class Broadcaster;

// One received item, shared by every buffer it is in (never copied per subscriber).
struct SharedItem final : public kj::Refcounted {
  explicit SharedItem(kj::Own<IncomingMessage> message) : message(kj::mv(message)) {}
  kj::Own<IncomingMessage> message;
};

// One subscriber: its bounded buffer of shared items. Destroying it unsubscribes.
class SubscriberState {
public:
  SubscriberState(kj::Own<Broadcaster> hub, SubscribeOptions options);
  ~SubscriberState() noexcept(false);
  KJ_DISALLOW_COPY(SubscriberState);

  // The next item (a reference sharing the received message), or nullptr once the stream ended.
  // Raises harrow.Lagged (RAISE), or the stream's error after the buffered items.
  Co<kj::Maybe<kj::Own<IncomingMessage>>> receive();
  kj::Own<SubscriberState> subscribe(SubscribeOptions options);

  size_t buffered() const { return buffer.size(); }
  uint64_t missed() const { return missedTotal; }
  const SubscribeOptions& options() const { return options_; }

private:
  friend class Broadcaster;
  kj::Own<Broadcaster> hub;
  SubscribeOptions options_;
  std::deque<kj::Own<SharedItem>> buffer;
  uint64_t lag = 0;          // dropped and not yet reported (RAISE)
  bool headPromised = false;  // a Lagged was raised: the buffer's front is the next handed out
  uint64_t missedTotal = 0;  // dropped in all
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> waiter;
  kj::ListLink<SubscriberState> link;

  bool waiting();
  bool full() const { return buffer.size() >= options_.capacity; }
  void wake();
  void push(kj::Own<SharedItem> item);
};

// The stream's side: the subscribers, the take in flight, and how the stream ended. Owned
// (shared) by the MsgStream and by every subscriber; detached when the MsgStream goes away.
class Broadcaster final : public kj::Refcounted {
public:
  // `itemType`: every item is checked to decode as it once, when taken (IncomingMessage::get).
  Broadcaster(RawStream& raw, capnp::StructSchema itemType);
  ~Broadcaster() noexcept(false);
  KJ_DISALLOW_COPY(Broadcaster);

  kj::Own<SubscriberState> subscribe(SubscribeOptions options);
  // The stream is going away (its block ended): the take in flight is dropped; subscribers keep
  // what they hold, then see the end (if it had been received) or an error.
  void detach();
  bool ended() const { return ended_; }

private:
  friend class SubscriberState;
  RawStream* raw;
  capnp::StructSchema itemType;
  kj::List<SubscriberState, &SubscriberState::link> subscribers;
  kj::Maybe<kj::Promise<void>> take;
  bool taking = false;
  bool ended_ = false;
  kj::Maybe<kj::Exception> failure;

  // Takes the next item if a subscriber is waiting for one and every BACKPRESSURE subscriber has
  // room. Never runs a subscriber's code: the item arrives later, from the event loop.
  void maybeTake();
  void deliver(kj::Own<IncomingMessage> message);
  void finish(kj::Maybe<kj::Exception> why);
  void wakeAll();
};

}  // namespace _
}  // namespace harrow
