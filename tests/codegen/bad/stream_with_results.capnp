# A stream's output is its items: its results must be empty.
# expect: stream_with_results.capnp: error: interface Ticker, method ticks @0: a stream's results must be empty
@0xe01e74f706c23740;

using Harrow = import "/harrow/actor.capnp";

interface Ticker $Harrow.actor {
  ticks @0 () -> (last :Int64) $Harrow.stream(item = "Tick");
  struct Tick { value @0 :Int64; }
}
