// harrow's error vocabulary: one kind per thing that can go wrong, a name for each, and the
// helpers to raise and recognise them. docs/ERRORS.md is the catalogue (what each kind means,
// who raises it, what a program usually does about it).
//
// KJ promises carry only kj::Exception, so a harrow error is a kj::Exception whose description
// starts with "harrow.<Kind>: ". That prefix is the contract: it survives crossing a channel
// (a RemoteActorError keeps the remote kind in its text) and is what errorKind() reads.
//
//   if (harrow::is(e, harrow::ErrorKind::ACTOR_DIED)) ...
//   switch (harrow::errorKind(e)) { ... }
//   kj::throwFatalException(harrow::makeError(ErrorKind::NO_REGISTRY, "actor x has none"));

#pragma once

#include <kj/exception.h>
#include <kj/string.h>

namespace harrow {

enum class ErrorKind {
  NONE,                   // not a harrow error (a user's own exception, a KJ failure, ...)
  // Structured concurrency (co/)
  CANCELLED,              // the enclosing cancel scope was cancelled (never "an error" to report)
  DEADLINE_EXCEEDED,      // a deadline passed: failAfter's (trio: TooSlowError), or one a call
                          // carried to another actor (gRPC: DEADLINE_EXCEEDED)
  TOO_SLOW = DEADLINE_EXCEEDED,  // trio's name for it
  MULTI_ERROR,            // several concurrent failures raised together
  LOOP_GONE,              // a LoopHandle's event loop has ended: nothing can run on it
  // Channels (ipc/)
  TRANSPORT_CLOSED,       // the channel to a live peer broke or closed under a task
  MALFORMED_FRAME,        // bytes that are not a valid frame: the channel is closed
  MESSAGE_TOO_LARGE,      // a message over the frame limit (nothing was sent)
  // Streams (typed/)
  LAGGED,                 // a broadcast subscriber fell behind and missed items (laggedBy(e))
  STREAM_CLOSED,          // the other end of a context has ended: send() has nobody to take items
  // The protocol (engine/)
  REMOTE_ACTOR_ERROR,     // a remote handler raised: type, message, origin, relay path
  CONTEXT_CANCELLED,      // the other side of a context cancelled it
  PROTOCOL_VIOLATION,     // a peer broke docs/PROTOCOL.md (answered, never an actor failure)
  UNKNOWN_METHOD,         // the actor does not serve that interface or method
  AUTHENTICATION_FAILED,  // a peer could not prove the tree's secret: the handshake refused it
  // Actors and processes (actor/, spawn/)
  ACTOR_DIED,             // a child exited or was killed: names the actor, pid and how
  SPAWN_FAILED,           // a child could not be started
  ACTOR_RESTARTED,        // a supervisor restarted the actor behind this portal: get the current one
  RESTART_INTENSITY,      // a supervisor's children restarted too often: it gave up (escalates)
  ACTOR_UNREACHABLE,      // the link to a child on another host went silent or broke
  // Discovery (discovery/)
  NO_REGISTRY,            // this actor has no registry to ask
  NO_ROOT,                // this actor does not know its root's address
  REGISTRY_UNAVAILABLE,   // the registry could not be reached or hosted
  REGISTRY_ADDRESS_IN_USE,  // something that is not a registry holds the registry's address
  // Files (actor/, discovery/)
  UNSAFE_FILE,            // a runtime directory, cookie or key file another user could read,
                          // replace or own: refused, naming the path and what to do
};

// "Cancelled", "ActorDied", ...: the name after "harrow." in descriptions. "" for NONE.
kj::StringPtr errorKindName(ErrorKind kind);

// The kind of `exception`, from its description's "harrow.<Kind>: " prefix.
ErrorKind errorKind(const kj::Exception& exception);
inline bool is(const kj::Exception& exception, ErrorKind kind) {
  return errorKind(exception) == kind;
}

// An exception of `kind`: "harrow.<Kind>: <message>" (type FAILED, or DISCONNECTED for
// TRANSPORT_CLOSED, as KJ's own I/O errors are). Every harrow error is raised through this.
kj::Exception makeError(ErrorKind kind, kj::StringPtr message,
                        const char* file = __builtin_FILE(), int line = __builtin_LINE());

// "harrow.<Kind>": the type name an error of `kind` carries across a channel (wire Error.type).
kj::String errorTypeName(ErrorKind kind);

// "harrow.<Kind>: ", the prefix errorKind() reads: only for the few sites that build the
// exception themselves because it keeps another's type, file and line (a MultiError, an error
// rebuilt from the wire, trio's TooSlow as OVERLOADED).
kj::String errorPrefix(ErrorKind kind);

}  // namespace harrow
