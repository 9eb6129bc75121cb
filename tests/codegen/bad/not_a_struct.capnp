# Annotation names must resolve to structs: not enums, interfaces, consts or annotations.
# expect: not_a_struct.capnp: error: interface Painter, method colors @0: item = "Color": names enum Color, not a struct
# expect: not_a_struct.capnp: error: interface Painter, method talk @1: started = "Painter": names interface Painter, not a struct
# expect: not_a_struct.capnp: error: interface Painter, method limits @2: item = "limit": names const limit, not a struct
@0xbb559cf610a8f131;

using Harrow = import "/harrow/actor.capnp";

enum Color { red @0; green @1; }
const limit :Int32 = 3;
interface Painter $Harrow.actor {
  colors @0 () -> () $Harrow.stream(item = "Color");
  talk @1 () -> () $Harrow.context(started = "Painter");
  limits @2 () -> () $Harrow.stream(item = "limit");
}
