#include "runtime/engine/internal/decode.h"

#include <capnp/dynamic.h>
#include <capnp/serialize.h>
#include <kj/map.h>
#include <kj/debug.h>
#include <kj/vector.h>

namespace harrow {
namespace {

// What checkStruct() does, compiled once per struct type: which pointer slots to read, as what.
// Reading a schema through capnp's dynamic API costs a schema-node decode per field per message
// (Field::getType(), getNonUnionFields()); a plan is built from the same schema once per thread
// and then checks each message with the reads the generated readers do (AnyPointer::getAs<T>
// goes through the same PointerHelpers<T>, so a pointer that reads here reads there).

struct StructPlan;

struct ValueCheck {
  enum Kind : uint8_t {
    NONE,            // primitives, enums, AnyPointer, interfaces: nothing to read
    TEXT,
    DATA,
    STRUCT,          // plan
    LIST_VOID,
    LIST_BIT,
    LIST_BYTE,
    LIST_TWO_BYTES,  // also enums
    LIST_FOUR_BYTES,
    LIST_EIGHT_BYTES,
    LIST_TEXT,
    LIST_DATA,
    LIST_STRUCT,     // plan
    LIST_POINTERS,   // lists of lists, of AnyPointer, of interfaces: element checks each
  };
  Kind kind = NONE;
  const StructPlan* plan = nullptr;
  kj::Own<ValueCheck> element;
  // LIST_STRUCT and LIST_POINTERS: read through DynamicList, which asks the layout code for the
  // same element size as the generated List<T> reader (capnp 0.9 has no AnyPointer::getAs of
  // List<AnyStruct> or List<AnyPointer>).
  capnp::ListSchema list;
};

struct Slot {
  uint32_t pointer = 0;               // the pointer's index, unless this is a group
  const StructPlan* group = nullptr;  // a group: read from the same struct
  ValueCheck value;
};

struct StructPlan {
  kj::Vector<Slot> fields;                      // the fields outside the union
  kj::Maybe<uint32_t> discriminantOffset;       // in 16-bit units, if the struct has a union
  kj::Vector<kj::Maybe<Slot>> byDiscriminant;   // the union's members that need a check
};

class Plans {
public:
  // The plan for `schema`, built on first use. Recursive types refer to their own plan, which
  // is registered before it is filled in.
  const StructPlan& get(capnp::StructSchema schema) {
    KJ_IF_MAYBE(plan, plans.find(schema)) return **plan;
    auto owned = kj::heap<StructPlan>();
    StructPlan& plan = *owned;
    plans.insert(schema, kj::mv(owned));
    for (auto field : schema.getNonUnionFields()) {
      auto slot = slotFor(field);
      if (needed(slot)) plan.fields.add(kj::mv(slot));
    }
    auto unionFields = schema.getUnionFields();
    if (unionFields.size() > 0) {
      plan.discriminantOffset = schema.getProto().getStruct().getDiscriminantOffset();
      for (auto field : unionFields) {
        uint16_t value = field.getProto().getDiscriminantValue();
        while (plan.byDiscriminant.size() <= value) plan.byDiscriminant.add(nullptr);
        auto slot = slotFor(field);
        if (needed(slot)) plan.byDiscriminant[value] = kj::mv(slot);
      }
    }
    return plan;
  }

private:
  kj::HashMap<capnp::StructSchema, kj::Own<StructPlan>> plans;

  static bool needed(const Slot& slot) {
    return slot.group != nullptr || slot.value.kind != ValueCheck::NONE;
  }

  Slot slotFor(capnp::StructSchema::Field field) {
    Slot slot;
    auto proto = field.getProto();
    if (proto.isGroup()) {
      slot.group = &get(field.getType().asStruct());
    } else {
      slot.pointer = proto.getSlot().getOffset();  // in pointers, for the kinds checked
      slot.value = checkFor(field.getType());
    }
    return slot;
  }

  ValueCheck checkFor(capnp::Type type) {
    ValueCheck check;
    switch (type.which()) {
      case capnp::schema::Type::TEXT: check.kind = ValueCheck::TEXT; break;
      case capnp::schema::Type::DATA: check.kind = ValueCheck::DATA; break;
      case capnp::schema::Type::STRUCT:
        check.kind = ValueCheck::STRUCT;
        check.plan = &get(type.asStruct());
        break;
      case capnp::schema::Type::LIST: check = listCheckFor(type.asList()); break;
      default: break;  // primitives, enums, AnyPointer, interfaces
    }
    return check;
  }

