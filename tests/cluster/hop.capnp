# The actor of the cluster tests: each method walks a chain of nodes ("b,c": start a Hop on node
# b, which starts one on node c), so that one call builds a tree across hosts. A place is
# "<name> ns=<network namespace inode> pid=<pid>": where an actor runs.
@0xd1a3c6f0b2e48a71;

using Harrow = import "/harrow/actor.capnp";

interface Hop $Harrow.actor {
  where @0 (nodes :Text) -> (places :Text);
  # This actor's place, then (with nodes) those of the chain it starts, ";"-separated.

  fail @1 (nodes :Text) -> ();
  # The chain's last actor raises "hop.Failed: leaf NAME failed"; the others relay it.

  ticks @2 (nodes :Text) -> () $Harrow.stream(item = "Tick");
  # The last actor yields ticks every 20 ms, forever; the others relay them. Every tick carries the
  # places of the chain below the caller.

  hold @3 (nodes :Text) -> () $Harrow.context(started = "Held");
  # Starts the chain, sends started with every place in it, then never returns.

  find @4 (name :Text) -> (places :Text);
  # Waits until an actor registers under `name` in the tree's registry, and returns its place
  # (its `where ""`): findActor from wherever this actor runs.

  struct Tick {
    seq @0 :UInt32;
    places @1 :Text;
  }

  struct Held {
    places @0 :Text;
  }
}
