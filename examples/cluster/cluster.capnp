# The cluster example: a worker that says where it runs, started on other hosts by harrow-node.
@0xe3b1c9d27a5f4c18;

using Harrow = import "/harrow/actor.capnp";

interface Worker $Harrow.actor {
  where @0 () -> (host :Text, pid :Int32);
  # A call: the worker's host (its network namespace, on one machine) and pid.

  squares @1 (upTo :UInt32) -> () $Harrow.stream(item = "Square");
  # A stream: 0, 1, 4, ... (upTo - 1)^2.

  struct Square {
    value @0 :UInt64;
  }
}
