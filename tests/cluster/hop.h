// The Hop actor of the cluster tests (hop.capnp), registered as "hop".

#pragma once

#include <harrow/actor/actor.h>

namespace hop {

void registerHop(harrow::Implementations& implementations);

// "<actor name> ns=<network namespace inode> pid=<pid>": where the calling process runs.
kj::String place(kj::StringPtr name);

}  // namespace hop
