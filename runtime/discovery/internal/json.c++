#include "runtime/discovery/internal/json.h"

namespace harrow::json {

kj::Own<Json> parseJson(const capnp::JsonCodec& codec, kj::ArrayPtr<const char> text) {
  auto json = kj::heap<Json>();
  auto builder = json->message.initRoot<JsonValue>();
  codec.decodeRaw(text, builder);
  json->root = builder.asReader();
  return json;
}

kj::Maybe<JsonValue::Reader> field(JsonValue::Reader object, kj::StringPtr name) {
  if (!object.isObject()) return nullptr;
  for (auto f : object.getObject()) {
    if (f.getName() == name) return f.getValue();
  }
  return nullptr;
}

int64_t intField(JsonValue::Reader object, kj::StringPtr name) {
  KJ_IF_MAYBE (value, field(object, name)) {
    if (value->isString()) return value->getString().parseAs<int64_t>();
    if (value->isNumber()) return static_cast<int64_t>(value->getNumber());
  }
  return 0;
}

kj::StringPtr textField(JsonValue::Reader object, kj::StringPtr name) {
  KJ_IF_MAYBE (value, field(object, name)) {
    if (value->isString()) return value->getString();
  }
  return "";
}

bool boolField(JsonValue::Reader object, kj::StringPtr name) {
  KJ_IF_MAYBE (value, field(object, name)) {
    if (value->isBoolean()) return value->getBoolean();
  }
  return false;
}

}  // namespace harrow::json
