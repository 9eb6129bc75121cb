// Two actors of one process with a channel between them, as the engine tests drive them.
//
//   class EchoTest : public harrow::testing::TwoActorTest<> {};
//   TEST_F(EchoTest, Echoes) {
//     run([&](Peer& client) -> Co<void> { co_await callMethod<...>(client, ...); });
//   }
//
// Every step of the set-up is a helper of its own, so a test that needs one step done its own way
// (the parent-child hellos, a transport of its choice, peers that never serve) still uses the rest:
// channelsThroughListener() makes the two channels (a ChannelPair, tests/channels.h), connectPeers() handshakes them,
// handshakeOverPipe() does both over an in-process pipe, servePair() serves both ends while the
// test's body runs, and TwoActorTest is the fixture holding the two actors on one event loop.

#pragma once

#include <harrow/actor/actor.h>
#include <harrow/co/nursery.h>
#include <harrow/ipc/transport.h>
#include "tests/channels.h"

#include <gtest/gtest.h>

#include <kj/async-io.h>

namespace harrow::testing {

// The two Peers of one channel after its handshake: the opener's (the client's) and the
// acceptor's (the server's).
struct PeerPair {
  kj::Own<Peer> client;
  kj::Own<Peer> server;
};

// A connection through a listener bound at `address` ("tcp:127.0.0.1:0", a unix-abstract one):
// the client connects, the server side is what the listener accepted. Both with `options`.
inline ChannelPair channelsThroughListener(kj::AsyncIoContext& io, kj::StringPtr address,
                                           ChannelOptions options = {}) {
  auto& network = io.provider->getNetwork();
  auto listener = Listener::bind(network, address, options).wait(io.waitScope);
  auto accepted = listener->accept();
  ChannelPair channels;
  channels.client = connect(network, listener->getAddress(), options).wait(io.waitScope);
  channels.server = accepted.wait(io.waitScope);
  return channels;
}

// Waits for both sides of a handshake under way (each side's handshake(), or the parent's
// handshakeWithChild() and the child's handshakeWithParent()). Coroutines start eagerly, so both
// sides progress whichever is waited for first.
inline PeerPair awaitPeers(kj::WaitScope& waitScope, Co<kj::Own<Peer>> clientSide,
                           Co<kj::Own<Peer>> serverSide) {
  PeerPair peers;
  peers.client = clientSide.wait(waitScope);
  peers.server = serverSide.wait(waitScope);
  return peers;
}

// The authenticated handshake over `channels` (the client opens), each side with its options.
inline PeerPair connectPeers(kj::WaitScope& waitScope, ChannelPair channels, Actor& clientActor,
                             Actor& serverActor, PeerOptions clientOptions = {},
                             PeerOptions serverOptions = {}) {
  auto clientSide = handshake(kj::mv(channels.client), clientActor, true, clientOptions);
  auto serverSide = handshake(kj::mv(channels.server), serverActor, false, serverOptions);
  return awaitPeers(waitScope, kj::mv(clientSide), kj::mv(serverSide));
}

// Both ends of a new in-process pipe (a socketpair), as channels over its streams.
inline ChannelPair pipeChannels(kj::AsyncIoContext& io) {
  auto pipe = io.provider->newTwoWayPipe();
  return {kj::heap<Channel>(kj::mv(pipe.ends[0])), kj::heap<Channel>(kj::mv(pipe.ends[1]))};
}

// The authenticated handshake over a new in-process pipe.
inline PeerPair handshakeOverPipe(kj::AsyncIoContext& io, Actor& clientActor, Actor& serverActor,
                                  PeerOptions clientOptions = {}, PeerOptions serverOptions = {}) {
  return connectPeers(io.waitScope, pipeChannels(io), clientActor, serverActor, clientOptions,
                      serverOptions);
}

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

// The engine tests' fixture: a server's and a client's actor on one event loop (`Base` is
// ::testing::Test, or a TestWithParam for tests run over each transport).
template <typename Base = ::testing::Test>
class TwoActorTest : public Base {
protected:
  ~TwoActorTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  Actor serverActor{io, ActorIdentity::random("server")};
  Actor clientActor{io, ActorIdentity::random("client")};

  // servePair() for these actors' `peers`.
  void serve(PeerPair& peers, kj::Function<kj::Promise<void>(Peer& client)> body) {
    servePair(io.waitScope, clientActor, *peers.client, serverActor, *peers.server, kj::mv(body));
  }

  // Connects the actors over a new in-process pipe (both sides with `options`) and runs `body`
  // with the client's peer while both sides serve; then closes the client's channel and waits
  // for the server to see it.
  void run(kj::Function<kj::Promise<void>(Peer& client)> body, PeerOptions options = {}) {
    auto peers = handshakeOverPipe(io, clientActor, serverActor, options, options);
    serve(peers, kj::mv(body));
  }
};

}  // namespace harrow::testing
