// Typed calls, streams and contexts: the layer capnpc-harrow's generated code is written against.
//
// Server side (one object per incoming task, handed to the user's handler by value):
//   ServerCall<Params, Results>                                       tractor: an async function
//   ServerStream<Params, Item>                                        tractor: @stream / asyncgen
//   ServerContext<Params, Results, Started, CallerSends, CalleeSends> tractor: @context
// Caller side (free functions the generated portal stubs call, and what their blocks get):
//   callMethod    -> Received<Results>                       tractor: Portal.run
//   streamMethod  -> a block over a ReceiveStream<Item>      tractor: Portal.open_stream_from
//   contextMethod -> a block over CallerContext<...>, then   tractor: Portal.open_context
//                    the result
// Either side of a received stream:
//   stream.subscribe(options) -> Subscriber<Item>                   tractor: MsgStream.subscribe()
//
// `void` stands for a stream direction that carries no items.

#pragma once

#include <harrow/co/cancel_scope.h>
#include <harrow/typed/broadcast.h>
#include <harrow/typed/task.h>

#include <kj/debug.h>

#include <concepts>
#include <type_traits>

namespace harrow {

// Value shortcuts. capnpc-harrow specializes OneField<T> for each struct sent as a stream item or
// a started value whose one field is a primitive, enum, Text or Data:
//   template <> struct OneField<Tick> { using Value = int64_t; static void set(Tick::Builder, Value); };
// send(), yield() and started() then also take that value: `stream.send(2)`.
template <typename T>
struct OneField;

template <typename T>
concept HasOneField = requires { typename OneField<T>::Value; };

// What send(), yield() and started() take to build a T: a callable taking T::Builder,
// `[&](Tick::Builder b) { b.setBy(2); }`. A callable of another shape fails at the caller's line.
template <typename Fill, typename T>
concept FillsStruct = std::invocable<Fill&, typename T::Builder>;

// A received struct of type T that owns its message. Empty (false) for "nothing": the end of a
// stream, or the result of a context we cancelled ourselves.
template <typename T>
class Received {
public:
  Received() = default;
  explicit Received(kj::Own<IncomingMessage> message)
      : message(kj::mv(message)), reader(this->message->template get<T>()) {}

  explicit operator bool() const { return message.get() != nullptr; }
  // `item == nullptr` / `item != nullptr`, as with kj::Maybe and kj::Own: empty or not.
  bool operator==(decltype(nullptr)) const { return message.get() == nullptr; }
  typename T::Reader get() const {
    KJ_REQUIRE(message.get() != nullptr, "no value: the stream ended or the task was cancelled");
    return reader;
  }
  typename T::Reader operator*() const { return get(); }
  const typename T::Reader* operator->() const {
    get();
    return &reader;
  }

private:
  kj::Own<IncomingMessage> message;
  typename T::Reader reader;
};

// One local consumer of a broadcast stream (tractor: BroadcastReceiver), made by
// MsgStream::subscribe(). Each subscriber has its own bounded buffer and sees every item the
// stream receives from its subscription on, shared with the other subscribers (not copied). What
// happens when it falls behind is its own choice (SubscribeOptions::onLag, broadcast.h). Dropping
// it unsubscribes (and releases any hold it had on the producer's credit). One task at a time
// receives from a subscriber; subscribe() again to give another task its own.
template <typename T>
class Subscriber {
public:
  explicit Subscriber(kj::Own<_::SubscriberState> state) : state(kj::mv(state)) {}
  Subscriber(Subscriber&&) = default;
  Subscriber& operator=(Subscriber&&) = default;
  KJ_DISALLOW_COPY(Subscriber);

  // The next item; empty once the stream has ended. Raises harrow.Lagged (OnLag::RAISE) after
  // this subscriber missed items, and the stream's error once the items before it are taken.
  Co<Received<T>> receive() {
    kj::Maybe<kj::Own<IncomingMessage>> item = co_await state->receive();
    KJ_IF_MAYBE(message, item) {
      co_return Received<T>(kj::mv(*message));
    }
    co_return Received<T>();
  }

  // Another subscriber of the same stream, seeing items from now on (tractor:
  // BroadcastReceiver.subscribe()).
  Subscriber subscribe(SubscribeOptions options = {}) {
    return Subscriber(state->subscribe(options));
  }

