#include "runtime/engine/internal/wire_message.h"

#include <harrow/engine/remote_error.h>

#include <kj/debug.h>

namespace harrow {

WireOutgoing& asWire(OutgoingMessage& message) {
  auto* wire = dynamic_cast<WireOutgoing*>(&message);
  KJ_REQUIRE(wire != nullptr, "message was not created by this channel");
  return *wire;
}

kj::StringPtr WireOutgoing::typeName() const {
  KJ_IF_MAYBE(schema, payloadSchema) {
    // The display name is "path/file.capnp:Outer.Inner"; the part after the file names the type.
    kj::StringPtr name = schema->getProto().getDisplayName();
    KJ_IF_MAYBE(colon, name.findLast(':')) return name.slice(*colon + 1);
    return name;
  }
  return "";
}

kj::Maybe<kj::String> methodOfPayloadType(kj::StringPtr typeName) {
  for (kj::StringPtr suffix : {"$Params"_kj, "$Results"_kj}) {
    if (typeName.endsWith(suffix)) {
      return kj::heapString(typeName.begin(), typeName.size() - suffix.size());
    }
  }
  return nullptr;
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
