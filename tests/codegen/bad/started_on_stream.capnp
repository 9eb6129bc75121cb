# Each annotation takes only its own fields: `started` on a stream is rejected by capnp itself
# (with the file and line) before capnpc-harrow runs.
# expect: started_on_stream.capnp:
# expect: started
@0xbff311f18220de96;

using Harrow = import "/harrow/actor.capnp";

interface Ticker $Harrow.actor {
  ticks @0 () -> () $Harrow.stream(item = "Tick", started = "Tick");
  struct Tick { value @0 :Int64; }
}
