#include <harrow/engine/peer.h>

#include <harrow/co/errors.h>

#include "runtime/engine/internal/decode.h"
#include "runtime/engine/internal/incoming_task.h"
#include "runtime/engine/internal/outgoing_task.h"
#include "runtime/engine/internal/peer_internal.h"
#include "runtime/engine/internal/shared_frames.h"
#include "runtime/engine/internal/wire_message.h"

#include <harrow/co/log_level.h>

#include <kj/debug.h>
#include <kj/function.h>

#include <algorithm>
#include <stdlib.h>

namespace harrow {

namespace {

// What every MessageTooLarge error suggests.
constexpr kj::StringPtr LARGE_MESSAGE_HINT =
    "; raise the limit on both sides (--harrow-max-message=BYTES, HARROW_MAX_MESSAGE_BYTES or "
    "Actor::setMaxMessageBytes) or send the data in chunks through a stream"_kj;

// serve() routes at most this many frames already in the channel's buffer in a row.
constexpr uint32_t ROUTE_BATCH = 32;

kj::StringPtr kindName(MethodKind kind) {
  switch (kind) {
    case MethodKind::CALL: return "call";
    case MethodKind::STREAM: return "stream";
    case MethodKind::CONTEXT: return "context";
  }
  return "task";
}

kj::ForkedPromise<void> newClosedPromise(kj::Own<kj::PromiseFulfiller<void>>& fulfiller) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  fulfiller = kj::mv(paf.fulfiller);
  return paf.promise.fork();
}
}  // namespace

size_t parseMessageBytes(kj::StringPtr text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  kj::StringPtr suffix = text.slice(digits);
  uint shift = 0;
  if (suffix == "K" || suffix == "k") shift = 10;
  else if (suffix == "M" || suffix == "m") shift = 20;
  else if (suffix == "G" || suffix == "g") shift = 30;
  bool valid = digits > 0 && digits <= 12 && (suffix.size() == 0 || shift != 0);
  uint64_t bytes = valid ? strtoull(kj::heapString(text.begin(), digits).cStr(), nullptr, 10) << shift
                         : 0;
  if (!valid || bytes < MIN_MAX_MESSAGE_BYTES) {
    kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
        kj::str("bad message limit \"", text, "\": give a number of bytes of at least ",
                MIN_MAX_MESSAGE_BYTES, ", optionally with a K, M or G suffix (e.g. 256M)")));
  }
  return bytes;
}

size_t defaultMaxMessageBytes() {
  const char* text = getenv("HARROW_MAX_MESSAGE_BYTES");
  if (text == nullptr || *text == '\0') return DEFAULT_MAX_FRAME_BYTES;
  return parseMessageBytes(text);
}

void PeerHost::setMaxMessageBytes(size_t bytes) {
  KJ_REQUIRE(bytes >= MIN_MAX_MESSAGE_BYTES, "the message limit must be at least 4096 bytes", bytes);
  maxMessage = bytes;
}

Peer::Peer(kj::Own<Channel> channel, PeerHost& host, ActorIdentity remote, bool initiator,
           PeerOptions options, PeerTrust trust)
    : chan(kj::mv(channel)), hostRef(host), remoteId(kj::mv(remote)), options(options),
      trustedAs(trust), nextCallId(initiator ? 1 : 2),
      closedPromise(newClosedPromise(closedFulfiller)) {
  if (this->options.maxMessageBytes == 0) this->options.maxMessageBytes = host.maxMessageBytes();
  chan->setMaxFrameBytes(this->options.maxMessageBytes);
  host.metrics().peerOpened(*this);
  host.livePeers.add(this);
}

void Peer::adoptMaxMessageBytes(size_t bytes) {
  KJ_REQUIRE(bytes >= MIN_MAX_MESSAGE_BYTES, "the message limit must be at least 4096 bytes", bytes);
  options.maxMessageBytes = bytes;
  chan->setMaxFrameBytes(bytes);
}

size_t Peer::frameBytes(OutgoingMessage& message) {
  return harrow::frameBytes(asWire(message).message());
}

