# Imported by edge.capnp: structs its annotations name, and no actor (so capnpc-harrow emits
# its placeholder files for this schema).
@0xdc226f02fdd705a6;

struct Shared {
  v @0 :Int32;

  struct Inner {
    w @0 :Int32;
  }
}
