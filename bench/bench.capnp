# Schemas for bench/call_bench: the same echo service as a harrow actor and as a plain
# Cap'n Proto RPC interface, so the two are measured on identical messages.
@0xa3b84d3113fb2df0;

using Harrow = import "/harrow/actor.capnp";

interface Echo $Harrow.actor {
  ping @0 (payload :Data) -> (payload :Data);
  # A call: answers with the payload it received.

  items @1 (count :UInt32, size :UInt32) -> () $Harrow.stream(item = "Item");
  # A stream: yields `count` items of `size` bytes each.

  pid @2 () -> (pid :UInt32);
  # A call: the actor's process id (the benchmark reads its resident memory).

  struct Item {
    data @0 :Data;
  }
}

interface EchoRpc {
  # The same call as Echo.ping, served by capnp's own two-party RPC.
  ping @0 (payload :Data) -> (payload :Data);
}
