// Actor: the runtime of one process — its identity, the servers it runs, and the service
// nursery in which every incoming task runs (tractor: Actor, with its "service nursery").

#pragma once

#include "runtime/peer.h"

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/function.h>
#include <kj/map.h>

namespace harrow {

// The implementations a program can run in its actors, registered explicitly by name (no
// static-initialisation magic). A child process is told which one to run.
class Implementations {
public:
  template <typename Impl, typename... Args>
  void add(kj::StringPtr name, Args... args) {
    factories.insert(kj::heapString(name), [args...]() mutable -> kj::Own<ActorServer> {
      return kj::heap<Impl>(args...);
    });
  }

  bool has(kj::StringPtr name) const { return factories.find(name) != nullptr; }
  // Throws, naming the registered implementations, for an unknown name.
  kj::Own<ActorServer> create(kj::StringPtr name);

private:
  kj::HashMap<kj::String, kj::Function<kj::Own<ActorServer>()>> factories;
};

class Actor final : public PeerHost {
public:
  // `implementations`, if given, are what this program can run in children it spawns.
  Actor(kj::AsyncIoContext& io, ActorIdentity identity,
        kj::Maybe<Implementations&> implementations = nullptr);
  // Runs the exit callbacks (last registered first).
  ~Actor() noexcept(false);
  KJ_DISALLOW_COPY(Actor);

  kj::Maybe<Implementations&> implementations() { return impls; }

  // tractor's lifetime stack: callbacks run when the actor is torn down, last first, after its
  // tasks have ended.
  void atExit(kj::Function<void()> callback) { exitCallbacks.add(kj::mv(callback)); }

  kj::AsyncIoContext& io() { return ioContext; }
  kj::Timer& timer() { return ioContext.provider->getTimer(); }
  kj::UnixEventPort& eventPort() { return ioContext.unixEventPort; }

  void addServer(kj::Own<ActorServer> server);

  // Runs `body` with the service nursery open: incoming tasks from every peer run in it until
  // `body` finishes, then they are cancelled and awaited (rpc tasks go first on teardown).
  Co<void> serve(kj::Function<kj::Promise<void>()> body);

  // tractor: Actor.cancel() — callable from synchronous code. The actor's service scope is
  // cancelled; whoever runs the actor then tears it down.
  void cancel();
  bool cancelCalled() const { return cancelRequested; }
  // Resolves once cancel() was called or a peer sent cancel-actor.
  kj::Promise<void> whenCancelled() { return cancelled.addBranch(); }
  // The peer that asked for the cancel, to acknowledge once teardown is done.
  kj::Maybe<Peer&> cancelRequester() { return requester; }

  // PeerHost
  const ActorIdentity& identity() const override { return id; }
  kj::Maybe<ActorServer&> findServer(uint64_t interfaceId) override;
  void controlMessage(Peer& peer, wire::Message::Reader message) override;
  kj::Maybe<TaskNursery&> serviceNursery() override { return service; }

private:
  kj::AsyncIoContext& ioContext;
  ActorIdentity id;
  kj::Maybe<Implementations&> impls;
  kj::Vector<kj::Function<void()>> exitCallbacks;
  kj::HashMap<uint64_t, kj::Own<ActorServer>> servers;
  kj::Maybe<TaskNursery&> service;
  kj::Maybe<Peer&> requester;
  bool cancelRequested = false;
  kj::Own<kj::PromiseFulfiller<void>> cancelFulfiller;
  kj::ForkedPromise<void> cancelled;
};

// The actor this thread runs (tractor: current_actor()): set by harrow::main for the root and for
// every child, so a handler can open its own actor nursery or cancel its actor. Throws when no
// actor runs on this thread.
Actor& currentActor();

// Makes `actor` the current actor for as long as the guard lives.
class CurrentActorScope {
public:
  explicit CurrentActorScope(Actor& actor);
  ~CurrentActorScope() noexcept;
  KJ_DISALLOW_COPY(CurrentActorScope);

private:
  Actor* saved;
};

}  // namespace harrow
