# The service of examples/multi_program: the daemon runs a Greeter actor, clients in other
# programs find it by name through the registry and call it.
@0xe3b3ac30a5382292;

using Harrow = import "/harrow/actor.capnp";

interface Greeter $Harrow.actor {
  greet @0 (name :Text) -> (greeting :Text, pid :Int32);
  # A call: "hello, <name>", and the process the greeter runs in.
}
