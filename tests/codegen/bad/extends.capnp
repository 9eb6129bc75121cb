# An actor interface lists its own methods: no superclasses (their ids would differ).
# expect: extends.capnp: error: interface Child: an actor interface cannot extend other interfaces
@0xed4bcdbbe452e6f2;

using Harrow = import "/harrow/actor.capnp";

interface Base { ping @0 () -> (); }
interface Child extends(Base) $Harrow.actor {
  pong @0 () -> ();
}
