// The caller's end of a task: a pending call, or an open stream / context.

#pragma once

#include "runtime/engine/internal/task_stream.h"

namespace harrow {

// Stamps `start` with what remains of the running coroutine's deadline (Start.timeoutNanos,
// docs/PROTOCOL.md, "Deadlines") and returns that deadline: the task keeps it to recognise the
// callee's report that it passed. Called in the caller's coroutine, right before the start is sent.
kj::Maybe<Deadline> stampDeadline(wire::Start::Builder start);

// A call in flight: resolves with the `return` message or raises the `error`.
class PendingCall final : public PeerRoute {
public:
  // `deadline`: the one stampDeadline() sent with the start. Its scope encloses the caller's
  // coroutine, which owns this object, so it outlives it.
  PendingCall(Peer& peer, uint64_t callId, kj::Maybe<Deadline> deadline);
  // Unregisters; a call abandoned before its answer (KJ or scope cancellation of the caller)
  // tells the callee with cancel-task.
  ~PendingCall() noexcept(false);
  KJ_DISALLOW_COPY(PendingCall);

  kj::Promise<kj::Own<IncomingMessage>> result() { return kj::mv(promise); }

  // The params' type, which names the method in describe() (unknown if the caller set none).
  kj::Maybe<capnp::Schema> paramsType;

  void describe(TaskInfo& info) const override;
  void receive(wire::Message::Reader message, kj::Own<capnp::MessageReader>& owner) override;
  void channelLost(const kj::Exception& why) override;
  void malformed(kj::StringPtr what, bool answer) override;

private:
  Peer& peer;
  uint64_t callId;
  kj::Promise<kj::Own<IncomingMessage>> promise;
  kj::Own<kj::PromiseFulfiller<kj::Own<IncomingMessage>>> fulfiller;
  kj::Maybe<Deadline> deadline;
  bool answered = false;
  bool held = false;  // the callee's deadline passed: waiting for the caller's own
};

class OutgoingTaskImpl final : public OutgoingTask, public PeerRoute {
public:
  // `name` describes the task for error messages (Peer::describeOutgoing()). `deadline`: as for
  // PendingCall; the typed layer never lets a task outlive the scope it was opened in.
  OutgoingTaskImpl(Peer& peer, uint64_t callId, MethodKind kind, kj::String name,
                   kj::Maybe<Deadline> deadline);
  ~OutgoingTaskImpl() noexcept(false);
  KJ_DISALLOW_COPY(OutgoingTaskImpl);

  // Resolves when the callee has acknowledged the start (or raises its error).
  Co<void> acknowledged();

  // RawStream
  kj::Own<OutgoingMessage> newItem() override { return stream.newItem(); }
  Co<void> send(kj::Own<OutgoingMessage> item) override;
  Co<kj::Maybe<kj::Own<IncomingMessage>>> receive() override { return stream.receive(); }
  Co<void> stop() override { return stream.stop(); }
  void stopReading() override { stream.stopReading(); }

  // OutgoingTask
  Co<kj::Own<IncomingMessage>> started() override;
  Co<kj::Maybe<kj::Own<IncomingMessage>>> result() override;
  void cancel() override;

  // The params' type, which names the method in describe() (unknown if the caller set none).
  kj::Maybe<capnp::Schema> paramsType;

  // PeerRoute
  void describe(TaskInfo& info) const override;
  void receive(wire::Message::Reader message, kj::Own<capnp::MessageReader>& owner) override;
  void channelLost(const kj::Exception& why) override;
  void malformed(kj::StringPtr what, bool answer) override;

private:
  TaskStream stream;
  MethodKind kind;
  kj::Maybe<Deadline> deadline;
  bool acked = false;
  bool cancelSent = false;
  bool finished = false;  // return, error or cancel ack received
  bool held = false;      // the callee's deadline passed: waiting for the caller's own
  kj::Maybe<kj::Own<IncomingMessage>> startedValue;
  bool startedReceived = false;
  kj::Maybe<kj::Own<IncomingMessage>> returnValue;
  kj::Maybe<kj::Exception> error;
  Wakeup changed;

  void finish();
  void violation(kj::StringPtr what);
};

}  // namespace harrow
