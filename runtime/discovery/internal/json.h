// NOT API: reading etcd's JSON (capnp's JsonValue tree), shared by the etcd client
// (etcd_client.c++) and the etcd backend (etcd.c++), which both decode what etcd's HTTP/JSON
// gateway sends or stores.
//
//   using namespace harrow::json;
//   auto json = parseJson(codec, text);
//   KJ_IF_MAYBE(header, field(json->root, "header")) revision = intField(*header, "revision");
//
// Absent fields read as empty, 0 or false: etcd leaves out fields at their default
// value (proto3's JSON mapping), so absence is the normal case, not an error.

#pragma once

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <kj/string.h>

namespace harrow::json {

using capnp::JsonValue;

// A decoded JSON document (capnp's JsonValue tree).
struct Json {
  capnp::MallocMessageBuilder message;
  JsonValue::Reader root;
};

// Throws for text that is not JSON.
kj::Own<Json> parseJson(const capnp::JsonCodec& codec, kj::ArrayPtr<const char> text);

// The member `name` of `object`; nullptr if absent or `object` is no object.
kj::Maybe<JsonValue::Reader> field(JsonValue::Reader object, kj::StringPtr name);

// etcd's int64s are JSON strings ("12"); 0 if absent.
int64_t intField(JsonValue::Reader object, kj::StringPtr name);

kj::StringPtr textField(JsonValue::Reader object, kj::StringPtr name);

bool boolField(JsonValue::Reader object, kj::StringPtr name);

}  // namespace harrow::json
