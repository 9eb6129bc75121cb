// The untyped view of one task (a call, stream or context) on a channel, from either end.
//
// Typed code never sees these directly: runtime/typed.h wraps them with the struct types the
// schema declares, and capnpc-harrow's generated stubs and skeletons use those wrappers. The
// protocol engine (runtime/peer.h) implements them.

#pragma once

#include <harrow/co/co.h>

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/schema.h>
#include <harrow/wire.capnp.h>
#include <kj/refcount.h>

namespace harrow {

using MethodKind = wire::MethodKind;

class RawPortal;

// One wire::Message being built; the caller fills the payload and hands it back to be sent.
class OutgoingMessage {
public:
  virtual ~OutgoingMessage() noexcept(false) = default;

  // The payload value to fill: `payload().initAs<T>()`. Also records T's type id on the wire.
  template <typename T>
  typename T::Builder init() {
    setType(capnp::Schema::from<T>());
    return payload().template initAs<T>();
  }

  virtual capnp::AnyPointer::Builder payload() = 0;
  virtual void setTypeId(uint64_t typeId) = 0;
  // Records the payload's type: its id for the wire, its name for error messages (a message too
  // large to send names the method it belongs to).
  virtual void setType(capnp::Schema schema) { setTypeId(schema.getProto().getId()); }
  // A start: the kind of task it opens, set before it is filled, so that a value too large to
  // send is refused while it is being copied in, naming the task ("the start of the call ...").
  virtual void setKind(MethodKind kind) { (void)kind; }
};

// One received wire::Message holding a payload; owns the bytes the reader points into.
class IncomingMessage {
public:
  virtual ~IncomingMessage() noexcept(false) = default;

  // The payload as T. This is the decode boundary for received payloads: a payload of another
  // type, or one that does not decode as T (a pointer of the wrong kind anywhere inside it),
  // raises a protocol violation naming both, and the engine reports it to the peer as a
  // violation of the task the payload belongs to. Nothing reads the payload before this check.
  template <typename T>
  typename T::Reader get() {
    check(capnp::Schema::from<T>());
    return payload().template getAs<T>();
  }

  virtual capnp::AnyPointer::Reader payload() = 0;
  // Returns if the payload is a struct of type `expected` that decodes as such (checked once per
  // type); throws a protocol violation otherwise.
  virtual void check(capnp::StructSchema expected) = 0;
};

// The item stream inside a task, in both directions (tractor: MsgStream). Sending waits for
// credit from the receiver (the peer never buffers without bound); receiving returns credit as
// items are taken.
class RawStream {
public:
  virtual ~RawStream() noexcept(false) = default;

  virtual kj::Own<OutgoingMessage> newItem() = 0;
  // Resolves once the item is queued for the wire; waits while the peer has granted no credit.
  virtual Co<void> send(kj::Own<OutgoingMessage> item) = 0;
  // The next item, or nullptr once the peer has sent `stop`.
  virtual Co<kj::Maybe<kj::Own<IncomingMessage>>> receive() = 0;
  // Tells the peer no more items come from this side.
  virtual Co<void> stop() = 0;
  // This side reads no more (the block reading the stream has ended): items that arrive from now
  // on, and those not yet read, are dropped and their credit returned at once, so that the peer
  // is never held up by a reader that has left (it may still be sending while this side waits
  // for its result).
  virtual void stopReading() {}
};

// The callee's view of one task it is running.
class IncomingTask : public RawStream {
public:
  // The `start` message; its payload is the params struct.
  virtual IncomingMessage& params() = 0;
  virtual MethodKind kind() = 0;

  // Results: filled in place; sent as `return` when the handler's coroutine completes.
  virtual OutgoingMessage& results() = 0;

  // Contexts: the `started` value, sent once before any stream item.
  virtual kj::Own<OutgoingMessage> newStarted() = 0;
  virtual Co<void> sendStarted(kj::Own<OutgoingMessage> started) = 0;

  // Ends this task from the callee's side: the caller sees ContextCancelled (not asked for).
  virtual void cancel() = 0;

