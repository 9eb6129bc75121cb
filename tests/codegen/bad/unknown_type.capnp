# Names in annotations must resolve; each error names the file, interface and method.
# expect: unknown_type.capnp: error: interface Ticker, method ticks @0: item = "Tik": no declaration named "Tik" in Ticker
# expect: unknown_type.capnp: error: interface Ticker, method deep @1: item = "Tick.Nope": Ticker.Tick has no nested declaration named "Nope"
# expect: unknown_type.capnp: error: interface Ticker, method talk @2: calleeSends = "Nowhere": no declaration named "Nowhere"
@0xe7c1f65b715737a4;

using Harrow = import "/harrow/actor.capnp";

interface Ticker $Harrow.actor {
  ticks @0 () -> () $Harrow.stream(item = "Tik");
  deep @1 () -> () $Harrow.stream(item = "Tick.Nope");
  talk @2 () -> () $Harrow.context(started = "Tick", calleeSends = "Nowhere");
  struct Tick { value @0 :Int64; }
}
