# The registry: how actors find each other by name (tractor: the arbiter / registrar, find_actor,
# wait_for_actor, query_actor). It is itself a harrow actor interface, served by the root actor of
# a tree (runtime/registry.h) on a well-known address, and called through the generated
# RegistryActor::Portal (runtime/discovery.h wraps it). docs/PROTOCOL.md, "The registry and
# discovery" describes it.
#
# Every actor registers itself when it starts serving and deregisters on teardown. The registry
# remembers the channel each entry was registered on: when that channel ends without a
# deregistration (the actor was killed), the entry is removed as stale.
#
# Names are not unique: several actors may register the same name (each has its own uuid).
# `find` returns one of them (the earliest registered that is still there), `query` lists all.
@0xe8516df6deb3d4ae;

$import "/capnp/c++.capnp".namespace("harrow::registry");

using Harrow = import "/harrow/actor.capnp";

interface Registry $Harrow.actor {
  registerActor @0 (entry :Entry) -> ();
  # Adds (or, for a uuid already registered, replaces) an entry, tied to the calling channel.

  deregisterActor @1 (uuid :Data) -> (removed :Bool);
  # Removes the entry with this uuid; `removed` is false if there was none.

  find @2 (name :Text) -> (found :Bool, entry :Entry);
  # One actor registered under `name`: the earliest registered one still there.

  query @3 (name :Text) -> (entries :List(Entry));
  # Every actor registered under `name` (all of them for an empty name), oldest first.

  waitFor @4 (name :Text) -> (entry :Entry);
  # Like find, but waits until an actor registers under `name`.

  waitForDeparture @5 (uuid :Data) -> (how :Departure);
  # Resolves once the entry with this uuid is gone, saying how (at once if there is none).

  info @6 () -> (host :Entry, entries :UInt32);
  # The registry's host actor and how many entries it holds. A root actor probing an address
  # calls this to tell a live registry from anything else listening there.

  struct Entry {
    name @0 :Text;
    uuid @1 :Data;             # 16 bytes, unique per actor
    pid @2 :UInt32;
    addresses @3 :List(Text);  # where the actor accepts channels (docs/PROTOCOL.md, "Transport
                               # and framing")
  }

  enum Departure {
    notRegistered @0;  # there was no such entry when asked
    deregistered @1;   # the actor deregistered (an orderly teardown)
    channelLost @2;    # the channel it registered on ended first: a stale entry, removed
  }
}
