#include "runtime/engine/internal/decode.h"

#include <capnp/dynamic.h>
#include <capnp/serialize.h>
#include <kj/debug.h>
#include <kj/vector.h>

namespace harrow {
namespace {

void checkStructValue(capnp::DynamicStruct::Reader value);

// Reading a pointer field through capnp's dynamic API goes through the same layout code as the
// generated readers (WireHelpers::readStructPointer, readListPointer, ...), so a field that reads
// here reads there.
void checkValue(capnp::DynamicValue::Reader value) {
  switch (value.getType()) {
    case capnp::DynamicValue::STRUCT:
      checkStructValue(value.as<capnp::DynamicStruct>());
      return;
    case capnp::DynamicValue::LIST:
      for (auto element : value.as<capnp::DynamicList>()) checkValue(element);
      return;
    default:
      return;  // primitives, enums, Text and Data were checked by get(); AnyPointer is opaque
  }
}

void checkField(capnp::DynamicStruct::Reader value, capnp::StructSchema::Field field) {
  switch (field.getType().which()) {
    case capnp::schema::Type::TEXT:
    case capnp::schema::Type::DATA:
    case capnp::schema::Type::LIST:
    case capnp::schema::Type::STRUCT:  // also groups, which read from the same struct
      checkValue(value.get(field));
      return;
    default:
      // Data-section fields read as their default when beyond a short struct; AnyPointer is
      // checked by whoever reads it as a type; interfaces never cross a channel (the channel
      // refuses capability pointers).
      return;
  }
}

void checkStructValue(capnp::DynamicStruct::Reader value) {
  for (auto field : value.getSchema().getNonUnionFields()) checkField(value, field);
  KJ_IF_MAYBE(active, value.which()) checkField(value, *active);
}

}  // namespace

kj::Maybe<kj::String> checkStruct(capnp::StructSchema schema, capnp::AnyPointer::Reader value) {
  kj::Maybe<kj::String> problem;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    if (value.isNull()) return;
    if (value.getPointerType() != capnp::PointerType::STRUCT) {
      problem = kj::str("expected a ", schema.getShortDisplayName(), " struct, got a ",
                        value.getPointerType() == capnp::PointerType::LIST ? "list" : "capability",
                        " pointer");
      return;
    }
    checkStructValue(value.getAs<capnp::DynamicStruct>(schema));
  })) {
    problem = kj::str(schema.getShortDisplayName(), " does not decode: ",
                      exception->getDescription());
  }
  return kj::mv(problem);
}

kj::Own<capnp::MessageReader> decodeReader(capnp::MessageReader& message,
                                           capnp::ReaderOptions options) {
  kj::Vector<kj::ArrayPtr<const capnp::word>> segments;
  for (unsigned id = 0;; ++id) {
    auto segment = message.getSegment(id);
    if (segment == nullptr) break;
    segments.add(segment);
  }
  auto array = segments.releaseAsArray();
  // The walk reads each word of a well-formed message about once. What a frame can make it do
  // beyond that (pointers that alias one object, long lists of zero-sized elements, which cost
  // no bytes) is amplification: bounded here by the frame's own size, so that a few hundred
  // bytes cannot buy a walk over the whole configured traversal limit.
  uint64_t words = 0;
  for (auto segment : array) words += segment.size();
  options.traversalLimitInWords =
      kj::min(options.traversalLimitInWords, AMPLIFICATION * words + SLACK_WORDS);
  auto reader = kj::heap<capnp::SegmentArrayMessageReader>(array, options);
  return reader.attach(kj::mv(array));
}

}  // namespace harrow
