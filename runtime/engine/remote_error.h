// Errors that crossed a channel: RemoteActorError and ContextCancelled (tractor's names).
//
// A remote handler's exception travels as a wire::Error and is raised at the caller as a
// kj::Exception (promises carry nothing else) whose description reads like a local error with
// the remote part indented under it:
//
//   harrow.RemoteActorError: std::out_of_range from actor 'counter-1' (3f2a…): total overflow
//     raised at examples/counter/main.c++:42
//     relayed by 'mid' (9b1c…)
//     remote trace:
//       ...
//
// The first line and the indented fields are parsed back by remoteErrorInfo(), so an actor that
// relays the error (its handler did not catch it) keeps the origin and extends the relay path.

#pragma once

#include <harrow/engine/actor_identity.h>
#include <harrow/wire.capnp.h>
#include <kj/exception.h>
#include <kj/string.h>
#include <kj/vector.h>

namespace harrow {

// What a RemoteActorError or ContextCancelled carries.
struct RemoteErrorInfo {
  wire::ErrorKind kind;
  kj::String type;         // the boxed error type
  kj::String message;
  kj::String file;
  uint32_t line = 0;
  kj::String remoteTrace;
  ActorIdentity origin;
  kj::Vector<ActorIdentity> relayPath;  // nearest last
};

bool isRemoteActorError(const kj::Exception& exception);
bool isContextCancelled(const kj::Exception& exception);
bool isProtocolViolation(const kj::Exception& exception);
// A message over the frame limit of its channel: raised locally where it was sent (a call, a
// stream item, a started value), received as the error result of a task whose result or error
// was too large, or raised by a channel that received an oversized frame.
bool isMessageTooLarge(const kj::Exception& exception);
// harrow.ActorDied, raised here or relayed from further down the tree.
bool isActorDied(const kj::Exception& exception);

// The fields of a RemoteActorError or ContextCancelled; nullptr for any other exception.
kj::Maybe<RemoteErrorInfo> remoteErrorInfo(const kj::Exception& exception);

// The exception a caller raises for a received wire::Error.
kj::Exception toException(wire::Error::Reader error);

// Fills a wire::Error for `exception` raised in actor `self`: a local exception gets `self` as its
// origin; a relayed remote one keeps its origin and gains `self` on its relay path.
void fillWireError(wire::Error::Builder error, const kj::Exception& exception,
                   const ActorIdentity& self, wire::ErrorKind kind = wire::ErrorKind::FAILED);

// A protocol violation raised locally (a peer sent something the state machine forbids).
kj::Exception protocolViolation(kj::StringPtr what);

// "harrow.MessageTooLarge: <what>" (type FAILED).
kj::Exception messageTooLarge(kj::StringPtr what);
// "harrow.ActorDied: actor 'NAME' (pid PID) HOW": a child actor's process ended (`how`, e.g.
// "killed by signal 9 (Killed)" or "exited with status 3"). Its supervisor raises it, and every
// caller still waiting on the child gets it, whatever it was doing (harrow/spawn/actor_nursery.h).
kj::Exception actorDied(kj::StringPtr name, int pid, kj::StringPtr how);

}  // namespace harrow
