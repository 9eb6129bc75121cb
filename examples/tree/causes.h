// The causes inside an error that reached the root of an actor tree, one per original failure.
//
// A harrow error arriving from a subtree can be nested several times over:
//  - a MultiError: several failures raised together by one nursery (errorsIn() lists them);
//  - a RemoteActorError whose origin raised it: it keeps that origin and gains a relay-path entry
//    for every actor it passed through unchanged (remoteErrorInfo(e).relayPath, nearest last);
//  - a RemoteActorError of type harrow.MultiError: an actor's nursery raised several errors
//    together, and that MultiError crossed a channel as one error; its message holds the
//    individual errors, as text.
// causesOf() undoes all of it: each original failure comes out exactly once, with the path it
// travelled (for the last kind, the actor that raised the MultiError is on the path of each of
// the errors inside it).

#pragma once

#include <harrow/engine/remote_error.h>

#include <kj/exception.h>
#include <kj/string.h>
#include <kj/vector.h>

namespace tree {

struct Cause {
  kj::String text;  // the cause as it was raised (its whole description)
  // For a cause raised in another actor: its type, message, where it was raised and by whom.
  // Empty for a cause raised locally (e.g. harrow.ActorDied, or a TransportClosed).
  kj::String type;
  kj::String message;
  kj::String file;
  uint32_t line = 0;
  kj::Maybe<harrow::ActorIdentity> origin;
  // The actors the cause passed through on its way to us, nearest last.
  kj::Vector<harrow::ActorIdentity> relayPath;
};

kj::Vector<Cause> causesOf(const kj::Exception& error);

// "a -> b -> c" (names only); "(none)" for an empty path.
kj::String pathText(const kj::Vector<harrow::ActorIdentity>& path);

}  // namespace tree
