# A method renamed `get_` for C++ (stripped of its trailing `_`, as for keywords, it is `Get`)
# beside a method `get`: the handlers' call types and stream aliases would be declared twice.
# expect: collision_aliases.capnp: error: interface Feed, method other @1: generates the C++ name "GetCall" (its handler's call type), which method get @0 also generates
# expect: collision_aliases.capnp: error: interface Feed, method other @1: generates the C++ name "GetStream" (its stream type), which method get @0 also generates
@0xd1f4a6b2c3e5f703;

using Harrow = import "/harrow/actor.capnp";
using Cxx = import "/capnp/c++.capnp";

interface Feed $Harrow.actor {
  get @0 () -> () $Harrow.stream(item = "Item");
  other @1 () -> () $Harrow.stream(item = "Item") $Cxx.name("get_");
  struct Item { value @0 :UInt32; }
}
