// The engine's OutgoingMessage / IncomingMessage: one wire::Message and the Payload inside it.

#pragma once

#include <harrow/typed/task.h>

#include <capnp/message.h>

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

// Downcasts a message the engine handed out (typed code only passes back what it received).
WireOutgoing& asWire(OutgoingMessage& message);

class WireIncoming final : public IncomingMessage {
public:
  WireIncoming(kj::Own<capnp::MessageReader> reader, wire::Payload::Reader payload)
      : reader(kj::mv(reader)), payloadReader(payload) {}

  capnp::AnyPointer::Reader payload() override { return payloadReader.getValue(); }
  bool holds(uint64_t typeId) override;
  [[noreturn]] void throwWrongType(capnp::Schema expected) override;

private:
  kj::Own<capnp::MessageReader> reader;
  wire::Payload::Reader payloadReader;
};

}  // namespace harrow
