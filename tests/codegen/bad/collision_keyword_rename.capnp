# `delete` is a C++ keyword, so capnpc-harrow emits `delete_`; a second method renamed to
# `delete_` with $Cxx.name would then be declared twice.
# expect: collision_keyword_rename.capnp: error: interface Store, method remove @1: generates the C++ name "delete_" (its handler and portal method), which method delete @0 also generates
# expect: collision_keyword_rename.capnp: error: interface Store, method remove @1: generates the C++ name "DeleteCall" (its handler's call type), which method delete @0 also generates
@0xd1f4a6b2c3e5f701;

using Harrow = import "/harrow/actor.capnp";
using Cxx = import "/capnp/c++.capnp";

interface Store $Harrow.actor {
  delete @0 (key :Text) -> ();
  remove @1 (key :Text) -> () $Cxx.name("delete_");
}