size_t Peer::checkSize(WireOutgoing& message) {
  size_t bytes = harrow::frameBytes(message.message());
  refuseOverLimit(message, bytes, false);
  return bytes;
}

void Peer::refuseOverLimit(WireOutgoing& message, uint64_t bytes, bool atLeast) {
  if (bytes <= options.maxMessageBytes) return;
  kj::throwFatalException(messageTooLarge(kj::str(
      message.describe(*this), atLeast ? " is at least " : " is ", bytes,
      " bytes, over the limit of ", options.maxMessageBytes, " bytes on this channel",
      LARGE_MESSAGE_HINT)));
}

kj::String Peer::describeOutgoing(OutgoingMessage& message, MethodKind kind) {
  auto& wire = asWire(message);
  auto start = wire.root().getStart();
  kj::String method;
  KJ_IF_MAYBE(name, methodOfPayloadType(wire.typeName())) {
    method = kj::mv(*name);
  } else {
    method = kj::str("method ", start.getMethodId(), " of interface ", kj::hex(start.getInterfaceId()));
  }
  return kj::str("the ", kindName(kind), " ", method, " to actor ", remoteId.toString());
}

void Peer::sendError(uint64_t callId, const kj::Exception& error, wire::ErrorKind kind,
                     kj::StringPtr task) {
  auto [builder, root] = newMessage(callId);
  fillWireError(root.initError(), error, hostRef.identity(), kind);
  size_t bytes = harrow::frameBytes(*builder);
  if (bytes > options.maxMessageBytes) {
    // A huge message or trace: say so, and quote enough of it to recognise it. This stays well
    // under MIN_MAX_MESSAGE_BYTES.
    constexpr size_t QUOTE = 1024;
    kj::StringPtr text = error.getDescription();
    auto quote = text.size() > QUOTE ? kj::str(kj::heapString(text.begin(), QUOTE), "...")
                                     : kj::str(text);
    auto replacement = messageTooLarge(kj::str(
        "the error raised by ", task, " is ", bytes, " bytes, over the limit of ",
        options.maxMessageBytes, " bytes on this channel; it begins: ", quote));
    auto replaced = newMessage(callId);
    fillWireError(replaced.root.initError(), replacement, hostRef.identity(), kind);
    return send(kj::mv(replaced.builder));
  }
  send(kj::mv(builder));
}

Peer::~Peer() noexcept(false) {
  // Tasks hold references to us; they must all be gone (serve() ends them).
  if (routes.size() > 0) {
    lose(transportClosed("the channel to this actor was destroyed"));
  }
  markClosed();
  hostRef.metrics().peerClosed(*this);
  auto& live = hostRef.livePeers;
  for (size_t i = 0; i < live.size(); ++i) {
    if (live[i] == this) {
      live[i] = live.back();
      live.removeLast();
      break;
    }
  }
}

kj::Vector<TaskInfo> Peer::tasks() const {
  kj::Vector<TaskInfo> result(routes.size());
  for (auto& entry : routes) {
    TaskInfo info;
    info.callId = entry.key;
    info.incoming = !isOurs(entry.key);
    info.openedAt = entry.value->openedAt;
    entry.value->describe(info);
    result.add(kj::mv(info));
  }
  std::sort(result.begin(), result.end(), [](const TaskInfo& a, const TaskInfo& b) {
    return a.openedAt < b.openedAt;
  });
  return result;
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

void Peer::addRoute(uint64_t callId, PeerRoute& route) {
  routes.insert(callId, &route);
  if (isOurs(callId)) hostRef.metrics().outgoingOpened();
}

void Peer::removeRoute(uint64_t callId) {
  if (routes.erase(callId) && isOurs(callId)) hostRef.metrics().outgoingClosed();
  if (routes.size() == 0 && drainWaiters.size() > 0) {
    auto waiters = kj::mv(drainWaiters);
    for (auto& waiter : waiters) waiter->fulfill();
  }
}

NewMessage<capnp::MallocMessageBuilder> newMessage(uint64_t callId) {
  auto builder = kj::heap<capnp::MallocMessageBuilder>(256);
  auto root = builder->initRoot<wire::Message>();
  root.setCallId(callId);
  return {kj::mv(builder), root};
}

kj::Own<capnp::MallocMessageBuilder> Peer::newControlMessage() {
  return newMessage(0).builder;
}

void Peer::send(kj::Own<capnp::MallocMessageBuilder> message) {
  KJ_IF_MAYBE(e, closeReason) kj::throwFatalException(kj::cp(*e));
  if (explainer == nullptr) return chan->send(kj::mv(message));
  // The write side may break before serve() sees the read side end; the explained loss reaches
  // every task through serve(), so a broken channel's own error is not raised here.
  if (closed) return;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { chan->send(kj::mv(message)); })) {
    if (!isTransportClosed(*e)) kj::throwFatalException(kj::mv(*e));
  }
}

