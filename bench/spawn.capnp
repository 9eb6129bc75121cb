# Schema for bench/spawn_bench: one actor that answers a ping and grows subtrees of itself.
@0xf73cff56fbd7ba95;

using Harrow = import "/harrow/actor.capnp";

interface Spawnee $Harrow.actor {
  ping @0 () -> (pid :UInt32);
  # The first call after a spawn: answers with the actor's pid.

  grow @1 (depth :UInt32, width :UInt32, failAt :Text, hold :Bool) -> (nodes :UInt32);
  # With depth > 0: opens an actor nursery, spawns `width` children named "<name>.<i>" (by the
  # process default backend) and calls grow(depth - 1, ...) on all of them at once. A leaf
  # (depth 0) named `failAt` raises spawnbench.LeafFailed carrying the steady-clock time it
  # failed at ("at_ns=N"), 200 ms after its grow was called; other leaves answer at once, or with
  # `hold` never (until cancelled). Returns the number of nodes in the subtree, this one included.
}
