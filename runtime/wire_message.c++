#include "runtime/wire_message.h"

#include "runtime/remote_error.h"

#include <kj/debug.h>

namespace harrow {

WireOutgoing& asWire(OutgoingMessage& message) {
  auto* wire = dynamic_cast<WireOutgoing*>(&message);
  KJ_REQUIRE(wire != nullptr, "message was not created by this channel");
  return *wire;
}

void WireIncoming::checkTypeId(uint64_t expected, const char* expectedName) {
  uint64_t actual = payloadReader.getTypeId();
  if (actual != expected) {
    kj::throwFatalException(protocolViolation(kj::str(
        "payload has type id ", kj::hex(actual), ", expected ", expectedName, " (",
        kj::hex(expected), ")")));
  }
  if (payloadReader.getValue().getPointerType() != capnp::PointerType::STRUCT &&
      !payloadReader.getValue().isNull()) {
    kj::throwFatalException(protocolViolation(kj::str("payload is not a struct: ", expectedName)));
  }
}

}  // namespace harrow
