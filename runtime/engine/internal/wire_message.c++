#include "runtime/engine/internal/wire_message.h"

#include <harrow/engine/remote_error.h>

#include <kj/debug.h>

namespace harrow {

WireOutgoing& asWire(OutgoingMessage& message) {
  auto* wire = dynamic_cast<WireOutgoing*>(&message);
  KJ_REQUIRE(wire != nullptr, "message was not created by this channel");
  return *wire;
}

bool WireIncoming::holds(uint64_t typeId) {
  auto value = payloadReader.getValue();
  return payloadReader.getTypeId() == typeId &&
         (value.isNull() || value.getPointerType() == capnp::PointerType::STRUCT);
}

void WireIncoming::throwWrongType(capnp::Schema expected) {
  kj::throwFatalException(protocolViolation(kj::str(
      "payload has type id ", kj::hex(payloadReader.getTypeId()), ", expected ",
      expected.getShortDisplayName(), " (", kj::hex(expected.getProto().getId()), ")")));
}

}  // namespace harrow
