// The engine's OutgoingMessage / IncomingMessage: one wire::Message and the Payload inside it.

#pragma once

#include <harrow/typed/task.h>
#include "runtime/engine/internal/peer_internal.h"

#include <harrow/ipc/sealed_frame.h>

#include <capnp/message.h>
#include <kj/refcount.h>

namespace harrow {

// The first segment of an outgoing payload message, a base of WireOutgoing so that it exists
// before the builder that uses it: inside the message object when the message is expected to be
// small (a stream of small items then allocates one object per item, not a builder, a segment and
// a message), on the heap otherwise. Only the words asked for are zeroed, not capnp's default
// 2 KiB (bench/README.md, "Allocations per stream item").
class FirstSegment {
public:
  // What a message without a better guess starts with: most calls and results fit.
  static constexpr capnp::uint DEFAULT_WORDS = 256;
  // Up to this many words live inside the message object.
  static constexpr capnp::uint INLINE_WORDS = 48;

protected:
  explicit FirstSegment(capnp::uint words);
  KJ_DISALLOW_COPY(FirstSegment);
  kj::ArrayPtr<capnp::word> words() { return segment; }

private:
  kj::Array<capnp::word> heapWords;
  kj::ArrayPtr<capnp::word> segment;
  capnp::word inlineWords[INLINE_WORDS];  // zeroed as far as `segment` reaches, if it is here
};

// An outgoing wire::Message that carries a payload, and its own builder: Channel::send() takes the
// object itself (release()). The builder refuses to grow past the channel's limit while it is
// being filled: the allocation that would take the message over it raises
// harrow.MessageTooLarge before it is made, so a value far over the limit costs neither a copy
// nor memory of its size (the exact check, Peer::checkSize(), decides near the limit). Each
// segment allocated for an object of `minimumSize` words is used by that object, so the segment
// table plus the minimum sizes requested so far never exceed the final frame. Over a channel with
// shared memory, a segment too large for the ring is built in a memfd (FrameFileBuilder), which
// the channel passes sealed, without copying it.
class WireOutgoing final : public OutgoingMessage, private FirstSegment, public FrameFileBuilder {
public:
  // A message for `callId` whose payload is the `which` member (START: the start's params), ready
  // to fill. `task` describes the task for errors (a start describes itself: the task does not
  // exist yet). `expectedWords`: the size the message will probably have (a stream's last item).
  WireOutgoing(Peer& peer, uint64_t callId, wire::Message::Which which,
               kj::StringPtr task = nullptr, capnp::uint expectedWords = DEFAULT_WORDS);

  capnp::AnyPointer::Builder payload() override { return payloadBuilder.getValue(); }
  void setTypeId(uint64_t typeId) override { payloadBuilder.setTypeId(typeId); }
  void setType(capnp::Schema schema) override {
    setTypeId(schema.getProto().getId());
    payloadSchema = schema;
  }
  void setKind(MethodKind kind) override { startKind = kind; }
  kj::ArrayPtr<capnp::word> allocateSegment(capnp::uint minimumSize) override;

  uint64_t getCallId() const { return callId; }
  capnp::MessageBuilder& message() { return *this; }
  // The payload's type as the typed layer set it, e.g. "Store.put$Params"; "" if unknown.
  kj::StringPtr typeName() const;
  kj::Maybe<capnp::Schema> type() const { return payloadSchema; }
  wire::Message::Builder root() { return getRoot<wire::Message>(); }
  // The message for Channel::send(): `message` itself (one the engine made: asWire()), as its
  // builder.
  static kj::Own<capnp::MallocMessageBuilder> release(kj::Own<OutgoingMessage> message);
  // What this message is, for a MessageTooLarge error: "the start of the call Store.put to actor
  // 'store' (...)", "the result of Store.get#3 for actor ...", "a stream item (Chunk) of ...".
  kj::String describe(Peer& peer);

private:
  Peer& peer;
  uint64_t callId;
  kj::StringPtr task;
  MethodKind startKind = MethodKind::CALL;
  uint64_t requestedWords = 0;
  size_t segments = 0;
  kj::Maybe<capnp::Schema> payloadSchema;
  wire::Payload::Builder payloadBuilder;  // last: made by initPayload(), which uses the above

  wire::Payload::Builder initPayload(wire::Message::Which which);
};

// "Store.put" for params or results of an interface method (capnp names them "Store.put$Params",
// "Store.put$Results"); nullptr for any other type name.
kj::Maybe<kj::String> methodOfPayloadType(kj::StringPtr typeName);

// "Store.put" for the params type of Store.put; "" if unknown (Peer::tasks()).
kj::String methodOfParams(kj::Maybe<capnp::Schema> params);

// The Payload a start, started, yield or return message carries.
wire::Payload::Reader payloadOf(wire::Message::Reader message);

// The kind of `message` as wire.capnp and docs/PROTOCOL.md name it ("start", "cancelTask"), for
// errors and logs: never its enum number.
kj::StringPtr messageName(wire::Message::Reader message);

// What is wrong with a received message's envelope (wire::Message, everything but the payload
// values), or nullptr if the engine can read all of it: every read it makes of the envelope
// through `reader`, within `reader`'s traversal limit (the walk's budget leaves room for
// ENVELOPE_READS of them, decode.h).
kj::Maybe<kj::String> checkEnvelope(capnp::MessageReader& reader);

// Whether getRoot<wire::Message>() can be called at all (a null root reads as the default).
bool hasStructRoot(capnp::MessageReader& reader);

// Downcasts a message the engine handed out (typed code only passes back what it received).
WireOutgoing& asWire(OutgoingMessage& message);

// Where a payload that fails its decode check is reported: the task it belongs to, while that
// task exists. Shared by the task and the payloads it received (a payload may outlive its task,
// e.g. a call's result); the task clears `route` when it ends.
class DecodeSink final : public kj::Refcounted {
public:
  explicit DecodeSink(PeerRoute& route) : route(route) {}
  kj::Maybe<PeerRoute&> route;
};

class WireIncoming final : public IncomingMessage {
public:
  // `payload` points into `reader`'s message; `sink`, if any, hears of a failed decode check.
  WireIncoming(kj::Own<capnp::MessageReader> reader, wire::Payload::Reader payload,
               kj::Maybe<DecodeSink&> sink = nullptr);

  capnp::AnyPointer::Reader payload() override { return payloadReader.getValue(); }
  void check(capnp::StructSchema expected) override;

private:
  kj::Own<capnp::MessageReader> reader;
  wire::Payload::Reader payloadReader;
  kj::Maybe<kj::Own<DecodeSink>> sink;
  uint64_t checkedType = 0;  // the type the payload was last found to decode as
};

}  // namespace harrow
