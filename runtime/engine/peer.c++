#include <harrow/engine/peer.h>

#include "runtime/engine/internal/incoming_task.h"
#include "runtime/engine/internal/outgoing_task.h"
#include "runtime/engine/internal/wire_message.h"

#include <kj/debug.h>

#include <unistd.h>

namespace harrow {

namespace {
uint64_t nextPeerSerial = 1;

kj::ForkedPromise<void> newClosedPromise(kj::Own<kj::PromiseFulfiller<void>>& fulfiller) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  fulfiller = kj::mv(paf.fulfiller);
  return paf.promise.fork();
}
}  // namespace

Peer::Peer(kj::Own<Channel> channel, PeerHost& host, ActorIdentity remote, bool initiator,
           PeerOptions options)
    : chan(kj::mv(channel)), hostRef(host), remoteId(kj::mv(remote)), options(options),
      nextCallId(initiator ? 1 : 2), serialNumber(nextPeerSerial++),
      closedPromise(newClosedPromise(closedFulfiller)) {}

Peer::~Peer() noexcept(false) {
  // Tasks hold references to us; they must all be gone (serve() ends them).
  if (routes.size() > 0) {
    lose(transportClosed("the channel to this actor was destroyed"));
  }
  markClosed();
}

void Peer::markClosed() {
  if (closedFulfiller->isWaiting()) closedFulfiller->fulfill();
}

