# Introspection: what every harrow actor answers about itself, so that a tool with no stubs
# compiled in (the `harrow` command, programs/harrow/) can list a tree, call any method with
# JSON, and show each actor's open tasks (docs/PROTOCOL.md, "Introspection"). Served by the
# runtime in every actor (runtime/actor/introspect.h), on every channel, to the same peers as any
# other interface: the parent, the children, and peers that proved the tree's secret.
#
# Cancelling an actor needs no method here: `cancelActor` (wire.capnp) already does it, from any
# authenticated peer.
@0xc164ab82bd76705a;

$import "/capnp/c++.capnp".namespace("harrow::introspect");

using Harrow = import "/harrow/actor.capnp";
using Schema = import "/capnp/schema.capnp";

interface Introspect $Harrow.actor {
  info @0 () -> (info :ActorInfo);
  # Who this actor is and how it is doing.

  schema @1 () -> (interfaces :List(Interface), nodes :List(Schema.Node));
  # The actor interfaces it serves (all but this one), each method with its kind and the type ids
  # of the structs its messages carry; `nodes` holds the schema node of each of those structs and
  # of every struct, enum and interface they refer to (like a CodeGeneratorRequest's), enough for
  # capnp::SchemaLoader and capnp's JSON codec. A server without type information (hand-written)
  # is listed with its methods' kinds and no types.

  tasks @2 () -> (tasks :List(Task));
  # Every task open on each of the actor's channels now, in both directions, oldest first; the
  # introspection tasks themselves are left out.

  struct ActorInfo {
    name @0 :Text;
    uuid @1 :Data;
    pid @2 :UInt32;
    parentName @3 :Text;       # "" for a root (no parent channel)
    parentUuid @4 :Data;
    addresses @5 :List(Text);  # where it accepts channels
    uptimeNanos @6 :UInt64;    # since its Actor was created
    residentBytes @7 :UInt64;  # VmRSS of its process
    tasksInFlight @8 :UInt32;  # open tasks over all its channels, both directions
    channels @9 :UInt32;       # its channels (peers) now
    host @10 :Text;            # the host its process runs on (gethostname): children started
                               # through ssh or a node run elsewhere than their parent
  }

  enum Kind {
    call @0;
    stream @1;
    context @2;
  }

  struct Interface {
    id @0 :UInt64;
    name @1 :Text;             # as the generated code names it, e.g. "Counter"
    methods @2 :List(Method);
  }

  struct Method {
    id @0 :UInt16;
    name @1 :Text;
    kind @2 :Kind;
    # Type ids of the structs the method's messages carry, 0 for none (or not known).
    paramsType @3 :UInt64;
    resultsType @4 :UInt64;
    itemType @5 :UInt64;         # streams: what the callee yields
    startedType @6 :UInt64;      # contexts: the started value
    callerSendsType @7 :UInt64;  # contexts: the caller's stream items (0: it sends none)
    calleeSendsType @8 :UInt64;  # contexts: the callee's stream items (0: it sends none)
  }

  struct Task {
    callId @0 :UInt64;
    incoming @1 :Bool;         # the peer called this actor (true) or this actor the peer
    kind @2 :Kind;
    method @3 :Text;           # "Counter.count"; "" if unknown
    state @4 :Text;            # "running", "open", "waiting for the result", ...
    peerName @5 :Text;
    peerUuid @6 :Data;
    peerRole @7 :Text;         # "parent", "child" or "peer" (authenticated by the tree secret)
    ageNanos @8 :UInt64;       # how long it has been open
  }
}
