# The actor the discovery tests run in child processes (and in the test's root actor itself):
# it answers calls, and finds other actors by name from inside a child.
@0x8f1b20d6f5148e8f;

using Harrow = import "/harrow/actor.capnp";

interface Service $Harrow.actor {
  echo @0 (text :Text) -> (text :Text);
  # Answers "<actor name>: <text>".

  report @1 () -> (pid :Int32, name :Text);
  # The actor's process id and name.

  lookup @2 (name :Text, text :Text) -> (found :Bool, reply :Text);
  # Finds the actor registered under `name` (harrow::findActor, from this actor) and calls its
  # echo with `text`.

  callRoot @3 (text :Text) -> (reply :Text);
  # Calls echo on the root of this actor's tree (harrow::rootActor).
}
