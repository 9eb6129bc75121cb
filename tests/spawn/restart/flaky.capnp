# The actor the restart tests supervise: it tells its pid, crashes, exits cleanly, and runs a
# supervisor of its own whose child crash-loops.
@0x961686ae5741f169;

using Harrow = import "/harrow/actor.capnp";

interface Flaky $Harrow.actor {
  info @0 () -> (pid :Int32);
  # This instance's pid.

  crash @1 (status :Int32) -> ();
  # Ends the process at once with _exit(status): no answer, no teardown.

  quit @2 () -> ();
  # Cancels this actor (harrow::currentActor().cancel()): a clean exit, status 0.

  crashLoop @3 () -> ();
  # Opens a supervisor (one_for_one, OTP's default intensity) with one permanent child, "inner",
  # and crashes it until the supervisor gives up: raises the supervisor's RestartIntensity.

  hold @4 () -> ();
  # Never answers: a call to it ends only with this instance.
}
