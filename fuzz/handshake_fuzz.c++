// Harness 3: the hello exchange (docs/PROTOCOL.md, "hello"), and the spawn spec a child reads right
// after it. Any bytes from the peer end in a Peer or a clean refusal (TransportClosed,
// MalformedFrame, ProtocolViolation, AuthenticationFailed, or the peer's own `error` raised as a
// RemoteActorError/ContextCancelled: its refusal of us), never anything else.
//
// Input: a flags byte, then raw channel bytes.
//   flags & 1: the victim opened the connection (initiator); else it accepted it
//   flags & 2: after the hellos the victim reads a spawn spec, as a child does
//   flags & 4: the parent-child socketpair (trusted by construction: no proof is exchanged), so
//              that fuzzed bytes get past the hellos; else the tree secret must be proved

#include "fuzz/harness.h"

using namespace harrow;
using namespace harrow::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto& context = io();
  uint8_t flags = data[0];
  Actor actor(context, ActorIdentity::random("victim"));
  auto pipe = kj::newTwoWayPipe();
  Rogue rogue(kj::mv(pipe.ends[0]));
  rogue.send(kj::arrayPtr(data + 1, size - 1));

  auto result = kj::runCatchingExceptions([&]() {
    auto channel = kj::heap<Channel>(kj::mv(pipe.ends[1]));
    bool initiator = flags & 1;
    auto peer = (flags & 4 ? initiator ? handshakeWithParent(kj::mv(channel), actor)
                                       : handshakeWithChild(kj::mv(channel), actor)
                           : handshake(kj::mv(channel), actor, initiator))
                    .wait(context.waitScope);
    ActorIdentity remote = peer->remote().clone();
    remote.toString();
    if (flags & 2) {
      auto spec = peer->receiveOne().wait(context.waitScope);
      auto message = spec->getRoot<wire::Message>();
      if (message.isSpawnSpec()) {
        auto s = message.getSpawnSpec();
        for (auto address : s.getBindAddresses()) kj::str(address);
        kj::str(s.getImplementation(), s.getRegistryAddress(), s.getRootAddress(),
                s.getLogLevel());
      }
    }
  });
  KJ_IF_MAYBE(e, result) {
    if (!isTransportClosed(*e) && !isMalformedFrame(*e) && !isProtocolViolation(*e) &&
        !isAuthenticationFailed(*e) && !isRemoteActorError(*e) && !isContextCancelled(*e)) {
      KJ_LOG(FATAL, "the handshake failed with an unexpected error", *e);
      abort();
    }
  }
  rogue.writing.wait(context.waitScope);
  rogue.draining.wait(context.waitScope);
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t maxSize,
                                          unsigned int seed) {
  return mutateFrames(data, size, maxSize, seed);
}