kj::Promise<void> Peer::whenWritable() {
  if (explainer == nullptr) return chan->whenWritable();
  return chan->whenWritable().catch_([this](kj::Exception&& e) -> kj::Promise<void> {
    if (!isTransportClosed(e)) return kj::mv(e);
    return whenClosed().then([this, e = kj::mv(e)]() mutable -> kj::Promise<void> {
      KJ_IF_MAYBE(why, closeReason) return kj::cp(*why);
      return kj::mv(e);
    });
  });
}

void Peer::logViolation(uint64_t callId, kj::StringPtr what,
                        kj::Maybe<const kj::Exception&> trace) {
  // A hostile or broken peer can send violations as fast as it likes: the host's ViolationLog
  // bounds the warnings; past options.maxViolations serve() closes the channel.
  ++violations;
  hostRef.violationLog().report(remoteId, kj::str("task ", callId, ": ", what));
  KJ_IF_MAYBE(e, trace) HARROW_LOG_DEBUG("protocol violation by peer", remoteId.toString(), callId, *e);
}

void ViolationLog::report(const ActorIdentity& peer, kj::StringPtr what) {
  auto name = peer.toString();
  HARROW_LOG_DEBUG("protocol violation by peer", name, what);
  if (byPeer.size() >= MAX_PEERS && byPeer.find(name) == nullptr) {
    name = kj::str("(one of ", MAX_PEERS, "+ peers)");
  }
  auto& entry = byPeer.findOrCreate(name, [&]() {
    return kj::HashMap<kj::String, Entry>::Entry{kj::heapString(name), Entry{}};
  });
  ++entry.count;
  if (entry.count <= VIOLATIONS_IN_DETAIL) {
    if (entry.count < VIOLATIONS_IN_DETAIL) {
      KJ_LOG(WARNING, "protocol violation by peer", name, what);
    } else {
      KJ_LOG(WARNING, "protocol violation by peer (further ones are counted, details at debug "
             "level)", name, what);
    }
    entry.lastSummary = kj::systemCoarseMonotonicClock().now();
    return;
  }
  ++entry.unlogged;
  auto now = kj::systemCoarseMonotonicClock().now();
  if (now - entry.lastSummary >= VIOLATION_SUMMARY_INTERVAL) {
    KJ_LOG(WARNING, kj::str(entry.unlogged, " more protocol violations by peer ", name, " (",
                            entry.count, " in all)"), what);
    entry.unlogged = 0;
    entry.lastSummary = now;
  }
}

void Peer::refuseControlMessage(wire::Message::Reader message, kj::StringPtr why) {
  sendViolation(0, kj::str(messageName(message), " ", why));
}

void Peer::sendViolation(uint64_t callId, kj::StringPtr what) {
  logViolation(callId, what, nullptr);
  if (closed) return;
  sendError(callId, protocolViolation(what), wire::ErrorKind::PROTOCOL_VIOLATION,
            kj::str("task ", callId));
}