kj::Promise<void> Peer::whenDrained() {
  if (routes.size() == 0) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  drainWaiters.add(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

bool Peer::isOurs(uint64_t callId) const { return (callId & 1) == (nextCallId & 1); }

bool Peer::wasUsed(uint64_t callId) const {
  return isOurs(callId) ? callId < nextCallId : callId <= highestPeerCallId;
}

kj::Maybe<const kj::Exception&> Peer::closedBecause() const { return closeReason; }

void Peer::addRoute(uint64_t callId, Route& route) { routes.insert(callId, &route); }

void Peer::removeRoute(uint64_t callId) {
  routes.erase(callId);
  if (routes.size() == 0 && drainWaiters.size() > 0) {
    auto waiters = kj::mv(drainWaiters);
    for (auto& waiter : waiters) waiter->fulfill();
  }
}

kj::Own<capnp::MallocMessageBuilder> Peer::newMessage(uint64_t callId,
                                                      wire::Message::Builder& root) {
  auto builder = kj::heap<capnp::MallocMessageBuilder>(256);
  root = builder->initRoot<wire::Message>();
  root.setCallId(callId);
  return builder;
}

kj::Own<capnp::MallocMessageBuilder> Peer::newControlMessage() {
  wire::Message::Builder root = nullptr;
  return newMessage(0, root);
}

void Peer::send(kj::Own<capnp::MallocMessageBuilder> message) {
  KJ_IF_MAYBE(e, closeReason) kj::throwFatalException(kj::cp(*e));
  chan->send(kj::mv(message));
}

void Peer::sendViolation(uint64_t callId, kj::StringPtr what) {
  KJ_LOG(WARNING, "protocol violation by peer", remoteId.toString(), callId, what);
  if (closed) return;
  wire::Message::Builder root = nullptr;
  auto builder = newMessage(callId, root);
  fillWireError(root.initError(), protocolViolation(what), hostRef.identity(),
                wire::ErrorKind::PROTOCOL_VIOLATION);
  chan->send(kj::mv(builder));
}

Co<kj::Own<capnp::MessageReader>> Peer::receiveOne() {
  KJ_IF_MAYBE(reader, co_await chan->receive()) {
    co_return kj::mv(*reader);
  }
  kj::throwFatalException(transportClosed("the peer closed the channel"));
}

// ---------------------------------------------------------------------------------------------
// Outgoing

kj::Own<OutgoingMessage> Peer::newStart(uint64_t interfaceId, uint16_t methodId) {
  uint64_t callId = nextCallId;
  nextCallId += 2;
  wire::Message::Builder root = nullptr;
  auto builder = newMessage(callId, root);
  auto start = root.initStart();
  start.setInterfaceId(interfaceId);
  start.setMethodId(methodId);
  start.setWindow(options.window);
  return kj::heap<WireOutgoing>(kj::mv(builder), callId, start.initParams());
}

Co<kj::Own<IncomingMessage>> Peer::call(kj::Own<OutgoingMessage> start) {
  KJ_IF_MAYBE(e, closeReason) kj::throwFatalException(kj::cp(*e));
  WireOutgoing& wire = asWire(*start);
  PendingCall pending(*this, wire.getCallId());
  send(wire.release());
  co_return co_await pending.result();
}

Co<kj::Own<OutgoingTask>> Peer::open(kj::Own<OutgoingMessage> start, MethodKind kind) {
  KJ_IF_MAYBE(e, closeReason) kj::throwFatalException(kj::cp(*e));
  WireOutgoing& wire = asWire(*start);
  auto task = kj::heap<OutgoingTaskImpl>(*this, wire.getCallId(), kind);
  send(wire.release());
  co_await task->acknowledged();
  co_return kj::mv(task);
}

// ---------------------------------------------------------------------------------------------
// Incoming

Co<void> Peer::serve() {
  kj::Maybe<kj::Exception> failure;
  try {
    for (;;) {
      auto next = co_await chan->receive();
      KJ_IF_MAYBE(reader, next) {
        route(kj::mv(*reader));
      } else {
        break;  // clean EOF between frames
      }
    }
  } catch (...) {
    failure = currentException();
  }
  KJ_IF_MAYBE(e, failure) {
    if (isCancelled(*e)) {
      // We stopped reading, the channel itself is fine: the owner may still send on it (e.g.
      // cancel-actor to a child), but no task of ours can get an answer any more.
      failRoutes(*e);
      markClosed();
    } else {
      lose(*e);
    }
    kj::throwFatalException(kj::mv(*e));
  }
  lose(transportClosed(kj::str("actor ", remoteId.toString(), " closed the channel")));
}

void Peer::lose(const kj::Exception& why) {
  if (closeReason == nullptr) closeReason = kj::cp(why);
  closed = true;
  failRoutes(why);
  markClosed();
}

void Peer::failRoutes(const kj::Exception& why) {
  // Tasks remove themselves from the map as they end: notify a snapshot.
  kj::Vector<Route*> snapshot;
  for (auto& entry : routes) snapshot.add(entry.value);
  for (Route* r : snapshot) r->channelLost(why);
}

void Peer::route(kj::Own<capnp::MessageReader> reader) {
  wire::Message::Reader message = reader->getRoot<wire::Message>();
  uint64_t callId = message.getCallId();
  try {
    if (callId == 0) {
      if (message.isHello()) {
        sendViolation(0, "a second hello");
      } else {
        hostRef.controlMessage(*this, message);
      }
      return;
    }
    if (message.isStart()) {
      if (isOurs(callId) || routes.find(callId) != nullptr || callId <= highestPeerCallId) {
        sendViolation(callId, kj::str("start with call id ", callId, ", which is not free"));
        return;
      }
      highestPeerCallId = callId;
      startIncoming(callId, kj::mv(reader));
      return;
    }
    KJ_IF_MAYBE(r, routes.find(callId)) {
      (*r)->receive(message, reader);
      return;
    }
    // A message crossing our finish or cancel is normal; an id never used is not. An error is
    // never answered with an error (two confused peers would ping-pong forever).
    if (!wasUsed(callId) && !message.isError()) {
      sendViolation(callId, kj::str("unknown call id ", callId));
    }
  } catch (...) {
    // A bug or an unreadable field must not end the channel's other tasks.
    auto e = currentException();
    sendViolation(callId, e.getDescription());
  }
}

void Peer::startIncoming(uint64_t callId, kj::Own<capnp::MessageReader> reader) {
  auto start = reader->getRoot<wire::Message>().getStart();
  uint64_t interfaceId = start.getInterfaceId();
  uint16_t methodId = start.getMethodId();

  auto sendError = [&](kj::StringPtr what) {
    wire::Message::Builder root = nullptr;
    auto builder = newMessage(callId, root);
    fillWireError(root.initError(),
                  kj::Exception(kj::Exception::Type::UNIMPLEMENTED, __FILE__, __LINE__,
                                kj::str("harrow.UnknownMethod: ", what)),
                  hostRef.identity(), wire::ErrorKind::UNKNOWN_METHOD);
    send(kj::mv(builder));
  };

  TaskNursery* tasks = nullptr;
  KJ_IF_MAYBE(t, hostRef.serviceNursery()) {
    tasks = t;
  } else {
    sendError(kj::str("actor ", hostRef.identity().toString(), " is not serving requests now"));
    return;
  }
  ActorServer* server = nullptr;
  KJ_IF_MAYBE(s, hostRef.findServer(interfaceId)) {
    server = s;
  } else {
    sendError(kj::str("actor ", hostRef.identity().toString(), " serves no interface ",
                      kj::hex(interfaceId)));
    return;
  }
  MethodKind kind;
  KJ_IF_MAYBE(k, server->methodKind(methodId)) {
    kind = *k;
  } else {
    sendError(kj::str(server->interfaceName(), " has no method ", methodId));
    return;
  }
  if (kind != MethodKind::CALL) {
    wire::Message::Builder root = nullptr;
    auto builder = newMessage(callId, root);
    auto ack = root.initStartAck();
    ack.setKind(kind);
    ack.setWindow(options.window);
    send(kj::mv(builder));
  }
  // The task object is created inside the nursery's task so that its cancel scope nests in the
  // actor's service scope; the coroutine runs eagerly, so its route exists before we return.
  tasks->start([this, callId, kind, server, methodId,
               reader = kj::mv(reader)]() mutable -> Co<void> {
    IncomingTaskImpl task(*this, callId, kind, kj::mv(reader),
                          kj::str(server->interfaceName(), ".", server->methodName(methodId),
                                  "#", callId));
    co_await task.run(*server, methodId);
  });
}

// ---------------------------------------------------------------------------------------------

Co<kj::Own<Peer>> handshake(kj::Own<Channel> channel, PeerHost& host, bool initiator,
                            PeerOptions options) {
  {
    capnp::MallocMessageBuilder builder(128);
    auto root = builder.initRoot<wire::Message>();
    auto hello = root.initHello();
    host.identity().toWire(hello.initId());
    hello.setPid(getpid());
    hello.setProtocolVersion(wire::PROTOCOL_VERSION);
    channel->send(builder);
  }
  auto received = co_await channel->receive();
  kj::Maybe<kj::Exception> refusal;
  KJ_IF_MAYBE(reader, received) {
    auto message = (*reader)->getRoot<wire::Message>();
    if (!message.isHello()) {
      refusal = protocolViolation("the peer's first message is not hello");
    } else if (message.getHello().getProtocolVersion() != wire::PROTOCOL_VERSION) {
      refusal = protocolViolation(kj::str(
          "the peer speaks protocol version ", message.getHello().getProtocolVersion(),
          ", this actor ", wire::PROTOCOL_VERSION));
    } else {
      auto remote = ActorIdentity::fromWire(message.getHello().getId());
      co_return kj::heap<Peer>(kj::mv(channel), host, kj::mv(remote), initiator, options);
    }
  } else {
    kj::throwFatalException(transportClosed("the peer closed the channel during the handshake"));
  }
  // Tell the peer why before closing: it may be an older or newer harrow.
  auto& why = KJ_ASSERT_NONNULL(refusal);
  {
    capnp::MallocMessageBuilder builder(256);
    auto root = builder.initRoot<wire::Message>();
    fillWireError(root.initError(), why, host.identity(), wire::ErrorKind::PROTOCOL_VIOLATION);
    channel->send(builder);
  }
  try {
    co_await channel->shutdownWrite();
  } catch (...) {
    // The peer may be gone already; the refusal below is what matters.
  }
  kj::throwFatalException(kj::mv(why));
}

}  // namespace harrow
