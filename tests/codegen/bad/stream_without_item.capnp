# A stream must name its item struct.
# expect: stream_without_item.capnp: error: interface Ticker, method ticks @1: a stream needs an item struct
@0x85933369f706d0e6;

using Harrow = import "/harrow/actor.capnp";

interface Ticker $Harrow.actor {
  ping @0 () -> ();
  ticks @1 () -> () $Harrow.stream();
}
