#include "runtime/engine/internal/outgoing_task.h"

#include <kj/debug.h>

namespace harrow {
namespace {

void sendCancelTask(Peer& peer, uint64_t callId) {
  if (peer.isClosed()) return;
  auto [builder, root] = newMessage(callId);
  root.setCancelTask();
  peer.send(kj::mv(builder));
}

// The callee says the deadline this task carried has passed. While that is still the deadline
// of the scope it came from, the report is not an error of its own: the task is over at the
// callee, and here it waits for that scope's own timer, which ends it at the deadline (failAfter
// raises DeadlineExceeded, moveOnAfter moves on). That is normally at once (the callee's copy of
// the deadline is later by the start's transit time), and a callee cannot end the caller's scope
// before the caller's own clock says so. A deadline moved since the start (or a report the
// caller never asked for) is an ordinary remote error.
bool heldForOwnDeadline(const kj::Maybe<Deadline>& deadline, wire::Error::Reader error) {
  if (error.getKind() != wire::ErrorKind::DEADLINE_EXCEEDED) return false;
  KJ_IF_MAYBE(d, deadline) {
    KJ_IF_MAYBE(at, d->scope->deadline()) return *at == d->when;
  }
  return false;
}

kj::StringPtr kindName(MethodKind kind) {
  switch (kind) {
    case MethodKind::CALL: return "call";
    case MethodKind::STREAM: return "stream";
    case MethodKind::CONTEXT: return "context";
  }
  return "?";
}

}  // namespace

kj::Maybe<Deadline> stampDeadline(wire::Start::Builder start) {
  auto deadline = currentDeadline();
  KJ_IF_MAYBE(d, deadline) {
    int64_t left = d->remaining() / kj::NANOSECONDS;
    // 0 on the wire means "none": a deadline already reached still goes, as the smallest budget.
    start.setTimeoutNanos(kj::max(left, int64_t(1)));
  }
  return deadline;
}

// ---------------------------------------------------------------------------------------------

PendingCall::PendingCall(Peer& peer, uint64_t callId, kj::Maybe<Deadline> deadline)
    : peer(peer), callId(callId), promise(nullptr), deadline(deadline) {
  auto paf = kj::newPromiseAndFulfiller<kj::Own<IncomingMessage>>();
  promise = kj::mv(paf.promise);
  fulfiller = kj::mv(paf.fulfiller);
  peer.addRoute(callId, *this);
}

PendingCall::~PendingCall() noexcept(false) {
  peer.removeRoute(callId);
  if (!answered) sendCancelTask(peer, callId);
}

void PendingCall::describe(TaskInfo& info) const {
  info.kind = MethodKind::CALL;
  info.method = methodOfParams(paramsType);
  info.state = "waiting for the result";
}

void PendingCall::receive(wire::Message::Reader message, kj::Own<capnp::MessageReader>& owner) {
  if (held) return;  // the task is over; only the caller's own deadline ends the wait
  answered = true;
  switch (message.which()) {
    case wire::Message::RETURN:
      fulfiller->fulfill(kj::heap<WireIncoming>(kj::mv(owner), message.getReturn()));
      peer.removeRoute(callId);
      return;
    case wire::Message::ERROR:
      if (heldForOwnDeadline(deadline, message.getError())) {
        // The promise stays pending until the caller's own deadline cancels the wait; the route
        // stays too, so that the channel is not drained (and its Peer freed) under this call.
        held = true;
        return;
      }
      fulfiller->reject(toException(message.getError()));
      peer.removeRoute(callId);
      return;
    default: {
      auto what = kj::str("unexpected message for a call (", messageName(message),
                          "); the callee's method is not a call");
      peer.sendViolation(callId, what);
      fulfiller->reject(protocolViolation(what));
      peer.removeRoute(callId);
      return;
    }
  }
}

void PendingCall::malformed(kj::StringPtr what, bool answer) {
  if (answered) return;
  answered = true;
  if (answer) {
    peer.sendViolation(callId, what);
  } else {
    peer.logViolation(callId, what, nullptr);
  }
  fulfiller->reject(protocolViolation(what));
  peer.removeRoute(callId);
}

void PendingCall::channelLost(const kj::Exception& why) {
  if (held) return;
  answered = true;
  fulfiller->reject(kj::cp(why));
}

// ---------------------------------------------------------------------------------------------

OutgoingTaskImpl::OutgoingTaskImpl(Peer& peer, uint64_t callId, MethodKind kind, kj::String name,
                                   kj::Maybe<Deadline> deadline)
    : stream(peer, callId, peer.getOptions().window, kj::mv(name), *this), kind(kind),
      deadline(deadline) {
  peer.addRoute(callId, *this);
}

OutgoingTaskImpl::~OutgoingTaskImpl() noexcept(false) {
  stream.peer.removeRoute(stream.callId);
  if (!finished && !cancelSent && !held) sendCancelTask(stream.peer, stream.callId);
}

Co<void> OutgoingTaskImpl::acknowledged() {
  while (!acked) {
    KJ_IF_MAYBE(e, error) kj::throwFatalException(kj::cp(*e));
    KJ_ASSERT(!finished, "a task that ended unacknowledged has an error");
    co_await changed.wait();
  }
}

Co<void> OutgoingTaskImpl::send(kj::Own<OutgoingMessage> item) {
  KJ_REQUIRE(kind == MethodKind::CONTEXT, "only a context streams from caller to callee");
  return stream.send(kj::mv(item));
}

Co<kj::Own<IncomingMessage>> OutgoingTaskImpl::started() {
  KJ_REQUIRE(kind == MethodKind::CONTEXT, "only a context sends started");
  while (!startedReceived) {
    KJ_IF_MAYBE(e, error) kj::throwFatalException(kj::cp(*e));
    KJ_REQUIRE(!finished, "the callee returned without sending started");
    co_await changed.wait();
  }
  KJ_IF_MAYBE(value, startedValue) {
    auto result = kj::mv(*value);
    startedValue = nullptr;
    co_return kj::mv(result);
  }
  KJ_FAIL_REQUIRE("started() already taken");
}

Co<kj::Maybe<kj::Own<IncomingMessage>>> OutgoingTaskImpl::result() {
  while (!finished) co_await changed.wait();
  KJ_IF_MAYBE(value, returnValue) {
    co_return kj::mv(*value);
  }
  KJ_IF_MAYBE(e, error) {
    // A cancel we asked for is absorbed as the acknowledgement; one we did not is raised.
    if (cancelSent && isContextCancelled(*e)) co_return nullptr;
    kj::throwFatalException(kj::cp(*e));
  }
  co_return nullptr;  // cancel-task acknowledged
}

void OutgoingTaskImpl::describe(TaskInfo& info) const {
  info.kind = kind;
  info.method = methodOfParams(paramsType);
  if (finished) {
    info.state = "finished";
  } else if (cancelSent) {
    info.state = "cancelling";
  } else if (!acked) {
    info.state = "waiting for the start's acknowledgement";
  } else if (kind == MethodKind::CONTEXT && !startedReceived) {
    info.state = "waiting for started";
  } else if (kind == MethodKind::CONTEXT && stream.outOfCredit()) {
    info.state = "open, no credit (the callee is not reading)";
  } else {
    info.state = "open";
  }
}

void OutgoingTaskImpl::cancel() {
  if (finished || cancelSent || held) return;
  cancelSent = true;
  sendCancelTask(stream.peer, stream.callId);
}

void OutgoingTaskImpl::violation(kj::StringPtr what) {
  stream.peer.sendViolation(stream.callId, what);
  error = protocolViolation(what);
  stream.fail(KJ_ASSERT_NONNULL(error));
  finish();
}

void OutgoingTaskImpl::finish() {
  finished = true;
  stream.deliverStop();  // `return` also ends the callee's item stream
  // ...and its reading: a send() waiting for credit the callee will never grant (or any later
  // one) learns that it has nobody to send to, instead of waiting forever.
  stream.closeSending();
  stream.peer.removeRoute(stream.callId);
  changed.wake();
}

void OutgoingTaskImpl::receive(wire::Message::Reader message,
                               kj::Own<capnp::MessageReader>& owner) {
  if (held) return;
  switch (message.which()) {
    case wire::Message::START_ACK: {
      auto ack = message.getStartAck();
      if (acked) return violation("second startAck");
      if (ack.getKind() != kind) {
        return violation(kj::str("the caller opened a ", kindName(kind), " but the callee's method is a ",
                                 kindName(ack.getKind())));
      }
      acked = true;
      stream.grantSendCredit(ack.getWindow());
      changed.wake();
      return;
    }
    case wire::Message::STARTED:
      if (kind != MethodKind::CONTEXT) return violation("started on a stream");
      if (!acked) return violation("started before startAck");
      if (startedReceived) return violation("a second started");
      startedReceived = true;
      startedValue =
          kj::heap<WireIncoming>(kj::mv(owner), message.getStarted(), stream.decodeSink());
      changed.wake();
      return;
    case wire::Message::YIELD:
      if (!acked) return violation("yield before startAck");
      if (kind == MethodKind::CONTEXT && !startedReceived) return violation("yield before started");
      if (!stream.deliverItem(message, owner)) {
        error = protocolViolation("the callee overran its credit window");
        stream.fail(KJ_ASSERT_NONNULL(error));
        finish();
      }
      return;
    case wire::Message::STOP:
      if (!acked) return violation("stop before startAck");
      stream.deliverStop();
      return;
    case wire::Message::CREDIT:
      stream.grantSendCredit(message.getCredit());
      return;
    case wire::Message::RETURN:
      // A call's answer to a stream or context (docs/PROTOCOL.md, "Starting": a kind mismatch).
      if (!acked) {
        return violation(kj::str("return before startAck: the caller opened a ", kindName(kind),
                                 " but the callee's method is a call"));
      }
      // (Read after the task has finished: a malformed result fails only the local reader.)
      returnValue = kj::heap<WireIncoming>(kj::mv(owner), message.getReturn());
      finish();
      return;
    case wire::Message::ERROR:
      if (heldForOwnDeadline(deadline, message.getError())) {
        // Over at the callee; everything here waits for the caller's own deadline to cancel it
        // (the route stays, as for PendingCall).
        held = true;
        return;
      }
      error = toException(message.getError());
      if (!(cancelSent && isContextCancelled(KJ_ASSERT_NONNULL(error)))) {
        stream.fail(KJ_ASSERT_NONNULL(error));
      }
      finish();
      return;
    case wire::Message::CANCEL_TASK_ACK:
      if (!cancelSent) return violation("cancelTaskAck without cancelTask");
      finish();
      return;
    default: return violation(kj::str(messageName(message), " is not allowed from a callee"));
  }
}

void OutgoingTaskImpl::malformed(kj::StringPtr what, bool answer) {
  if (finished || held) return;
  if (answer) return violation(what);
  stream.peer.logViolation(stream.callId, what, nullptr);
  error = protocolViolation(what);
  stream.fail(KJ_ASSERT_NONNULL(error));
  finish();
}

void OutgoingTaskImpl::channelLost(const kj::Exception& why) {
  if (finished || held) return;
  error = kj::cp(why);
  stream.fail(why);
  finished = true;
  changed.wake();
}

}  // namespace harrow
