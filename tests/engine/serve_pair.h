// Two actors of one process with a channel between them, as the engine tests drive them.

#pragma once

#include <harrow/actor/actor.h>
#include <harrow/co/nursery.h>

namespace harrow::testing {

// Serves both ends (each in its own actor) while `body(clientPeer)` runs; then the client closes
// its write side, the server's serve loop ends on that EOF, and everything is awaited.
inline void servePair(kj::WaitScope& waitScope, Actor& clientActor, Peer& clientPeer,
                      Actor& serverActor, Peer& serverPeer,
                      kj::Function<kj::Promise<void>(Peer&)> body) {
  serverActor.serve([&]() -> Co<void> {
    co_await openNursery([&](TaskNursery& n) -> Co<void> {
      n.startSoon([&]() { return serverPeer.serve(); });
      co_await clientActor.serve([&]() -> Co<void> {
        co_await openNursery([&](TaskNursery& client) -> Co<void> {
          client.startSoon([&]() -> Co<void> {
            try {
              co_await clientPeer.serve();
            } catch (const kj::Exception& e) {
              if (!isCancelled(e)) throw;
            }
          });
          co_await body(clientPeer);
          co_await clientPeer.channel().shutdownWrite();
          client.cancel();
        });
      });
    });
  }).wait(waitScope);
}

}  // namespace harrow::testing