  // The channel this task arrived on, as a portal back to the calling actor (tractor: the
  // context's channel). Valid while the handler runs; calls through it go to the caller's actor.
  // Implementations without a channel (test fakes) throw.
  virtual RawPortal& caller();
  // Resolves once the caller's channel has ended: closed, lost, or no longer served by this side
  // (the registry uses it to drop entries of actors that died without deregistering). Never
  // rejects. Implementations without a channel never resolve it.
  virtual kj::Promise<void> callerGone() { return kj::NEVER_DONE; }
};

// The caller's view of one open stream or context task.
class OutgoingTask : public RawStream {
public:
  // Contexts: the callee's `started` value.
  virtual Co<kj::Own<IncomingMessage>> started() = 0;
  // The callee's `return`; raises RemoteActorError or ContextCancelled as received. After
  // cancel() a ContextCancelled is the acknowledgement and yields nullptr instead.
  virtual Co<kj::Maybe<kj::Own<IncomingMessage>>> result() = 0;
  // Sends cancel-task (once); the callee's task is cancelled and replies.
  virtual void cancel() = 0;
};

// One channel to another actor, client side (tractor: Portal). Implemented by the engine.
class PortalAnchor;

class RawPortal {
public:
  virtual ~RawPortal() noexcept(false);

  virtual kj::Own<OutgoingMessage> newStart(uint64_t interfaceId, uint16_t methodId) = 0;
  // A call: resolves with the `return` message; raises RemoteActorError on `error`.
  virtual Co<kj::Own<IncomingMessage>> call(kj::Own<OutgoingMessage> start) = 0;
  // A stream or context: resolves once the callee has acknowledged the start.
  virtual Co<kj::Own<OutgoingTask>> open(kj::Own<OutgoingMessage> start, MethodKind kind) = 0;

  // What typed portals hold instead of a pointer (PortalHandle below): it outlives this
  // RawPortal and knows when it is gone.
  kj::Own<PortalAnchor> anchor();

private:
  kj::Maybe<kj::Own<PortalAnchor>> anchor_;
};

// Outlives its RawPortal (refcounted: every typed portal to it holds one); released when the
// RawPortal (a Peer: a channel to an actor) is destroyed.
class PortalAnchor final : public kj::Refcounted {
public:
  explicit PortalAnchor(RawPortal& portal) : portal(&portal) {}
  // The RawPortal; harrow.TransportClosed once it is gone.
  RawPortal& get() const;
  void release() { portal = nullptr; }

private:
  RawPortal* portal;
};

// A typed portal's hold on its channel (shared ownership of a PortalAnchor, not of the channel):
// a portal that outlives its channel — its actor nursery closed, its actor stopped serving — raises
// harrow.TransportClosed when used, and never touches freed memory. Copies share the anchor.
class PortalHandle {
public:
  explicit PortalHandle(RawPortal& portal) : anchor(portal.anchor()) {}
  PortalHandle(const PortalHandle& other) : anchor(kj::addRef(*other.anchor)) {}
  PortalHandle(PortalHandle&&) = default;
  PortalHandle& operator=(const PortalHandle& other) {
    anchor = kj::addRef(*other.anchor);
    return *this;
  }
  PortalHandle& operator=(PortalHandle&&) = default;

  RawPortal& operator*() const { return anchor->get(); }
  RawPortal* operator->() const { return &anchor->get(); }

private:
  // mutable: a copy of a const handle shares (adds a reference to) the same anchor.
  mutable kj::Own<PortalAnchor> anchor;
};

inline RawPortal& IncomingTask::caller() {
  kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
      kj::str("this task has no caller channel")));
}

// The callee side of one actor interface: what capnpc-harrow's server skeletons implement.
class ActorServer {
public:
  virtual ~ActorServer() noexcept(false) = default;

  virtual uint64_t interfaceId() const = 0;
  virtual kj::StringPtr interfaceName() const = 0;
  // nullptr for a method id the interface does not have.
  virtual kj::Maybe<MethodKind> methodKind(uint16_t methodId) const = 0;
  virtual kj::StringPtr methodName(uint16_t methodId) const = 0;
  // Runs the handler for `methodId` to completion.
  virtual Co<void> dispatch(uint16_t methodId, IncomingTask& task) = 0;

  // The struct types a method's messages carry, for introspection (idl/harrow/introspect.capnp:
  // a shell calls any method with JSON, no stubs compiled in). Generated skeletons answer for
  // each method; nullptr for a method id the interface does not have, or a hand-written server.
  struct MessageTypes {
    capnp::StructSchema params, results;
    kj::Maybe<capnp::StructSchema> item;                              // streams
    kj::Maybe<capnp::StructSchema> started, callerSends, calleeSends;  // contexts
  };
  virtual kj::Maybe<MessageTypes> messageTypes(uint16_t methodId) const {
    (void)methodId;
    return nullptr;
  }
};

}  // namespace harrow
