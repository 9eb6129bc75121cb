# A key-value store actor: the schema of a project that uses harrow from outside harrow's tree.
@0xbc2c275e2129f69b;

using Harrow = import "/harrow/actor.capnp";

interface Kv $Harrow.actor {
  put @0 (key :Text, value :Text) -> (replaced :Bool);
  # A call: stores value under key; replaced says whether key held a value before.

  get @1 (key :Text) -> (found :Bool, value :Text);
  # A call: the value under key, if any.

  scan @2 (prefix :Text) -> () $Harrow.stream(item = "Entry");
  # A stream: every entry whose key starts with prefix, in key order.

  remove @3 (key :Text) -> ();
  # A call: removes the entry under key; raises an error if there is none.

  struct Entry {
    key @0 :Text;
    value @1 :Text;
  }
}
