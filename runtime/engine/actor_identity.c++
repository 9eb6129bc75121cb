#include <harrow/engine/actor_identity.h>

#include <kj/debug.h>
#include <kj/encoding.h>

#include <sys/random.h>

namespace harrow {

ActorIdentity ActorIdentity::random(kj::StringPtr name) {
  auto uuid = kj::heapArray<kj::byte>(16);
  KJ_SYSCALL(getrandom(uuid.begin(), uuid.size(), 0));
  return {kj::heapString(name), kj::mv(uuid)};
}

ActorIdentity ActorIdentity::fromWire(wire::ActorId::Reader id) {
  return {kj::heapString(id.getName()), kj::heapArray(id.getUuid())};
}

void ActorIdentity::toWire(wire::ActorId::Builder id) const {
  id.setName(name);
  id.setUuid(uuid);
}

ActorIdentity ActorIdentity::clone() const {
  return {kj::heapString(name), kj::heapArray(uuid.asPtr())};
}

kj::String ActorIdentity::toString() const {
  return kj::str("'", name, "' (", kj::encodeHex(uuid), ")");
}

}  // namespace harrow
