# Structs for the engine tests: a hand-written server drives the protocol engine directly,
# independent of the generator.
@0x83578bac74744b02;

$import "/capnp/c++.capnp".namespace("harrow::probe");

struct Words { text @0 :Text; }
struct Count { n @0 :UInt32; }
struct Item { i @0 :UInt32; }
struct Empty {}

# Bulk payloads (shared_memory_test).
struct Blob { seq @0 :UInt32; data @1 :Data; }
struct BlobRequest { count @0 :UInt32; bytes @1 :UInt32; }
