// Harness 4: the registry actor's server (idl/harrow/registry.capnp), called by a hostile peer:
// registry calls with junk params, in any order, interleaved with cancels, while a second,
// well-behaved actor holds a registration. The registry must answer or refuse each call and keep
// serving; the good actor's entry must survive.
//
// Input: a flags byte, then raw channel bytes (normally frames: starts of Registry methods).
//   flags & 1: the harness sends a valid hello first

#include "fuzz/harness.h"

#include <harrow/discovery/registry.h>

using namespace harrow;
using namespace harrow::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto& context = io();
  std::string bytes = rogueBytes(data, size);

  Actor actor(context, ActorIdentity::random("registry"));
  actor.addServer(kj::heap<RegistryServer>(actor));
  auto pipe = kj::newTwoWayPipe();
  Rogue rogue(kj::mv(pipe.ends[0]));
  auto victim = kj::heap<Channel>(kj::mv(pipe.ends[1]));
  rogue.send(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));

  // The good actor: registers over its own channel, then (after the rogue is done) looks itself
  // up.
  Actor goodActor(context, ActorIdentity::random("good"));
  auto goodPipe = kj::newTwoWayPipe();
  auto goodEnd = kj::heap<Channel>(kj::mv(goodPipe.ends[0]));
  auto registryEnd = kj::heap<Channel>(kj::mv(goodPipe.ends[1]));
  bool goodFound = false;

  auto serveChannel = [&](kj::Own<Channel> channel) -> Co<void> {
    kj::Own<Peer> peer;
    try {
      // Trusted hellos, as in the engine harness: fuzzed bytes reach the registry, not a MAC.
      peer = co_await handshakeWithChild(kj::mv(channel), actor);
    } catch (...) {
      co_return;
    }
    try {
      co_await peer->serve();
    } catch (...) {
    }
    co_await peer->whenDrained();
  };
  auto served = actor.serve([&]() -> Co<void> {
    auto good = serveChannel(kj::mv(registryEnd)).eagerlyEvaluate(nullptr);
    co_await serveChannel(kj::mv(victim));
    co_await kj::mv(good);
  });
  auto goodSide = goodActor.serve([&]() -> Co<void> {
    auto peer = co_await handshakeWithParent(kj::mv(goodEnd), goodActor);
    auto serving = peer->serve().then([]() {}, [](kj::Exception&&) {}).eagerlyEvaluate(nullptr);
    RegistryActor::Portal registry(*peer);
    co_await registry.registerActor([&](registry::Registry::RegisterActorParams::Builder p) {
      auto entry = p.initEntry();
      entry.setName("good");
      entry.setUuid(goodActor.identity().uuid);
      entry.setPid(1);
    });
    co_await kj::mv(rogue.writing);
    co_await kj::mv(rogue.draining);  // the rogue's channel has ended
    try {
      auto found = co_await registry.find("good");
      goodFound = found->getFound();
    } catch (...) {
      // Only if the rogue sent cancel-actor (which any peer may): checked below.
    }
    co_await peer->channel().shutdownWrite();
    co_await kj::mv(serving);
    co_await peer->whenDrained();
  });
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { goodSide.wait(context.waitScope); })) {
    KJ_LOG(FATAL, "the good actor's registry calls failed", *e);
    abort();
  }
  if (!goodFound && !actor.cancelCalled()) {
    KJ_LOG(FATAL, "the good actor's entry is gone");
    abort();
  }
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { served.wait(context.waitScope); })) {
    if (!actor.cancelCalled()) {
      KJ_LOG(FATAL, "the registry actor failed because of a peer", *e);
      abort();
    }
  }
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t maxSize,
                                          unsigned int seed) {
  return mutateFrames(data, size, maxSize, seed);
}
