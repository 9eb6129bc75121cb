// Introspection: the interface every actor serves about itself (idl/harrow/introspect.capnp) —
// who it is, what it serves (with the schema nodes a tool needs to call it with JSON), and which
// tasks are open on its channels. The `harrow` command (programs/harrow/) is its client;
// docs/PROTOCOL.md, "Introspection" describes it.
//
// Every Actor serves it from its construction (Actor::Actor adds it), to the same peers as any
// other interface: its parent, its children, and peers that proved the tree's secret.

#pragma once

#include <harrow/introspect.capnp.harrow.h>
#include <harrow/typed/task.h>

#include <kj/vector.h>

namespace harrow {

class Actor;

using introspect::IntrospectActor;

// The server for `actor`, which must outlive it (the Actor owns it).
kj::Own<ActorServer> newIntrospectServer(Actor& actor);

// The schema nodes of `roots` and of every struct, enum and interface they refer to, each once,
// roots first (what Introspect.schema sends).
kj::Vector<capnp::Schema> schemaClosure(kj::ArrayPtr<const capnp::Schema> roots);

// The process's resident memory (VmRSS in /proc/self/status), in bytes; 0 if unknown.
uint64_t residentBytes();

}  // namespace harrow
