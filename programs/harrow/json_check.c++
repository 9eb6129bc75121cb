#include "programs/harrow/json_check.h"

#include <kj/debug.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>

namespace harrow::cli {
namespace {

using Json = capnp::JsonValue;

kj::StringPtr shortName(capnp::Schema schema) {
  kj::StringPtr name = schema.getProto().getDisplayName();
  KJ_IF_MAYBE(colon, name.findLast(':')) name = name.slice(*colon + 1);
  return name;
}

// What a JSON value is, for the message: `"x"` (a string), `true`, `[...]`.
kj::String shown(Json::Reader value) {
  switch (value.which()) {
    case Json::NULL_: return kj::str("null");
    case Json::BOOLEAN: return kj::str(value.getBoolean() ? "true" : "false");
    case Json::NUMBER: return kj::str(value.getNumber());
    case Json::STRING: return kj::str("the string \"", value.getString(), "\"");
    case Json::ARRAY: return kj::str("an array");
    case Json::OBJECT: return kj::str("an object");
    case Json::CALL: return kj::str("a call");
  }
  return kj::str("a value");
}

bool isIntegral(double n, double lowest, double highest) {
  return isfinite(n) && n == floor(n) && n >= lowest && n <= highest;
}

// An integer of the type: a number, or a string holding one (the codec writes 64-bit integers
// as strings, and what it writes must read back).
bool integerFits(Json::Reader value, capnp::schema::Type::Which which) {
  using W = capnp::schema::Type;
  bool isSigned = which == W::INT8 || which == W::INT16 || which == W::INT32 || which == W::INT64;
  int bits = which == W::INT8 || which == W::UINT8     ? 8
             : which == W::INT16 || which == W::UINT16 ? 16
             : which == W::INT32 || which == W::UINT32 ? 32
                                                       : 64;
  double lowest = isSigned ? -ldexp(1, bits - 1) : 0;
  double highest = isSigned ? ldexp(1, bits - 1) - 1 : ldexp(1, bits) - 1;
  if (value.isNumber()) return isIntegral(value.getNumber(), lowest, highest);
  if (!value.isString() || bits != 64) return false;
  kj::StringPtr text = value.getString();
  if (text.size() == 0) return false;
  char* end = nullptr;
  errno = 0;
  if (isSigned) {
    (void)strtoll(text.cStr(), &end, 10);
  } else {
    if (text[0] == '-') return false;
    (void)strtoull(text.cStr(), &end, 10);
  }
  return errno == 0 && *end == '\0';
}

kj::Maybe<kj::String> mismatchAt(Json::Reader value, capnp::Type type, kj::StringPtr path);

kj::Maybe<kj::String> structMismatch(Json::Reader value, capnp::StructSchema type,
                                     kj::StringPtr path) {
  if (!value.isObject()) {
    return path.size() == 0
        ? kj::str("the document is ", shown(value), ", not a JSON object")
        : kj::str("'", path, "' is of type ", typeName(type), ", not ", shown(value));
  }
  kj::Maybe<kj::StringPtr> unionMember;
  for (auto member : value.getObject()) {
    kj::StringPtr name = member.getName();
    auto where = path.size() == 0 ? kj::str(name) : kj::str(path, ".", name);
    KJ_IF_MAYBE(field, type.findFieldByName(name)) {
      if (field->getProto().getDiscriminantValue() != capnp::schema::Field::NO_DISCRIMINANT) {
        KJ_IF_MAYBE(other, unionMember) {
          return kj::str("'", where, "' and '", *other, "' are members of one union: set one");
        }
        unionMember = name;
      }
      KJ_IF_MAYBE(problem, mismatchAt(member.getValue(), field->getType(), where)) {
        return kj::mv(*problem);
      }
    } else {
      kj::Vector<kj::StringPtr> names;
      for (auto f : type.getFields()) names.add(f.getProto().getName());
      return kj::str("'", where, "' is not a field of ", typeName(type), " (its fields: ",
                     names.empty() ? kj::str("none") : kj::strArray(names, ", "), ")");
    }
  }
  return nullptr;
}

kj::Maybe<kj::String> mismatchAt(Json::Reader value, capnp::Type type, kj::StringPtr path) {
  using W = capnp::schema::Type;
  auto wrong = [&]() {
    return kj::str("'", path, "' is of type ", typeName(type), ", not ", shown(value));
  };
  bool isNull = value.isNull();
  switch (type.which()) {
    case W::VOID:
      if (!isNull) return wrong();
      return nullptr;
    case W::BOOL:
      if (!value.isBoolean()) return wrong();
      return nullptr;
    case W::INT8: case W::INT16: case W::INT32: case W::INT64:
    case W::UINT8: case W::UINT16: case W::UINT32: case W::UINT64:
      if (!integerFits(value, type.which())) {
        return kj::str(wrong(), value.isNumber() ? " (not an integer in its range)" : "");
      }
      return nullptr;
    case W::FLOAT32: case W::FLOAT64:
      if (value.isNumber() || isNull) return nullptr;
      if (value.isString()) {
        kj::StringPtr s = value.getString();
        if (s == "NaN" || s == "Infinity" || s == "-Infinity") return nullptr;
      }
      return wrong();
    case W::TEXT:
      if (!value.isString() && !isNull) return wrong();
      return nullptr;
    case W::DATA:
      if (isNull) return nullptr;
      if (!value.isArray()) return wrong();
      for (auto byte : value.getArray()) {
        if (!byte.isNumber() || !isIntegral(byte.getNumber(), 0, 255)) {
          return kj::str(wrong(), " (Data is an array of bytes, 0 to 255)");
        }
      }
      return nullptr;
    case W::LIST: {
      if (isNull) return nullptr;
      if (!value.isArray()) return wrong();
      auto element = type.asList().getElementType();
      uint i = 0;
      for (auto item : value.getArray()) {
        KJ_IF_MAYBE(problem, mismatchAt(item, element, kj::str(path, "[", i++, "]"))) {
          return kj::mv(*problem);
        }
      }
      return nullptr;
    }
    case W::ENUM: {
      auto schema = type.asEnum();
      if (value.isString() && schema.findEnumerantByName(value.getString()) != nullptr) {
        return nullptr;
      }
      if (value.isNumber() && isIntegral(value.getNumber(), 0, 65535)) return nullptr;
      kj::Vector<kj::StringPtr> names;
      for (auto e : schema.getEnumerants()) names.add(e.getProto().getName());
      return kj::str(wrong(), " (one of: ", kj::strArray(names, ", "), ")");
    }
    case W::STRUCT:
      if (isNull) return nullptr;
      return structMismatch(value, type.asStruct(), path);
    case W::INTERFACE:
    case W::ANY_POINTER:
      return nullptr;  // the codec's to refuse
  }
  return nullptr;
}

}  // namespace

kj::String typeName(capnp::Type type) {
  using W = capnp::schema::Type;
  switch (type.which()) {
    case W::VOID: return kj::str("Void");
    case W::BOOL: return kj::str("Bool");
    case W::INT8: return kj::str("Int8");
    case W::INT16: return kj::str("Int16");
    case W::INT32: return kj::str("Int32");
    case W::INT64: return kj::str("Int64");
    case W::UINT8: return kj::str("UInt8");
    case W::UINT16: return kj::str("UInt16");
    case W::UINT32: return kj::str("UInt32");
    case W::UINT64: return kj::str("UInt64");
    case W::FLOAT32: return kj::str("Float32");
    case W::FLOAT64: return kj::str("Float64");
    case W::TEXT: return kj::str("Text");
    case W::DATA: return kj::str("Data");
    case W::LIST: return kj::str("List(", typeName(type.asList().getElementType()), ")");
    case W::ENUM: return kj::str(shortName(type.asEnum()));
    case W::STRUCT: return kj::str(shortName(type.asStruct()));
    case W::INTERFACE: return kj::str(shortName(type.asInterface()));
    case W::ANY_POINTER: return kj::str("AnyPointer");
  }
  return kj::str("?");
}

kj::Maybe<kj::String> jsonMismatch(capnp::JsonValue::Reader value, capnp::StructSchema type) {
  return structMismatch(value, type, "");
}

}  // namespace harrow::cli
