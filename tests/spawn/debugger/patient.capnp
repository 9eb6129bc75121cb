# The actor the debugger tests stop: it grows leaves, and a leaf crashes, fails or pauses.
@0xd3b2f5a1c0e4a7b9;

using Harrow = import "/harrow/actor.capnp";

interface Patient $Harrow.actor {
  run @0 (mode :Text, leaves :UInt32) -> (total :Int64);
  # With leaves > 0: spawns that many Patient leaves ("<name>.<i>"), runs each with `mode`
  # concurrently, and raises their errors together. A leaf (leaves = 0) does what `mode` says:
  # "abort" (abort() in patientAborts), "error" (raises in patientRaises), "pause"
  # (harrow::pause() in patientPauses, then returns its pid), "ok" (returns its pid).
}