  // Items held unread (never more than the capacity), and items dropped because this subscriber
  // fell behind (RAISE or SKIP).
  size_t buffered() const { return state->buffered(); }
  uint64_t missed() const { return state->missed(); }

private:
  kj::Own<_::SubscriberState> state;
};

// Both directions of a task's item stream (tractor: MsgStream). `Send` or `Recv` may be void.
template <typename Send, typename Recv>
class MsgStream {
public:
  explicit MsgStream(RawStream& raw) : raw(raw) {}
  ~MsgStream() noexcept(false) {
    KJ_IF_MAYBE(b, broadcaster) (*b)->detach();
  }
  KJ_DISALLOW_COPY(MsgStream);

  // Sends one item, built by `fill(Send::Builder)`; waits while the peer grants no credit.
  template <typename Fill>
  Co<void> send(Fill&& fill) requires (!std::is_void_v<Send> && FillsStruct<Fill, Send>) {
    KJ_REQUIRE(!stopped, "send() after stop()");
    auto item = raw.newItem();
    fill(item->template init<Send>());
    return raw.send(kj::mv(item));
  }
  // The same for an item of one field, given its value: `stream.send(2)`.
  template <typename T = Send>
  Co<void> send(typename OneField<T>::Value value) requires HasOneField<T> {
    return send([&](typename T::Builder item) { OneField<T>::set(item, value); });
  }

  // The next item; empty once the peer has stopped sending. Not once the stream has subscribers:
  // they take every item.
  Co<Received<Recv>> receive() requires (!std::is_void_v<Recv>) {
    KJ_REQUIRE(broadcaster == nullptr,
               "receive() on a stream with subscribers: receive through a Subscriber");
    struct Receiving {
      uint32_t& count;
      explicit Receiving(uint32_t& count) : count(count) { ++count; }
      ~Receiving() noexcept { --count; }
    } guard(receiving);
    auto item = co_await raw.receive();
    KJ_IF_MAYBE(message, item) {
      co_return Received<Recv>(kj::mv(*message));
    }
    ended = true;
    co_return Received<Recv>();
  }

  // Broadcasts the received items to local subscribers, this one and any made later (tractor:
  // MsgStream.subscribe()). Each sees the items received from its subscription on, in order, then
  // the end or the stream's error. The producer's credit follows the slowest BACKPRESSURE
  // subscriber; RAISE and SKIP subscribers lose their oldest items instead of holding it up.
  // A subscriber kept after the stream's block has ended keeps what it holds, then raises.
  Subscriber<Recv> subscribe(SubscribeOptions options = {}) requires (!std::is_void_v<Recv>) {
    if (broadcaster == nullptr) {
      KJ_REQUIRE(receiving == 0, "subscribe() while a task is in receive() on this stream");
      // (After the end, the raw stream answers every receive with the end again.)
      broadcaster = kj::refcounted<_::Broadcaster>(raw, capnp::Schema::from<Recv>());
    }
    return Subscriber<Recv>(KJ_ASSERT_NONNULL(broadcaster)->subscribe(options));
  }

  // No more items from this side (the peer's receive() then ends).
  Co<void> stop() {
    if (stopped) return Co<void>(kj::READY_NOW);
    stopped = true;
    return raw.stop();
  }

  // Whether the peer's stop has been received (by receive() or by the subscribers).
  bool peerStopped() const {
    KJ_IF_MAYBE(b, broadcaster) {
      if ((*b)->ended()) return true;
    }
    return ended;
  }

private:
  RawStream& raw;
  bool stopped = false;
  bool ended = false;
  uint32_t receiving = 0;
  kj::Maybe<kj::Own<_::Broadcaster>> broadcaster;
};

template <typename Item>
using ReceiveStream = MsgStream<void, Item>;

namespace _ {

// Context.open_stream() on either side: runs `body(stream)`, then tells the peer this side sends
// no more.
template <typename Send, typename Recv, typename Body>
Co<void> openMsgStream(RawStream& raw, Body body) {  // the task's stream: the caller awaits this
  MsgStream<Send, Recv> stream(raw);
  co_await body(stream);
  raw.stopReading();
  co_await stream.stop();
}

}  // namespace _

// ---------------------------------------------------------------------------------------------
// Server side

namespace _ {

// Decodes a task's params as Params before anything else touches the task (see
// IncomingMessage::get): a malformed start fails in the server object's constructor, before the
// handler runs, and the engine answers it as a protocol violation.
template <typename Params>
IncomingTask& decodeParams(IncomingTask& task) {
  task.params().template get<Params>();
  return task;
}

}  // namespace _

template <typename Params, typename Results>
class ServerCall {
public:
  // Decodes the params first (see IncomingMessage::get): a malformed start fails here, before the
  // handler runs.
  explicit ServerCall(IncomingTask& task)
      : task(_::decodeParams<Params>(task)),
        resultsBuilder(task.results().template init<Results>()) {}

