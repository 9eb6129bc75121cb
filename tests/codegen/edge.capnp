# Corners of capnpc-harrow: a C++ namespace, names resolved through scopes, dots and imports,
# flattening rules, C++ keywords, named param structs, contexts without streams, nested actors.
@0x89b40c4a2d9a1b25;

using Harrow = import "/harrow/actor.capnp";
using Common = import "edge_common.capnp";
$import "/capnp/c++.capnp".namespace("harrow::codegen_test::edge");

enum Color {
  red @0;
  green @1;
}

struct Top {
  value @0 :Int32;

  struct Nested {
    x @0 :Int32;
  }
}

struct Point {
  x @0 :Int32;
  y @1 :Int32;
}

interface Edge $Harrow.actor {
  ping @0 () -> ();
  paint @1 (color :Color, bytes :Data, note :Text, flag :Bool, ratio :Float64) -> (ok :Bool);
  toggle @2 (on :Bool) -> (on :Bool);
  delete @3 (body :Text, request :UInt8) -> ();
  move @4 Point -> Point;
  sum @5 (items :List(Int32)) -> (total :Int64);
  shared @6 () -> () $Harrow.stream(item = "Shared");
  nested @7 (from :Int32) -> () $Harrow.stream(item = "Top.Nested");
  deep @8 () -> () $Harrow.stream(item = "Shared.Inner");
  quiet @9 () -> (n :Int32) $Harrow.context(started = "Local");
  oneWay @10 () -> () $Harrow.context(started = "Local", callerSends = "Top");
  own @11 () -> () $Harrow.stream(item = "Local");

  struct Local {}
}

struct Outer {
  interface Inner $Harrow.actor {
    get @0 () -> (value :Int32);
    # A method in an interface nested in a struct.
  }
}
