# The actor the process tests spawn in a child process: one method per behaviour they check,
# each kind of method in a working, a failing and (where it applies) a dying or hanging form.
@0xa366c9174055dc6c;

using Harrow = import "/harrow/actor.capnp";

interface Probe $Harrow.actor {
  echo @0 (text :Text) -> (text :Text);
  # A call: answers "echo: <text>".

  fail @1 (text :Text) -> ();
  # A call that raises probe.Refused with `text` as its message.

  count @2 (n :UInt32) -> () $Harrow.stream(item = "Item");
  # A stream: yields 0, 1, ..., n - 1.

  countThenFail @3 (n :UInt32) -> () $Harrow.stream(item = "Item");
  # A stream that yields 0, ..., n - 1, then raises probe.Refused.

  endless @4 () -> () $Harrow.stream(item = "Item");
  # A stream that never ends on its own. Logs "endless yielded <k>" after each item and
  # "endless ended: <how>" when it stops.

  session @5 (start :UInt32) -> (sum :UInt32)
      $Harrow.context(started = "Item", callerSends = "Item", calleeSends = "Item");
  # A context: started with `start`, then answers each item with the running sum; returns the
  # sum once the caller stops sending. Logs "session ended: <how>".

  failingSession @6 (afterItems :UInt32) -> ()
      $Harrow.context(started = "Item", callerSends = "Item", calleeSends = "Item");
  # A context that raises probe.Refused after echoing `afterItems` items.

  selfCancel @7 () -> () $Harrow.context(started = "Item", calleeSends = "Item");
  # A context that sends started, then cancels itself.

  abortCall @8 () -> ();
  # A call whose handler calls abort(): the child process dies mid-call.

  abortStream @9 (after :UInt32) -> () $Harrow.stream(item = "Item");
  # A stream whose handler calls abort() after yielding `after` items.

  hang @10 () -> ();
  # A call that never returns. Logs "hang started", then "hang ended: <how>".

  waitFor @11 (prefix :Text) -> (entry :Text);
  # Resolves with the first log entry starting with `prefix`, once there is one.

  report @12 () -> (pid :Int32, endlessSent :UInt32, log :List(Text));
  # The child's pid, the items `endless` has yielded so far, and the whole log.

  stubborn @13 () -> ();
  # A call that never returns and ignores cancellation (its wait is shielded), so its actor
  # cannot finish on cancel-actor: only SIGKILL ends it. Logs "stubborn started".

  struct Item {
    value @0 :UInt32;
  }
}
