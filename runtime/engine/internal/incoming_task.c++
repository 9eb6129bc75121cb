#include "runtime/engine/internal/incoming_task.h"

#include <kj/debug.h>

namespace harrow {

IncomingTaskImpl::IncomingTaskImpl(Peer& peer, uint64_t callId, MethodKind kind,
                                   kj::Own<capnp::MessageReader> start, kj::String name)
    : stream(peer, callId, peer.getOptions().window,
             kj::str(name, " for actor ", peer.remote().toString()), *this),
      methodKind(kind) {
  scope.setName(kj::mv(name));
  auto startMessage = start->getRoot<wire::Message>().getStart();
  stream.grantSendCredit(startMessage.getWindow());  // the caller's window for our items
  // The caller's deadline, as the budget it had left (docs/PROTOCOL.md, "Deadlines"): the handler's
  // scope expires that long after now, so the calls it makes carry what remains of it in turn.
  timeout = startMessage.getTimeoutNanos();
  if (timeout > 0 && timeout <= MAX_TIMEOUT_NANOS) {
    kj::Timer& timer = peer.host().timer();
    scope.setDeadline(timer, timer.now() + int64_t(timeout) * kj::NANOSECONDS);
  }
  // The params are decoded (checked) when the server's typed layer first reads them, before the
  // handler runs; a failure reaches malformed() through the sink.
  paramsMessage =
      kj::heap<WireIncoming>(kj::mv(start), startMessage.getParams(), stream.decodeSink());
  peer.addRoute(callId, *this);
}

IncomingTaskImpl::~IncomingTaskImpl() noexcept(false) { stream.peer.removeRoute(stream.callId); }

OutgoingMessage& IncomingTaskImpl::results() {
  KJ_IF_MAYBE (message, returnMessage) return **message;
  return *returnMessage.emplace(
      kj::heap<WireOutgoing>(stream.peer, stream.callId, wire::Message::RETURN, stream.task));
}

kj::Own<OutgoingMessage> IncomingTaskImpl::newStarted() {
  return kj::heap<WireOutgoing>(stream.peer, stream.callId, wire::Message::STARTED, stream.task);
}

Co<void> IncomingTaskImpl::sendStarted(kj::Own<OutgoingMessage> started) {
  KJ_REQUIRE(methodKind == MethodKind::CONTEXT, "started() belongs to context methods");
  KJ_REQUIRE(!startedSent, "started() called twice");
  KJ_REQUIRE(!lost, "the caller's channel is gone");
  WireOutgoing& wire = asWire(*started);
  stream.peer.checkSize(wire);
  startedSent = true;
  stream.peer.send(WireOutgoing::release(kj::mv(started)));
  co_return;
}

Co<void> IncomingTaskImpl::send(kj::Own<OutgoingMessage> item) {
  KJ_REQUIRE(methodKind != MethodKind::CALL, "a call has no stream");
  KJ_REQUIRE(methodKind == MethodKind::STREAM || startedSent,
             "a context must send started() before streaming");
  return stream.send(kj::mv(item));
}

Co<kj::Maybe<kj::Own<IncomingMessage>>> IncomingTaskImpl::receive() {
  KJ_REQUIRE(methodKind == MethodKind::CONTEXT, "only a context receives items from the caller");
  return stream.receive();
}

void IncomingTaskImpl::describe(TaskInfo& info) const {
  info.kind = methodKind;
  kj::StringPtr name = stream.task;  // "Counter.add#3 for actor ..."
  KJ_IF_MAYBE(hash, name.findFirst('#')) {
    info.method = kj::heapString(name.begin(), *hash);
  } else {
    info.method = kj::heapString(name);
  }
  if (cancelRequested || cancelledHere) {
    info.state = "cancelling";
  } else if (methodKind == MethodKind::CONTEXT && !startedSent) {
    info.state = "starting";
  } else if (methodKind == MethodKind::CALL) {
    info.state = "running";
  } else {
    info.state = stream.outOfCredit() ? "open, no credit (the caller is not reading)" : "open";
  }
}

void IncomingTaskImpl::cancel() {
  cancelledHere = true;
  scope.cancel();
}

Co<void> IncomingTaskImpl::run(ActorServer& server, uint16_t methodId, MethodStats* stats) {
  TaskTimer timer(stats);
  kj::Maybe<kj::Exception> failure;
  try {
    co_await scope.run([&]() {
      _::nextCoIsHandler = true;  // the handler's own coroutine: the debugger stops in it
      KJ_DEFER(_::nextCoIsHandler = false);
      return server.dispatch(methodId, *this);
    });
  } catch (...) {
    failure = currentException();  // not errorOf: a Cancelled is answered too (sendFinal)
  }
  if (failure == nullptr) timer.succeeded();
  KJ_IF_MAYBE(e, failure) {
    if (!isCancelled(*e)) stream.peer.host().taskFailed(*e);
  }
  sendFinal(kj::mv(failure));
}

void IncomingTaskImpl::sendFinal(kj::Maybe<kj::Exception> failure) {
  Peer& peer = stream.peer;
  if (lost || terminalSent || peer.isClosed()) return;  // nobody to tell, or already told

  KJ_IF_MAYBE(e, failure) {
    // A Cancelled escaping the scope came from the actor shutting down around us.
    auto kind = isCancelled(*e) ? wire::ErrorKind::CONTEXT_CANCELLED : wire::ErrorKind::FAILED;
    peer.sendError(stream.callId, *e, kind, stream.task);
  } else if (scope.cancelledCaught() && cancelRequested && !cancelledHere) {
    auto [builder, root] = newMessage(stream.callId);
    root.setCancelTaskAck();
    peer.send(kj::mv(builder));
  } else if (scope.cancelledCaught() && scope.deadlineExpired() && !cancelledHere) {
    // The caller's deadline passed here: one error of its own kind. The caller does not raise
    // it: it waits for the same deadline on its own clock (docs/PROTOCOL.md, "Deadlines").
    auto [builder, root] = newMessage(stream.callId);
    auto expired = makeError(ErrorKind::DEADLINE_EXCEEDED, kj::str(
        "the caller's deadline passed while ", stream.task, " ran (it was given ",
        timeout / 1000000, " ms)"));
    fillWireError(root.initError(), expired, peer.host().identity(),
                  wire::ErrorKind::DEADLINE_EXCEEDED);
    peer.send(kj::mv(builder));
  } else if (scope.cancelledCaught()) {
    auto [builder, root] = newMessage(stream.callId);
    auto cancelled = makeError(ErrorKind::CANCELLED, kj::str("the callee cancelled its ",
        methodKind == MethodKind::CONTEXT ? "context" : "task"));
    fillWireError(root.initError(), cancelled, peer.host().identity(),
                  wire::ErrorKind::CONTEXT_CANCELLED);
    peer.send(kj::mv(builder));
  } else {
    results();  // an untouched result is an empty struct
    WireOutgoing& result = *KJ_ASSERT_NONNULL(returnMessage);
    // A result too large for the channel becomes an error result naming the limit: the caller
    // gets an answer, and the channel carries on.
    KJ_IF_MAYBE(tooLarge, kj::runCatchingExceptions([&]() {
      peer.checkSize(result);
    })) {
      peer.sendError(stream.callId, *tooLarge, wire::ErrorKind::FAILED, stream.task);
    } else {
      peer.send(WireOutgoing::release(kj::mv(KJ_ASSERT_NONNULL(returnMessage))));
    }
  }
  peer.removeRoute(stream.callId);
}

void IncomingTaskImpl::receive(wire::Message::Reader message,
                               kj::Own<capnp::MessageReader>& owner) {
  switch (message.which()) {
    case wire::Message::CANCEL_TASK:
    case wire::Message::ERROR:  // the caller's side failed: same as cancel-task
      cancelRequested = true;
      scope.cancel();
      return;
    case wire::Message::CREDIT:
      stream.grantSendCredit(message.getCredit());
      return;
    case wire::Message::YIELD:
      if (methodKind != MethodKind::CONTEXT) {
        return violation("yield from the caller of a non-context method");
      }
      if (!stream.deliverItem(message, owner)) {
        // deliverItem() has answered with the error: it is this task's terminal message.
        terminalSent = true;
        stream.fail(protocolViolation("the caller overran its credit window"));
        scope.cancel();
      }
      return;
    case wire::Message::STOP:
      stream.deliverStop();
      return;
    default: return violation(kj::str(messageName(message), " is not allowed from a caller"));
  }
}

void IncomingTaskImpl::violation(kj::StringPtr what) {
  if (terminalSent) return;
  stream.peer.sendViolation(stream.callId, what);
  terminalSent = true;
  stream.fail(protocolViolation(what));
  scope.cancel();
}

void IncomingTaskImpl::malformed(kj::StringPtr what, bool answer) {
  if (answer) {
    violation(what);
  } else {
    // An unreadable error from the caller: its side failed all the same (as for `error`).
    stream.peer.logViolation(stream.callId, what, nullptr);
    cancelRequested = true;
    scope.cancel();
  }
}

void IncomingTaskImpl::channelLost(const kj::Exception& why) {
  lost = true;
  stream.fail(why);
  scope.cancel();
}

}  // namespace harrow
