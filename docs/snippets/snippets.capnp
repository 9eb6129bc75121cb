# The actors the C++ snippets of README.md, docs/REFERENCE.md and docs/RECIPES.md talk to:
# docs:snippets_test compiles every snippet against them (extract.py, prelude.h).
@0xd1c0f3e2a4b59687;

using Harrow = import "/harrow/actor.capnp";

# README's Counter, as examples/counter/counter.capnp.
interface Counter $Harrow.actor {
  add @0 (n :Int64) -> (total :Int64);
  count @1 (upTo :UInt32) -> () $Harrow.stream(item = "Tick");
  session @2 (label :Text) -> (total :Int64)
      $Harrow.context(started = "Ready", callerSends = "Delta", calleeSends = "Total");
  struct Tick { value @0 :Int64; }
  struct Ready { start @0 :Int64; }
  struct Delta { by @0 :Int64; }
  struct Total { value @0 :Int64; }
}

interface Ticker $Harrow.actor {
  ticks @0 (n :UInt32) -> () $Harrow.stream(item = "Tick");
  struct Tick { value @0 :Int64; }
}

interface Worker $Harrow.actor {
  work @0 (job :Text) -> (result :Text);
}

interface Squarer $Harrow.actor {
  work @0 () -> () $Harrow.context(started = "Ready", callerSends = "Job", calleeSends = "Done");

  struct Ready {}
  struct Job {
    n @0 :Int64;
  }
  struct Done {
    square @0 :Int64;
  }
}

# RECIPES.md: a value whole, or in chunks.
interface Store $Harrow.actor {
  put @0 (key :Text, value :Data) -> ();
  get @1 (key :Text) -> (value :Data);
  read @2 (key :Text) -> () $Harrow.stream(item = "Chunk");
  write @3 (key :Text) -> (bytes :UInt64)
      $Harrow.context(started = "Ready", callerSends = "Chunk", calleeSends = "Ack");
  struct Chunk { data @0 :Data; }
  struct Ready {}
  struct Ack {}
}

# RECIPES.md: two actor types, one calling the other.
interface Front $Harrow.actor {
  handle @0 (n :Int64) -> (total :Int64);
}
