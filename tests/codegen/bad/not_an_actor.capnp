# $Harrow.stream and $Harrow.context only mean something in a $Harrow.actor interface.
# expect: not_an_actor.capnp: error: interface Plain, method ticks @0: $Harrow.stream/$Harrow.context on a method of an interface that is not $Harrow.actor
@0xbe832892dc8648b3;

using Harrow = import "/harrow/actor.capnp";

interface Plain {
  ticks @0 () -> () $Harrow.stream(item = "Tick");
  struct Tick { value @0 :Int64; }
}
