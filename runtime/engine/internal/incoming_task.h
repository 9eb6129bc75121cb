// The callee's end of a task: runs the handler on the actor's server inside its own cancel
// scope, and answers with return, error or cancelTaskAck.

#pragma once

#include "runtime/engine/internal/task_stream.h"

namespace harrow {

class IncomingTaskImpl final : public IncomingTask, public PeerRoute {
public:
  // `name` names the task in log lines, e.g. "Counter.add#3".
  IncomingTaskImpl(Peer& peer, uint64_t callId, MethodKind kind,
                   kj::Own<capnp::MessageReader> start, kj::String name);
  ~IncomingTaskImpl() noexcept(false);
  KJ_DISALLOW_COPY(IncomingTaskImpl);

  // Runs `server`'s handler for the start's method to completion and sends the final message.
  // Never throws: the handler's failure goes to the caller. `stats`: counted there if not null.
  Co<void> run(ActorServer& server, uint16_t methodId, MethodStats* stats = nullptr);

  // IncomingTask
  IncomingMessage& params() override { return *paramsMessage; }
  MethodKind kind() override { return methodKind; }
  OutgoingMessage& results() override;
  kj::Own<OutgoingMessage> newStarted() override;
  Co<void> sendStarted(kj::Own<OutgoingMessage> started) override;
  void cancel() override;
  RawPortal& caller() override { return stream.peer; }
  kj::Promise<void> callerGone() override { return stream.peer.whenClosed(); }

  // RawStream
  kj::Own<OutgoingMessage> newItem() override { return stream.newItem(); }
  Co<void> send(kj::Own<OutgoingMessage> item) override;
  Co<kj::Maybe<kj::Own<IncomingMessage>>> receive() override;
  Co<void> stop() override { return stream.stop(); }
  void stopReading() override { stream.stopReading(); }

  // PeerRoute
  void describe(TaskInfo& info) const override;
  void receive(wire::Message::Reader message, kj::Own<capnp::MessageReader>& owner) override;
  void channelLost(const kj::Exception& why) override;
  void malformed(kj::StringPtr what, bool answer) override;

private:
  TaskStream stream;
  MethodKind methodKind;
  kj::Own<WireIncoming> paramsMessage;
  kj::Maybe<kj::Own<WireOutgoing>> returnMessage;
  CancelScope scope;  // the handler's; cancel-task and the channel's loss cancel it
  bool startedSent = false;
  bool cancelRequested = false;  // by the caller
  bool cancelledHere = false;    // by the callee itself
  bool lost = false;
  bool terminalSent = false;     // e.g. the error answering a caller's violation
  uint64_t timeout = 0;          // the start's timeoutNanos: the caller's budget

  void sendFinal(kj::Maybe<kj::Exception> failure);
  // The caller broke the protocol: the error we send is this task's terminal message.
  void violation(kj::StringPtr what);
};

}  // namespace harrow