  ValueCheck listCheckFor(capnp::ListSchema list) {
    ValueCheck check;
    check.list = list;
    capnp::Type element = list.getElementType();
    switch (element.which()) {
      case capnp::schema::Type::VOID: check.kind = ValueCheck::LIST_VOID; break;
      case capnp::schema::Type::BOOL: check.kind = ValueCheck::LIST_BIT; break;
      case capnp::schema::Type::INT8:
      case capnp::schema::Type::UINT8: check.kind = ValueCheck::LIST_BYTE; break;
      case capnp::schema::Type::INT16:
      case capnp::schema::Type::UINT16:
      case capnp::schema::Type::ENUM: check.kind = ValueCheck::LIST_TWO_BYTES; break;
      case capnp::schema::Type::INT32:
      case capnp::schema::Type::UINT32:
      case capnp::schema::Type::FLOAT32: check.kind = ValueCheck::LIST_FOUR_BYTES; break;
      case capnp::schema::Type::INT64:
      case capnp::schema::Type::UINT64:
      case capnp::schema::Type::FLOAT64: check.kind = ValueCheck::LIST_EIGHT_BYTES; break;
      case capnp::schema::Type::TEXT: check.kind = ValueCheck::LIST_TEXT; break;
      case capnp::schema::Type::DATA: check.kind = ValueCheck::LIST_DATA; break;
      case capnp::schema::Type::STRUCT:
        check.kind = ValueCheck::LIST_STRUCT;
        check.plan = &get(element.asStruct());
        break;
      case capnp::schema::Type::LIST:
      case capnp::schema::Type::ANY_POINTER:
      case capnp::schema::Type::INTERFACE:
        check.kind = ValueCheck::LIST_POINTERS;
        check.element = kj::heap(checkFor(element));
        break;
    }
    return check;
  }
};

void checkStructWith(const StructPlan& plan, capnp::AnyStruct::Reader value);

void checkValueWith(const ValueCheck& check, capnp::AnyPointer::Reader pointer) {
  switch (check.kind) {
    case ValueCheck::NONE: return;
    case ValueCheck::TEXT: pointer.getAs<capnp::Text>(); return;
    case ValueCheck::DATA: pointer.getAs<capnp::Data>(); return;
    case ValueCheck::STRUCT: checkStructWith(*check.plan, pointer.getAs<capnp::AnyStruct>()); return;
    case ValueCheck::LIST_VOID: pointer.getAs<capnp::List<capnp::Void>>(); return;
    case ValueCheck::LIST_BIT: pointer.getAs<capnp::List<bool>>(); return;
    case ValueCheck::LIST_BYTE: pointer.getAs<capnp::List<uint8_t>>(); return;
    case ValueCheck::LIST_TWO_BYTES: pointer.getAs<capnp::List<uint16_t>>(); return;
    case ValueCheck::LIST_FOUR_BYTES: pointer.getAs<capnp::List<uint32_t>>(); return;
    case ValueCheck::LIST_EIGHT_BYTES: pointer.getAs<capnp::List<uint64_t>>(); return;
    case ValueCheck::LIST_TEXT:
      for (auto text : pointer.getAs<capnp::List<capnp::Text>>()) (void)text;
      return;
    case ValueCheck::LIST_DATA:
      for (auto data : pointer.getAs<capnp::List<capnp::Data>>()) (void)data;
      return;
    case ValueCheck::LIST_STRUCT: {
      auto list = pointer.getAs<capnp::DynamicList>(check.list)
                      .as<capnp::AnyList>()
                      .as<capnp::List<capnp::AnyStruct>>();
      // Every element has the same layout: without slots to read, the list's own read checked
      // it all (and a list of zero-sized structs costs no walk).
      if (check.plan->fields.size() == 0 && check.plan->discriminantOffset == nullptr) return;
      for (auto element : list) checkStructWith(*check.plan, element);
      return;
    }
    case ValueCheck::LIST_POINTERS: {
      auto list = pointer.getAs<capnp::DynamicList>(check.list)
                      .as<capnp::AnyList>()
                      .as<capnp::List<capnp::AnyPointer>>();
      if (check.element->kind == ValueCheck::NONE) return;
      for (auto element : list) checkValueWith(*check.element, element);
      return;
    }
  }
}

void checkSlot(const Slot& slot, capnp::AnyStruct::Reader value,
               capnp::List<capnp::AnyPointer>::Reader pointers) {
  if (slot.group != nullptr) {
    checkStructWith(*slot.group, value);
  } else if (slot.pointer < pointers.size()) {  // beyond the section: null, the default
    checkValueWith(slot.value, pointers[slot.pointer]);
  }
}

void checkStructWith(const StructPlan& plan, capnp::AnyStruct::Reader value) {
  auto pointers = value.getPointerSection();
  for (auto& slot : plan.fields) checkSlot(slot, value, pointers);
  KJ_IF_MAYBE(offset, plan.discriminantOffset) {
    // Beyond a short data section the discriminant reads as 0, like any other field.
    auto data = value.getDataSection();
    uint16_t discriminant = 0;
    if ((*offset + 1) * 2 <= data.size()) {
      discriminant = data[*offset * 2] | (uint16_t(data[*offset * 2 + 1]) << 8);
    }
    // A discriminant this schema does not know (a newer peer's member) has nothing to check.
    if (discriminant < plan.byDiscriminant.size()) {
      KJ_IF_MAYBE(slot, plan.byDiscriminant[discriminant]) checkSlot(*slot, value, pointers);
    }
  }
}

}  // namespace

kj::Maybe<kj::String> checkStruct(capnp::StructSchema schema, capnp::AnyPointer::Reader value) {
  // Per thread: an actor is one thread, and the plans are built from immutable schemas.
  thread_local Plans plans;
  kj::Maybe<kj::String> problem;
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() {
    if (value.isNull()) return;
    if (value.getPointerType() != capnp::PointerType::STRUCT) {
      problem = kj::str("expected a ", schema.getShortDisplayName(), " struct, got a ",
                        value.getPointerType() == capnp::PointerType::LIST ? "list" : "capability",
                        " pointer");
      return;
    }
    checkStructWith(plans.get(schema), value.getAs<capnp::AnyStruct>());
  })) {
    problem = kj::str(schema.getShortDisplayName(), " does not decode: ",
                      exception->getDescription());
  }
  return kj::mv(problem);
}

