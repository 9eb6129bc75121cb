# The actor the forkserver tests spawn: it says who it is and how it was started, spawns
# children of its own, and crashes on request.
@0xd5216b235682cbdd;

using Harrow = import "/harrow/actor.capnp";

interface Ping $Harrow.actor {
  ping @0 (text :Text) -> (text :Text);
  # A call: answers "pong: <text>".

  whoAmI @1 () -> (who :Who);
  # This process, as it sees itself.

  spawnChild @2 (name :Text, backend :UInt32) -> (who :Who);
  # Spawns a Ping child `name` in a nursery of its own with SpawnBackend `backend` (its numeric
  # value), asks it whoAmI, closes the nursery and returns the answer.

  crash @3 () -> ();
  # abort(): the process dies of SIGABRT mid-call.

  holdChild @4 (name :Text) -> (who :Who, zygote :Int32);
  # Spawns a Ping child `name` by the forkserver, in an actor nursery of a task of its own, and
  # answers with the child's whoAmI and this actor's zygote pid (-1: none). The child stays until
  # this actor is cancelled; then it is cancelled and reaped as any child is.

  struct Who {
    pid @0 :Int32;
    ppid @1 :Int32;
    pgid @2 :Int32;
    comm @3 :Text;
    cmdline @4 :Text;     # /proc/self/cmdline, arguments separated by spaces
    hasZygote @5 :Bool;   # whether this process runs a zygote of its own
  }
}