  typename Params::Reader params() { return task.params().template get<Params>(); }
  typename Results::Builder results() { return resultsBuilder; }

  // The calling actor's channel (valid while the handler runs), and a promise that resolves once
  // that channel has ended. See IncomingTask::caller().
  RawPortal& caller() { return task.caller(); }
  kj::Promise<void> callerGone() { return task.callerGone(); }

private:
  IncomingTask& task;
  typename Results::Builder resultsBuilder;
};

template <typename Params, typename Item>
class ServerStream {
public:
  explicit ServerStream(IncomingTask& task) : task(_::decodeParams<Params>(task)) {}

  typename Params::Reader params() { return task.params().template get<Params>(); }

  // Sends one item (tractor: `yield` in a stream function); waits for the caller's credit, so a
  // consumer that stops reading stalls this producer, and nothing else.
  template <FillsStruct<Item> Fill>
  Co<void> yield(Fill&& fill) {
    auto item = task.newItem();
    fill(item->template init<Item>());
    return task.send(kj::mv(item));
  }
  // The same for an item of one field, given its value: `co_await stream.yield(i)`.
  template <typename T = Item>
  Co<void> yield(typename OneField<T>::Value value) requires HasOneField<T> {
    return yield([&](typename T::Builder item) { OneField<T>::set(item, value); });
  }

  // The calling actor's channel (valid while the handler runs), and a promise that resolves once
  // that channel has ended. See IncomingTask::caller().
  RawPortal& caller() { return task.caller(); }
  kj::Promise<void> callerGone() { return task.callerGone(); }

private:
  IncomingTask& task;
};

template <typename Params, typename Results, typename Started, typename CallerSends,
          typename CalleeSends>
class ServerContext {
public:
  explicit ServerContext(IncomingTask& task)
      : task(_::decodeParams<Params>(task)),
        resultsBuilder(task.results().template init<Results>()) {}

  typename Params::Reader params() { return task.params().template get<Params>(); }
  typename Results::Builder results() { return resultsBuilder; }

  // tractor: Context.started(value). Exactly once, before the stream is opened.
  template <FillsStruct<Started> Fill>
  Co<void> started(Fill&& fill) {
    auto value = task.newStarted();
    fill(value->template init<Started>());
    return task.sendStarted(kj::mv(value));
  }
  // The same for a started struct of one field, given its value: `co_await ctx.started(1)`.
  template <typename T = Started>
  Co<void> started(typename OneField<T>::Value value) requires HasOneField<T> {
    return started([&](typename T::Builder b) { OneField<T>::set(b, value); });
  }

  // tractor: Context.open_stream(). Runs `body(MsgStream<CalleeSends, CallerSends>&)`, then
  // tells the caller this side sends no more.
  template <typename Body>
  Co<void> openStream(Body body) {
    return _::openMsgStream<CalleeSends, CallerSends>(task, kj::mv(body));
  }

  // Ends the context from this side: the caller sees ContextCancelled.
  void cancel() { task.cancel(); }

  // The calling actor's channel (valid while the handler runs), and a promise that resolves once
  // that channel has ended. See IncomingTask::caller().
  RawPortal& caller() { return task.caller(); }
  kj::Promise<void> callerGone() { return task.callerGone(); }

private:
  IncomingTask& task;
  typename Results::Builder resultsBuilder;
};

// ---------------------------------------------------------------------------------------------
// Caller side

// The caller's handle on an open context (tractor: Context, portal side); its callee holds the
// ServerContext.
template <typename Started, typename CallerSends, typename CalleeSends>
class CallerContext {
public:
  explicit CallerContext(OutgoingTask& task) : task(task) {}
  KJ_DISALLOW_COPY(CallerContext);