namespace {

capnp::ReaderOptions withBudget(capnp::ReaderOptions options, uint64_t words, uint64_t reads) {
  // The walk reads each word of a well-formed message about once. What a frame can make it do
  // beyond that (pointers that alias one object, long lists of zero-sized elements, which cost
  // no bytes) is amplification: bounded here by the frame's own size, so that a few hundred
  // bytes cannot buy a walk over the whole configured traversal limit.
  options.traversalLimitInWords =
      kj::min(options.traversalLimitInWords / reads, AMPLIFICATION * words + SLACK_WORDS);
  return options;
}

}  // namespace

_::DecodeSegments::DecodeSegments(capnp::MessageReader& message) {
  size_t count = 0;
  while (message.getSegment(count) != nullptr) ++count;
  kj::ArrayPtr<kj::ArrayPtr<const capnp::word>> slots;
  if (count <= INLINE) {
    slots = kj::arrayPtr(inlineSegments, count);
  } else {
    heapSegments = kj::heapArray<kj::ArrayPtr<const capnp::word>>(count);
    slots = heapSegments;
  }
  for (size_t id = 0; id < count; ++id) {
    slots[id] = message.getSegment(id);
    words += slots[id].size();
  }
  segments = slots;
}

DecodeReader::DecodeReader(capnp::MessageReader& message, capnp::ReaderOptions options,
                           uint64_t reads)
    : DecodeSegments(message),
      SegmentArrayMessageReader(DecodeSegments::segments,
                                withBudget(options, DecodeSegments::words, reads)) {}

kj::Own<capnp::MessageReader> decodeReader(capnp::MessageReader& message,
                                           capnp::ReaderOptions options, uint64_t reads) {
  return kj::heap<DecodeReader>(message, options, reads);
}

}  // namespace harrow