Co<kj::Own<capnp::MessageReader>> Peer::receiveOne() {
  for (;;) {
    auto next = co_await chan->receive();
    KJ_IF_MAYBE(reader, next) {
      KJ_IF_MAYBE(problem, checkEnvelope(**reader)) {
        auto what = kj::str("malformed message: ", *problem);
        routeMalformed(**reader, what);
        kj::throwFatalException(protocolViolation(what));
      }
      // docs/PROTOCOL.md, "Large frames through shared memory"
      if (isSharedMemoryMessage((*reader)->getRoot<wire::Message>())) {
        KJ_IF_MAYBE(frame, takeSharedMemoryMessage(*this, (*reader)->getRoot<wire::Message>())) {
          *reader = kj::mv(*frame);
          KJ_IF_MAYBE(problem, checkEnvelope(**reader)) {
            kj::throwFatalException(protocolViolation(kj::str("malformed message: ", *problem)));
          }
        } else {
          continue;
        }
      }
      co_return kj::mv(*reader);
    }
    kj::throwFatalException(transportClosed("the peer closed the channel"));
  }
}

// ---------------------------------------------------------------------------------------------
// Outgoing

kj::Own<OutgoingMessage> Peer::newStart(uint64_t interfaceId, uint16_t methodId) {
  uint64_t callId = nextCallId;
  nextCallId += 2;
  auto message = kj::heap<WireOutgoing>(*this, callId, wire::Message::START);
  auto start = message->root().getStart();
  start.setInterfaceId(interfaceId);
  start.setMethodId(methodId);
  start.setWindow(options.window);
  return message;
}

// A start that cannot be sent (too large, or the channel is gone) fails here, before the task
// exists: nothing is registered for its call id and nothing (no cancel) is ever sent for it. The
// task is registered right after the start is queued, before any answer can have been read.

Co<kj::Own<IncomingMessage>> Peer::call(kj::Own<OutgoingMessage> start) {
  if (closed && closeReason == nullptr) co_await whenClosed();  // being explained: wait for it
  KJ_IF_MAYBE(e, closeReason) kj::throwFatalException(kj::cp(*e));
  KJ_IF_MAYBE(e, notServing) kj::throwFatalException(kj::cp(*e));
  WireOutgoing& wire = asWire(*start);
  uint64_t callId = wire.getCallId();
  wire.setKind(MethodKind::CALL);
  checkSize(wire);
  auto deadline = stampDeadline(wire.root().getStart());
  auto paramsType = wire.type();
  send(WireOutgoing::release(kj::mv(start)));
  PendingCall pending(*this, callId, deadline);
  pending.paramsType = paramsType;
  co_return co_await pending.result();
}

Co<kj::Own<OutgoingTask>> Peer::open(kj::Own<OutgoingMessage> start, MethodKind kind) {
  if (closed && closeReason == nullptr) co_await whenClosed();  // being explained: wait for it
  KJ_IF_MAYBE(e, closeReason) kj::throwFatalException(kj::cp(*e));
  KJ_IF_MAYBE(e, notServing) kj::throwFatalException(kj::cp(*e));
  WireOutgoing& wire = asWire(*start);
  uint64_t callId = wire.getCallId();
  wire.setKind(kind);
  checkSize(wire);
  auto name = describeOutgoing(wire, kind);
  auto deadline = stampDeadline(wire.root().getStart());
  auto paramsType = wire.type();
  send(WireOutgoing::release(kj::mv(start)));
  auto task = kj::heap<OutgoingTaskImpl>(*this, callId, kind, kj::mv(name), deadline);
  task->paramsType = paramsType;
  co_await task->acknowledged();
  co_return kj::mv(task);
}

// ---------------------------------------------------------------------------------------------
// Incoming

