// Harness 2: the protocol engine, fed arbitrary message sequences by a peer. The victim is an
// Actor serving the probe interface (a call, two contexts, a stream) and at the same time calling
// the rogue with each method kind, so the rogue's frames reach both the callee's and the caller's
// state machines. Whatever the rogue sends, the victim must not crash, hang, leak, or fail other
// than by ending this channel.
//
// Input: a flags byte, then raw channel bytes (normally frames, see frames.h).
//   flags & 1: the harness sends a valid hello first (else the input must do the handshake)
//   flags & 2: the victim also calls the rogue (call id 2: echo, 4: stream, 6: context)
//   flags & 4: the event loop polls the clock every ((flags >> 3) & 15) + 1 events, so that
//              deadlines (Start.timeoutNanos) expire in the middle of the exchange. Otherwise
//              the clock only moves when the loop has nothing to run, which in this in-memory
//              exchange happens only if the victim is stuck.

#include "fuzz/harness.h"

namespace harrow::fuzz {
namespace {

// The victim's calls to the rogue. Everything they raise is expected (the rogue is hostile).
Co<void> callRogue(Peer& peer) {
  auto swallow = [](kj::Promise<void> p) {
    return p.then([]() {}, [](kj::Exception&&) {});
  };
  auto call = swallow(callMethod<probe::Words, probe::Words>(
      peer, PROBE_ID, 0, [](probe::Words::Builder b) { b.setText("hi"); })
      .then([](Received<probe::Words> r) { r->getText(); }));
  auto stream = swallow(streamMethod<probe::Count, probe::Item>(
      peer, PROBE_ID, 3, [](probe::Count::Builder b) { b.setN(3); },
      [](ReceiveStream<probe::Item>& items) -> Co<void> {
        while (auto item = co_await items.receive()) item->getI();
      }));
  auto context =
      swallow(contextMethod<probe::Count, probe::Count, probe::Count, probe::Item, probe::Item>(
                  peer, PROBE_ID, 1, [](probe::Count::Builder b) { b.setN(1); },
                  [](CallerContext<probe::Count, probe::Item, probe::Item>& ctx,
                     probe::Count::Reader) -> Co<void> {
                    co_await ctx.openStream([](MsgStream<probe::Item, probe::Item>& s) -> Co<void> {
                      co_await s.send([](probe::Item::Builder b) { b.setI(1); });
                      while (auto item = co_await s.receive()) item->getI();
                    });
                  })
                  .then([](Received<probe::Count> r) {
                    if (r) r->getN();
                  }));
  co_await kj::mv(call);
  co_await kj::mv(stream);
  co_await kj::mv(context);
}

}  // namespace
}  // namespace harrow::fuzz

using namespace harrow;
using namespace harrow::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto& context = io();
  uint8_t flags = data[0];
  std::string bytes = rogueBytes(data, size);

  Actor actor(context, ActorIdentity::random("victim"));
  actor.addServer(kj::heap<ProbeServer>());
  auto pipe = kj::newTwoWayPipe();
  Rogue rogue(kj::mv(pipe.ends[0]));
  auto victim = kj::heap<Channel>(kj::mv(pipe.ends[1]));
  rogue.send(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));

  // The loop reads the clock only when it has nothing to run, unless it polls (flags & 4). In
  // this in-memory exchange it always has something to run until the unit is over, unless the
  // victim is stuck, waiting for something no byte of the rogue can bring (in an actor, it
  // would wait for ever): then a timer due now fires, and the hang is a finding at once,
  // instead of a timeout (which a pending deadline, also fired then, could even hide).
  kj::Promise<void> stuck = kj::READY_NOW;
  if (flags & 4) {
    context.waitScope.setBusyPollInterval(((flags >> 3) & 15) + 1);
  } else {
    auto& timer = context.provider->getTimer();
    stuck = timer.atTime(timer.now()).then([]() {
      KJ_LOG(FATAL, "the victim is stuck: its event loop ran out of work before the unit ended");
      abort();
    }).eagerlyEvaluate(nullptr);
  }
  KJ_DEFER(context.waitScope.setBusyPollInterval(kj::maxValue));
  auto served = actor.serve([&]() -> Co<void> {
    kj::Own<Peer> peer;
    try {
      PeerOptions options;
      options.window = 4;
      // The trusted parent-child hellos (no proof of the tree secret): fuzzed bytes cannot
      // forge a MAC, and past authentication is where the engine is; the handshake harness
      // covers authentication itself.
      peer = co_await handshakeWithChild(kj::mv(victim), actor, options);
    } catch (...) {
      co_return;  // a refused handshake ends only this channel
    }
    kj::Promise<void> calls = kj::READY_NOW;
    if (flags & 2) calls = callRogue(*peer).eagerlyEvaluate(nullptr);
    try {
      co_await peer->serve();
    } catch (...) {
    }
    co_await kj::mv(calls);
    co_await peer->whenDrained();
  });
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { served.wait(context.waitScope); })) {
    // The actor's serve() may only end by the rogue asking it to (cancel-actor).
    if (!actor.cancelCalled()) {
      KJ_LOG(FATAL, "the actor failed because of a peer", *e);
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