  // tractor: Context.open_stream(). Runs `body(MsgStream<CallerSends, CalleeSends>&)`, then tells
  // the callee this side sends no more.
  template <typename Body>
  Co<void> openStream(Body body) {
    return _::openMsgStream<CallerSends, CalleeSends>(task, kj::mv(body));
  }

  // tractor: Context.cancel(). The callee's task is cancelled; the ContextCancelled it answers
  // with is absorbed as the acknowledgement, and the context's result is then empty.
  void cancel() {
    cancelled = true;
    task.cancel();
  }
  bool cancelCalled() const { return cancelled; }

private:
  OutgoingTask& task;
  bool cancelled = false;
};

namespace _ {

// If the caller's block fails or is cancelled, the callee's task is told to stop; the caller does
// not wait for the acknowledgement (the engine discards it when it arrives).
struct CancelRemoteUnlessFinished {
  OutgoingTask& task;
  bool finished = false;
  ~CancelRemoteUnlessFinished() noexcept(false) {
    if (!finished) task.cancel();
  }
};

}  // namespace _

// What a stream's block must be: called with the stream, it returns a promise (a coroutine
// returning harrow::Co<void>): `[&](FooActor::Portal::CountStream& items) -> harrow::Co<void>`.
// Generated portals require it, so a wrong block fails at the caller's line, naming this.
template <typename Body, typename Stream>
concept StreamBody = std::invocable<Body&, Stream&> &&
                     std::is_convertible_v<std::invoke_result_t<Body&, Stream&>, kj::Promise<void>>;

// What a context's block must be: called with the context and the started value, it returns a
// promise: `[&](FooActor::Portal::SessionContext& ctx, Ready::Reader started) -> harrow::Co<void>`.
template <typename Body, typename Context, typename Started>
concept ContextBody =
    std::invocable<Body&, Context&, typename Started::Reader> &&
    std::is_convertible_v<std::invoke_result_t<Body&, Context&, typename Started::Reader>,
                          kj::Promise<void>>;

template <typename Params, typename Results, typename Fill>
Co<Received<Results>> callMethod(RawPortal& portal, uint64_t interfaceId, uint16_t methodId,
                                 Fill&& fill) {
  auto start = portal.newStart(interfaceId, methodId);
  start->setKind(MethodKind::CALL);
  fill(start->template init<Params>());
  co_return Received<Results>(co_await portal.call(kj::mv(start)));
}

template <typename Params, typename Item, typename Fill, typename Body>
Co<void> streamMethod(RawPortal& portal, uint64_t interfaceId, uint16_t methodId, Fill&& fill,
                      Body body) {
  auto start = portal.newStart(interfaceId, methodId);
  start->setKind(MethodKind::STREAM);
  fill(start->template init<Params>());
  kj::Own<OutgoingTask> task = co_await portal.open(kj::mv(start), MethodKind::STREAM);
  ReceiveStream<Item> stream(*task);
  {
    _::CancelRemoteUnlessFinished guard{*task};
    co_await body(stream);
    // Leaving the block before the callee's stop cancels the remote task (tractor does the same
    // when open_stream_from's block exits early); either way we wait for its final word.
    guard.finished = stream.peerStopped();
  }
  co_await task->result();
}

template <typename Params, typename Results, typename Started, typename CallerSends,
          typename CalleeSends, typename Fill, typename Body>
Co<Received<Results>> contextMethod(RawPortal& portal, uint64_t interfaceId, uint16_t methodId,
                                    Fill&& fill, Body body) {
  auto start = portal.newStart(interfaceId, methodId);
  start->setKind(MethodKind::CONTEXT);
  fill(start->template init<Params>());
  kj::Own<OutgoingTask> task = co_await portal.open(kj::mv(start), MethodKind::CONTEXT);
  _::CancelRemoteUnlessFinished guard{*task};
  Received<Started> started(co_await task->started());
  CallerContext<Started, CallerSends, CalleeSends> context(*task);
  co_await body(context, started.get());
  guard.finished = true;
  KJ_IF_MAYBE(result, co_await task->result()) {
    co_return Received<Results>(kj::mv(*result));
  }
  co_return Received<Results>();
}

}  // namespace harrow
