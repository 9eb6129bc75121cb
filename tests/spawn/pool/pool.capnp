@0xd66f9ad82c306c72;
# The worker the pool tests run: it squares numbers, tells its pid with each answer, and on demand
# sleeps, crashes (its process ends) or raises for one item.

using Harrow = import "/harrow/actor.capnp";

interface Squarer $Harrow.actor {
  work @0 () -> () $Harrow.context(started = "Ready", callerSends = "Job", calleeSends = "Done");
  # A pool's context: one Done for each Job, in order.

  pid @1 () -> (pid :Int32);
  # A call: this instance's pid.

  sumOfSquares @2 (upTo :Int64, workers :UInt32) -> (sum :Int64);
  # A call whose handler opens a pool of its own (workers Squarers, children of this actor) and
  # sums the squares of 0 .. upTo - 1 through it.

  struct Ready {}

  struct Job {
    n @0 :Int64;
    sleepMicros @1 :UInt32;  # before answering
    crash @2 :Bool;          # _exit(3) instead of answering: a poison item
    fail @3 :Bool;           # raise instead of answering (the worker lives on)
  }

  struct Done {
    square @0 :Int64;
    pid @1 :Int32;
  }
}
