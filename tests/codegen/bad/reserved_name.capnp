# Method names must not hide harrow's own members of the generated Server and Portal.
# expect: reserved_name.capnp: error: interface Clash, method dispatch @0: the name "dispatch" is taken
# expect: reserved_name.capnp: error: interface Clash, method raw @1: the name "raw" is taken
@0xa9fcfa192e0256db;

using Harrow = import "/harrow/actor.capnp";

interface Clash $Harrow.actor {
  dispatch @0 () -> ();
  raw @1 () -> ();
}
