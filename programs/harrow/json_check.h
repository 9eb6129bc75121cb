// The JSON a user hands `harrow call` (params, and the lines a context reads from standard
// input), checked against the Cap'n Proto type it must fill before capnp's codec sees it.
//
//   KJ_IF_MAYBE(problem, jsonMismatch(parsed, paramsType)) fail(EXIT_USAGE, *problem);
//
// Why: capnp's JsonCodec skips fields it does not know and fills what it can, so a typo
// (`{"m": 1}` for `add(n)`) ran `add(0)` and exited 0. Here every object member must be a field
// of its struct, every value of its field's type (an integer in range for an integer, a string
// for Text, an array for a list, an object for a struct or group, one member per union), and the
// document itself an object. The problem names the field by its path (`failAt[1]`, `inner.n`).
// What the codec writes is accepted back: Int64/UInt64 as strings, NaN/Infinity as strings or
// null, enums by name or number, Data as an array of bytes, null for any pointer.

#pragma once

#include <capnp/compat/json.h>
#include <capnp/schema.h>
#include <kj/string.h>

namespace harrow::cli {

// The first way `value` is not a `type` in JSON, naming the field; nullptr if it is one.
kj::Maybe<kj::String> jsonMismatch(capnp::JsonValue::Reader value, capnp::StructSchema type);

// A type as the schema spells it: "Int64", "List(Text)", "Counter.add$Params".
kj::String typeName(capnp::Type type);

}  // namespace harrow::cli
