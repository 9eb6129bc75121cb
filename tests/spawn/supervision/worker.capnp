# The actor the supervision tests spawn: it fails, grows subtrees, streams, holds, and blocks, and
# logs what happens to it (see worker.h) so that tests can check what every process of a tree
# went through, grandchildren included.
@0xba3caaf11712163e;

using Harrow = import "/harrow/actor.capnp";

interface Worker $Harrow.actor {
  info @0 () -> (pid :Int32);
  # This actor's pid.

  fail @1 (text :Text) -> ();
  # Raises sup.Failed with `text` as its message.

  grow @2 (depth :UInt32, width :UInt32, failLeaves :Bool) -> ();
  # With depth > 0: opens an actor nursery of `width` children named "<name>.<i>", each growing
  # depth - 1, waits for all of them, and raises their errors together (one error as is, several
  # as one MultiError). A leaf (depth 0) raises sup.Failed "leaf <name> failed" if failLeaves.

  endless @3 (depth :UInt32, width :UInt32) -> () $Harrow.stream(item = "Tick");
  # A stream that never ends. With depth > 0 it first spawns `width` children, each streaming
  # endless(depth - 1), and consumes their ticks. Its first tick carries the pids of its whole
  # subtree (its own first) and is sent once every child's first tick has arrived; then one tick
  # every 20 ms. Logs "endless ended: <how>".

  hold @4 (depth :UInt32, width :UInt32) -> () $Harrow.context(started = "Grown");
  # Spawns a subtree like endless (each child holding depth - 1), sends started with the pids of
  # the whole subtree, then never returns. Logs "hold ended: <how>".

  block @5 (fifo :Text) -> ();
  # Logs "blocking", opens the named FIFO `fifo` for writing (the caller has it open for
  # reading), writes one byte to it, then blocks the whole process in read() on a pipe nobody
  # writes: a real blocking system call, so it cannot act on cancellation. The byte tells the
  # caller, whatever the channel's write timing, that only that read() is left to happen.

  waitFor @6 (prefix :Text) -> (entry :Text);
  # Resolves with the first log entry of this actor starting with `prefix`, once there is one.

  struct Tick {
    seq @0 :UInt32;
    pids @1 :List(Int32);
  }

  struct Grown {
    pids @0 :List(Int32);
  }
}
