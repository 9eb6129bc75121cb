// The engine's OutgoingMessage / IncomingMessage: one wire::Message and the Payload inside it.

#pragma once

#include <harrow/engine/peer.h>
#include <harrow/typed/task.h>

#include <capnp/message.h>
#include <kj/refcount.h>

namespace harrow {

class WireOutgoing final : public OutgoingMessage {
public:
  WireOutgoing(kj::Own<capnp::MallocMessageBuilder> builder, uint64_t callId,
               wire::Payload::Builder payload)
      : builder(kj::mv(builder)), callId(callId), payloadBuilder(payload) {}

  capnp::AnyPointer::Builder payload() override { return payloadBuilder.getValue(); }
  void setTypeId(uint64_t typeId) override { payloadBuilder.setTypeId(typeId); }
  void setType(capnp::Schema schema) override {
    setTypeId(schema.getProto().getId());
    payloadSchema = schema;
  }

  uint64_t getCallId() const { return callId; }
  capnp::MessageBuilder& message() { return *builder; }
  // The payload's type as the typed layer set it, e.g. "Store.put$Params"; "" if unknown.
  kj::StringPtr typeName() const;
  kj::Maybe<capnp::Schema> type() const { return payloadSchema; }
  wire::Message::Builder root() { return builder->getRoot<wire::Message>(); }
  kj::Own<capnp::MallocMessageBuilder> release() { return kj::mv(builder); }

private:
  kj::Own<capnp::MallocMessageBuilder> builder;
  uint64_t callId;
  wire::Payload::Builder payloadBuilder;
  kj::Maybe<capnp::Schema> payloadSchema;
};

// "Store.put" for params or results of an interface method (capnp names them "Store.put$Params",
// "Store.put$Results"); nullptr for any other type name.
kj::Maybe<kj::String> methodOfPayloadType(kj::StringPtr typeName);

// "Store.put" for the params type of Store.put; "" if unknown (Peer::tasks()).
kj::String methodOfParams(kj::Maybe<capnp::Schema> params);

// The Payload a start, started, yield or return message carries.
wire::Payload::Reader payloadOf(wire::Message::Reader message);

// Downcasts a message the engine handed out (typed code only passes back what it received).
// What is wrong with a received message's envelope (wire::Message, everything but the payload
// values), or nullptr if the engine can read all of it.
kj::Maybe<kj::String> checkEnvelope(capnp::MessageReader& reader);

// Whether getRoot<wire::Message>() can be called at all (a null root reads as the default).
bool hasStructRoot(capnp::MessageReader& reader);

WireOutgoing& asWire(OutgoingMessage& message);

// Where a payload that fails its decode check is reported: the task it belongs to, while that
// task exists. Shared by the task and the payloads it received (a payload may outlive its task,
// e.g. a call's result); the task clears `route` when it ends.
class DecodeSink final : public kj::Refcounted {
public:
  explicit DecodeSink(Peer::Route& route) : route(route) {}
  kj::Maybe<Peer::Route&> route;
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