Co<void> Peer::serve() {
  kj::Maybe<kj::Exception> failure;
  bool hostile = false;
  try {
    for (uint32_t frames = 1;; ++frames) {
      // Frames already read into the channel's buffer are taken at once, without a coroutine and
      // a loop turn each (the consumers then find several items waiting, not one); every
      // ROUTE_BATCH-th frame, and whenever none is buffered, receive() lets the loop run first.
      kj::Maybe<kj::Own<capnp::MessageReader>> next;
      if (frames % ROUTE_BATCH != 0) next = chan->receiveBuffered();
      if (next == nullptr) next = co_await chan->receive();
      KJ_IF_MAYBE(reader, next) {
        route(kj::mv(*reader));
      } else {
        break;  // clean EOF between frames
      }
      if (options.maxViolations != 0 && violations >= options.maxViolations) {
        hostile = true;
        kj::throwFatalException(protocolViolation(kj::str(
            violations, " protocol violations on this channel: the peer is taken as hostile "
            "and the channel closed")));
      }
    }
  } catch (...) {
    failure = currentException();  // not finally: the channel's tasks learn a Cancelled too
  }
  KJ_IF_MAYBE(e, failure) {
    if (isMalformedFrame(*e) || hostile) {
      // E.g. a frame over the limit both sides stated in their hellos, or one violation too
      // many: the peer broke the protocol. Tell it why before the channel closes
      // (docs/PROTOCOL.md, "Transport and framing" and "Flow control").
      hostRef.violationLog().report(remoteId, e->getDescription());
      if (!closed) sendError(0, *e, wire::ErrorKind::PROTOCOL_VIOLATION, "this channel");
    }
    if (isCancelled(*e)) {
      // We stopped reading, the channel itself is fine: the owner may still send on it (e.g.
      // cancel-actor to a child), but no task of ours can get an answer any more, nor can a
      // new one: it is refused at once rather than left waiting for its own scope to end.
      notServing = transportClosed(kj::str("this side stopped serving the channel to actor ",
          remoteId.toString(), " (its serve() was cancelled): no answer could be read"));
      failRoutes(*e);
      markClosed();
      kj::throwFatalException(kj::mv(*e));
    }
  }
  auto lost = [&]() {
    KJ_IF_MAYBE(e, failure) return kj::cp(*e);
    return transportClosed(kj::str("actor ", remoteId.toString(), " closed the channel"));
  }();
  // (KJ_IF_MAYBE, not KJ_ASSERT_NONNULL: GCC 12 miscompiles the latter's statement expression
  // inside a co_await operand.)
  kj::Maybe<kj::Promise<kj::Exception>> explaining;
  KJ_IF_MAYBE(explain, explainer) {
    if (isTransportClosed(lost)) explaining = (*explain)(kj::cp(lost));
  }
  kj::Maybe<kj::Exception> explained;
  KJ_IF_MAYBE(promise, explaining) {
    closed = true;  // nothing goes out any more; call() and open() wait for the explanation
    kj::Maybe<kj::Exception> explainFailed;
    try {
      // Bounded by the owner; a cancelled owner still wants its tasks told why.
      explained = co_await uncancellable(kj::mv(*promise));
    } catch (...) {
      explainFailed = currentException();  // not errorOr: it awaits uncancellable()
    }
    KJ_IF_MAYBE(e, explainFailed) KJ_LOG(WARNING, "explaining a lost channel failed", *e);
  }
  KJ_IF_MAYBE(e, explained) {
    lose(*e);
  } else {
    lose(lost);
  }
  KJ_IF_MAYBE(e, failure) kj::throwFatalException(kj::mv(*e));
}

void Peer::lose(const kj::Exception& why) {
  if (closeReason == nullptr) closeReason = kj::cp(why);
  closed = true;
  failRoutes(why);
  markClosed();
}

void Peer::failRoutes(const kj::Exception& why) {
  // Tasks remove themselves from the map as they end: notify a snapshot.
  kj::Vector<PeerRoute*> snapshot;
  for (auto& entry : routes) snapshot.add(entry.value);
  for (PeerRoute* r : snapshot) r->channelLost(why);
}

