# The counter example: one actor showing each kind of method harrow has.
@0xb6babe9511f31825;

using Harrow = import "/harrow/actor.capnp";

interface Counter $Harrow.actor {
  # Keeps a running total.

  add @0 (n :Int64) -> (total :Int64);
  # A call: adds n to the total and returns the new total.

  count @1 (upTo :UInt32) -> () $Harrow.stream(item = "Tick");
  # A stream: yields the ticks 0, 1, ..., upTo - 1.

  struct Tick {
    value @0 :Int64;
  }

  session @2 (label :Text) -> (total :Int64)
      $Harrow.context(started = "Ready", callerSends = "Delta", calleeSends = "Total");
  # A context: answers Ready with the current total, then adds every Delta the caller streams
  # and streams back the new Total after each; returns the final total.

  struct Ready {
    start @0 :Int64;
  }

  struct Delta {
    by @0 :Int64;
  }

  struct Total {
    value @0 :Int64;
  }
}
