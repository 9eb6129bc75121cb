@0xb3c9e8a1d5f40c27;

$import "/capnp/c++.capnp".namespace("harrow::test");
# Every kind of field the decode check reads: the differential test in decode_test.c++ mutates
# messages of these types and compares the check against a reading through capnp's dynamic API.

enum Colour { red @0; green @1; blue @2; }

struct Node {
  name @0 :Text;
  children @1 :List(Node);
}

struct Point {
  x @0 :Int32;
  y @1 :Int32;
}

struct Everything {
  text @0 :Text;
  data @1 :Data;
  point @2 :Point;
  tree @3 :Node;
  bools @4 :List(Bool);
  bytes @5 :List(UInt8);
  shorts @6 :List(Int16);
  colours @7 :List(Colour);
  ints @8 :List(Int32);
  floats @9 :List(Float64);
  voids @10 :List(Void);
  texts @11 :List(Text);
  blobs @12 :List(Data);
  points @13 :List(Point);
  nested @14 :List(List(Text));
  nestedPoints @15 :List(List(Point));
  opaque @16 :AnyPointer;
  deepBlobs @17 :List(List(List(Data)));
  number @18 :UInt64;
  shape :union {
    nothing @19 :Void;
    circle @20 :Point;
    label @21 :Text;
    polygon @22 :List(Point);
    named :group {
      name @23 :Text;
      kind :union {
        plain @24 :Void;
        tagged @25 :List(Text);
      }
    }
  }
  tail :group {
    note @26 :Text;
    extra @27 :Everything;
  }
}
