# A context must name the struct its callee sends when it has started.
# expect: context_without_started.capnp: error: interface Session, method open @0: a context needs a started struct
@0x94aa12f26d193219;

using Harrow = import "/harrow/actor.capnp";

interface Session $Harrow.actor {
  open @0 () -> () $Harrow.context(callerSends = "Delta");
  struct Delta { by @0 :Int64; }
}
