# A worker that crashes now and then: the example's supervised child.
@0xd1ae991b2fe773ff;

using Harrow = import "/harrow/actor.capnp";

interface Flaky $Harrow.actor {
  square @0 (n :Int64) -> (square :Int64, pid :Int32);
  # n * n, and the pid of the instance that computed it. Every third call an instance gets, it
  # crashes instead (the process exits with status 42, without answering).
}
