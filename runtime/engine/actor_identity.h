// Who an actor is: a name (not unique) and a 16-byte random uuid (unique), as hellos, error
// origins and relay paths carry it on the wire (wire::ActorId).

#pragma once

#include <harrow/wire.capnp.h>
#include <kj/array.h>
#include <kj/string.h>

namespace harrow {

// A named actor instance: names need not be unique; the 16-byte uuid is.
struct ActorIdentity {
  kj::String name;
  kj::Array<kj::byte> uuid;

  static ActorIdentity random(kj::StringPtr name);
  static ActorIdentity fromWire(wire::ActorId::Reader id);
  void toWire(wire::ActorId::Builder id) const;
  ActorIdentity clone() const;
  // "name (uuid-hex)"
  kj::String toString() const;
};

}  // namespace harrow
