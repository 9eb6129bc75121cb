# Schemas for bench/bulk_bench: a stream of byte chunks.
@0xd0b2b7f6a1c3e945;

struct BulkRequest { count @0 :UInt32; bytes @1 :UInt32; }
struct Chunk { data @0 :Data; }
