// Actor nurseries: spawn actors as child processes and supervise them (tractor: open_nursery,
// ActorNursery.start_actor).
//
//   co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> harrow::Co<void> {
//     CounterActor::Portal counter = co_await an.startActor<CounterActor>("counter-1", "counter");
//     auto total = co_await counter.add(5);
//   });  // every child is cancelled, has exited and has been reaped
//
// Supervision (one-cancels-all, as a trio nursery):
//  - Each child runs under a supervising task in the nursery. An error in the body, a child dying
//    unexpectedly, or a failure anywhere cancels the nursery; every child is then asked to stop
//    (cancel-actor), and killed (SIGKILL) if it has not exited after the grace period.
//  - When the body finishes, daemon actors are cancelled the same way; the block resolves once
//    every child process has been reaped. Errors are raised together (MultiError).
//  - A child that is still starting (no handshake yet) when the nursery is cancelled is killed at
//    once.

#pragma once

#include "runtime/actor.h"
#include "runtime/process.h"

namespace harrow {

// How to run one child.
struct SpawnOptions {
  // The program to run; empty: this program again (a C++ child can only run code linked into
  // it). A named binary must itself call harrow::main and register the implementation.
  kj::StringPtr executable;
};

struct ActorNurseryOptions {
  // How long a child may take to exit after cancel-actor before it is killed.
  kj::Duration gracePeriod = 1 * kj::SECONDS;
};

class ActorNursery {
public:
  ActorNursery(Actor& actor, ActorNurseryOptions options);
  ~ActorNursery() noexcept(false);
  KJ_DISALLOW_COPY(ActorNursery);

  // tractor: start_actor. Spawns this program again in child mode, running the registered
  // implementation `implementation` as actor `name`; resolves once the child has handshaken and
  // received its spawn spec. The portal is valid until the nursery ends.
  template <typename Interface>
  Co<typename Interface::Portal> startActor(kj::StringPtr name, kj::StringPtr implementation,
                                            SpawnOptions spawnOptions = {}) {
    Peer* peer = co_await spawn(name, implementation, spawnOptions);
    co_return typename Interface::Portal(*peer);
  }

  // The untyped form: the new child's channel (never null; a pointer only because a KJ promise
  // cannot carry a reference). Valid until the nursery ends.
  Co<Peer*> spawn(kj::StringPtr name, kj::StringPtr implementation,
                  SpawnOptions spawnOptions = {});

  // Graceful cancel of every child (cancel-actor, then SIGKILL after the grace period).
  void cancel();

  size_t size() const { return children.size(); }

private:
  struct Child;
  Actor& actor;
  kj::Maybe<TaskNursery&> tasks;  // the supervisors' nursery, while the block is open
  ActorNurseryOptions options;
  kj::Vector<kj::Own<Child>> children;
  bool cancelling = false;

  Co<void> supervise(Child& child);
  Co<void> stop(Child& child);
  Co<void> reapAll();

  friend Co<void> openActorNursery(Actor& actor,
                                   kj::Function<kj::Promise<void>(ActorNursery&)> body,
                                   ActorNurseryOptions options);
};

Co<void> openActorNursery(Actor& actor, kj::Function<kj::Promise<void>(ActorNursery&)> body,
                          ActorNurseryOptions options = {});

// The same, in the current actor (harrow::currentActor()): how a handler grows a subtree.
Co<void> openActorNursery(kj::Function<kj::Promise<void>(ActorNursery&)> body,
                          ActorNurseryOptions options = {});

}  // namespace harrow