void Peer::route(kj::Own<capnp::MessageReader> reader) {
  // Nothing is read before the envelope check: not even the root (the channel's validation
  // accepts a list as the root pointer).
  KJ_IF_MAYBE(problem, checkEnvelope(*reader)) {
    routeMalformed(*reader, kj::str("malformed message: ", *problem));
    return;
  }
  wire::Message::Reader message = reader->getRoot<wire::Message>();
  // docs/PROTOCOL.md, "Large frames through shared memory"; throws MalformedFrame if bad
  if (isSharedMemoryMessage(message)) {
    KJ_IF_MAYBE(frame, takeSharedMemoryMessage(*this, message)) route(kj::mv(*frame));
    return;
  }
  uint64_t callId = message.getCallId();
  try {
    if (callId == 0) {
      if (message.isError()) {
        // The peer reports a problem with the channel as a whole (never answered with an error).
        KJ_LOG(WARNING, "the peer reports a channel-level error", remoteId.toString(),
               toException(message.getError()));
      } else if (message.isHello()) {
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
    // A bug must not end the channel's other tasks (unreadable fields were caught above).
    auto e = currentException();  // handled without suspending
    logViolation(callId, e.getDescription(), e);
    if (!closed && !message.isError()) {
      auto [builder, root] = newMessage(callId);
      fillWireError(root.initError(), protocolViolation(e.getDescription()), hostRef.identity(),
                    wire::ErrorKind::PROTOCOL_VIOLATION);
      chan->send(kj::mv(builder));
    }
  }
}

void Peer::routeMalformed(capnp::MessageReader& reader, kj::StringPtr what) {
  if (!hasStructRoot(reader)) {
    sendViolation(0, what);  // no call id to blame: a channel-level violation
    return;
  }
  // Only the call id and which() (data fields) are read here. An error is never answered with
  // an error.
  wire::Message::Reader message = reader.getRoot<wire::Message>();
  uint64_t callId = message.getCallId();
  bool answer = !message.isError();
  if (callId == 0) {
    if (answer) {
      sendViolation(0, what);
    } else {
      logViolation(0, what, nullptr);
    }
    return;
  }
  if (message.isStart()) {
    if (isOurs(callId) || routes.find(callId) != nullptr || callId <= highestPeerCallId) {
      sendViolation(callId, kj::str("start with call id ", callId, ", which is not free"));
    } else {
      highestPeerCallId = callId;  // refused, but used: later messages for it are late
      sendViolation(callId, what);
    }
    return;
  }
  KJ_IF_MAYBE(r, routes.find(callId)) {
    (*r)->malformed(what, answer);
    return;
  }
  if (!wasUsed(callId) && answer) {
    sendViolation(callId, kj::str("unknown call id ", callId));
  } else {
    logViolation(callId, what, nullptr);
  }
}

void Peer::startIncoming(uint64_t callId, kj::Own<capnp::MessageReader> reader) {
  auto start = reader->getRoot<wire::Message>().getStart();
  uint64_t interfaceId = start.getInterfaceId();
  uint16_t methodId = start.getMethodId();

  auto sendError = [&](kj::StringPtr what) {
    auto [builder, root] = newMessage(callId);
    fillWireError(root.initError(), makeError(ErrorKind::UNKNOWN_METHOD, what),
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
  } else if (interfaceId == metricsInterfaceId() && hostRef.metrics().enabled()) {
    server = &hostRef.metrics().server(hostRef);  // built in: every actor serves it
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
  auto name = kj::str(server->interfaceName(), ".", server->methodName(methodId), "#", callId);
  if (kind != MethodKind::CALL) {
    auto [builder, root] = newMessage(callId);
    auto ack = root.initStartAck();
    ack.setKind(kind);
    ack.setWindow(options.window);
    send(kj::mv(builder));
  }
  // The task object is created inside the nursery's task so that its cancel scope nests in the
  // actor's service scope; the coroutine runs eagerly, so its route exists before we return.
  // (Not the built-in Metrics interface: scrapes do not count themselves.)
  MethodStats* stats = hostRef.metrics().enabled() && interfaceId != metricsInterfaceId()
                           ? &hostRef.metrics().method(*server, methodId)
                           : nullptr;
  tasks->startSoon([this, callId, kind, server, methodId, name = kj::mv(name),
               reader = kj::mv(reader), stats]() mutable -> Co<void> {
    IncomingTaskImpl task(*this, callId, kind, kj::mv(reader), kj::mv(name));
    co_await task.run(*server, methodId, stats);
  });
}

}  // namespace harrow
