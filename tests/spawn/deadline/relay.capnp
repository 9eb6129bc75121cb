# The actor of the cross-process deadline test: a chain of relays, each calling the one below.
@0xc4e1d9a0b7f25e13;

using Harrow = import "/harrow/actor.capnp";

interface Relay $Harrow.actor {
  grow @0 (depth :UInt32) -> () $Harrow.context(started = "Grown");
  # With depth > 0: spawns one child ("<name>+") growing depth - 1, and keeps it as the actor
  # below; sends started with the pids of the chain (its own first) once the child's has come,
  # then holds until cancelled.

  block @1 () -> ();
  # With an actor below: calls its block (logs "relay started", then "relay ended: <how>"). The
  # last of the chain logs "block started: deadline <ns left | none>", blocks until cancelled,
  # and logs "block ended: <how>".

  waitFor @2 (prefix :Text, depth :UInt32) -> (entry :Text);
  # The first log entry starting with `prefix` of the actor `depth` levels below this one (0:
  # this one), once there is one.

  struct Grown {
    pids @0 :List(Int32);
  }
}
