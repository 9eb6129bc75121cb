@0xe324b399973b5f4d;
# The worker of bench/pool_bench: a trivial map (n -> 2n + 1) served as a pool's context.

using Harrow = import "/harrow/actor.capnp";

interface Mapper $Harrow.actor {
  work @0 () -> () $Harrow.context(started = "Ready", callerSends = "In", calleeSends = "Out");
  # One Out for each In, in order.

  struct Ready {}
  struct In { n @0 :Int64; }
  struct Out { n @0 :Int64; }
}
