# A method is a call, a stream or a context, never two of them.
# expect: stream_and_context.capnp: error: interface Both, method mixed @0: has both $Harrow.stream and $Harrow.context
@0xc833f70bb73f96ad;

using Harrow = import "/harrow/actor.capnp";

interface Both $Harrow.actor {
  mixed @0 () -> () $Harrow.stream(item = "Tick") $Harrow.context(started = "Tick");
  struct Tick { value @0 :Int64; }
}
