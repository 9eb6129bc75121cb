// NOT API: the engine's own side of a Peer, for its task objects (incoming_task.h,
// outgoing_task.h, task_stream.h, wire_message.h).
//
//   class PendingCall final : public PeerRoute { ... };   // routed to by call id
//   auto [builder, root] = newMessage(callId);             // a wire::Message for one task
//   root.setCancelTask();
//   peer.send(kj::mv(builder));
//
// A Peer routes each received message by call id to the PeerRoute registered for it
// (Peer::addRoute, private: only the task classes, Peer's friends, register). Nothing outside
// runtime/engine/ can include this (Bazel keeps internal/ in the layer's srcs, CMake stages only
// the layer's top-level headers): what other layers and users need of a Peer is
// <harrow/engine/peer.h>, so the engine's state machine can change without touching them.

#pragma once

#include <harrow/engine/peer.h>

namespace harrow {

// One open task, either direction, addressed by call id.
class PeerRoute {
public:
  // For Peer::tasks(): the task's method, kind and state (callId and direction are the Peer's).
  virtual void describe(TaskInfo& info) const = 0;
  const kj::TimePoint openedAt = kj::systemCoarseMonotonicClock().now();

  virtual void receive(wire::Message::Reader message, kj::Own<capnp::MessageReader>& owner) = 0;
  virtual void channelLost(const kj::Exception& why) = 0;
  // The peer sent this task a message (or payload) that does not decode: a violation of this
  // task, answered with an error unless `answer` is false (the message was itself an error).
  virtual void malformed(kj::StringPtr what, bool answer = true) = 0;
};

// A message being built and its root, its call id set: `auto [builder, root] = newMessage(id)`.
template <typename Builder>
struct NewMessage {
  kj::Own<Builder> builder;
  wire::Message::Builder root;
};

// A wire::Message for `callId` (0: channel-level). Peer::newPayloadMessage for one that carries a
// payload.
NewMessage<capnp::MallocMessageBuilder> newMessage(uint64_t callId);

}  // namespace harrow
