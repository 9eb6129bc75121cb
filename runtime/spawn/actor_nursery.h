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

#include <harrow/actor/actor.h>
#include <harrow/spawn/forkserver.h>

namespace harrow {

// How to run one child.
struct SpawnOptions {
  // The program to run; empty: this program again (a C++ child can only run code linked into
  // it). A named binary must itself call harrow::main and register the implementation; it is
  // always started by exec.
  kj::StringPtr executable;

  // How the child's process starts (runtime/forkserver.h): re-executed (EXEC) or forked by this
  // process's zygote (FORKSERVER, much cheaper). DEFAULT: the process default, HARROW_SPAWN.
  SpawnBackend backend = SpawnBackend::DEFAULT;

  // Run the child on another host: a node's name from --harrow-nodes / HARROW_NODES
  // ("b=tcp:10.77.0.2:7000"), or a node's address ("tcp:HOST:PORT"). Empty: on this host. The
  // node (harrow-node, runtime/node/) runs `executable` (default: this program's path, which
  // must then exist on that host too) and relays the child's channel (<harrow/spawn/link.h>):
  // calls, streams and contexts work as with a local child; a lost link raises
  // harrow.ActorUnreachable. `backend` does not apply.
  kj::StringPtr node = "";

  // Run the child on another host through ssh (<harrow/spawn/ssh.h>): "ssh://[USER@]HOST[:PORT]",
  // or a host's name from --harrow-hosts / HARROW_HOSTS ("b=ssh://deploy@10.0.0.2"). The system's
  // ssh client runs the child there; its stdin/stdout are the child's channel (no daemon, no
  // port on that host). Calls, streams and contexts work as with a local child; a lost session
  // raises harrow.ActorUnreachable. "slurm://NODE" (or "slurm://"): a job step of this process's
  // Slurm allocation, through srun's relay the same way. `backend` does not apply; not together
  // with `node`.
  kj::StringPtr host = "";

  // With `host`: the program's path on that host. Empty: `executable` (default: this program's
  // path), the same path there.
  kj::StringPtr remotePath = "";
};

// Internal to spawn/: how a supervising nursery (<harrow/spawn/supervisor.h>) takes over what
// happens when one of its children ends, instead of the nursery failing. Each child instance is
// known by its channel (the Peer spawn() returned).
class ChildWatcher {
public:
  virtual ~ChildWatcher() noexcept(false) = default;
  // The error the child's callers get once its channel is lost and the child has exited with
  // wait status `status`; `died` is the ActorDied they would get otherwise.
  virtual kj::Exception explainLoss(Peer& child, int status, kj::Exception died) = 0;
  // The child has exited with `status` and been reaped (its channel ended first). Returning is no
  // error of the nursery's; throwing fails it. Not called when the nursery itself is cancelled.
  virtual void ended(Peer& child, int status) = 0;
};

struct ActorNurseryOptions {
  // How long a child may take to exit after cancel-actor before it is killed. Inside a child
  // actor, at most 3/4 of that actor's own grace period (so that grace periods nest: a subtree
  // is killed bottom-up and every actor above a stuck one still runs its teardown).
  kj::Duration gracePeriod = 1 * kj::SECONDS;
};

class ActorNursery {
public:
  ActorNursery(Actor& actor, ActorNurseryOptions options);
  ~ActorNursery() noexcept(false);
  KJ_DISALLOW_COPY(ActorNursery);

  // tractor: start_actor. Spawns this program again in child mode, running the registered
  // implementation `implementation` as actor `name`; resolves once the child has handshaken and
  // received its spawn spec. The portal is valid until the nursery ends. An implementation
  // registered as serving another interface fails here (harrow.SpawnFailed, naming both),
  // before anything is spawned.
  template <typename Interface>
    requires requires { Interface::INTERFACE_ID; }
  Co<typename Interface::Portal> startActor(kj::StringPtr name, kj::StringPtr implementation,
                                            SpawnOptions spawnOptions = {}) {
    checkServes(implementation, Interface::INTERFACE_ID, Interface::NAME, spawnOptions);
    Peer* peer = co_await spawn(name, implementation, spawnOptions);
    co_return typename Interface::Portal(*peer);
  }

  // The same by implementation type (`startActor<CounterImpl>("c1")`): the portal's type follows
  // from the implementation's, so starting one as the wrong interface does not compile.
  template <typename Impl>
    requires std::is_base_of_v<typename Impl::Interface::Server, Impl>
  Co<typename Impl::Interface::Portal> startActor(kj::StringPtr name, SpawnOptions spawnOptions = {}) {
    return startActor<typename Impl::Interface>(name, implementationNameOf<Impl>(), spawnOptions);
  }

  // Every argument is copied before the first suspension: temporaries are fine.
  //
  // The untyped form: the new child's channel (never null; a pointer only because a KJ promise
  // cannot carry a reference). Valid until the nursery ends.
  Co<Peer*> spawn(kj::StringPtr name, kj::StringPtr implementation,
                  SpawnOptions spawnOptions = {});

  // tractor: run_in_actor. Spawns a one-shot actor and runs `fn(Interface::Portal&)` (returning
  // a promise for one result) against it as a task of the nursery. Once the result is in, the
  // actor is cancelled. An error is raised like any child's: it cancels the nursery and arrives
  // with the others when the nursery exits. The returned handle gives the result (once).
  template <typename Interface, typename Fn>
  requires requires { Interface::INTERFACE_ID; }
  auto runInActor(kj::StringPtr name, kj::StringPtr implementation, Fn fn,
                  SpawnOptions spawnOptions = {});

  // The same by implementation type (`runInActor<ProbeImpl>("p1", fn)`), as startActor<Impl>:
  // `fn` takes the implementation's own portal type.
  template <typename Impl, typename Fn>
  requires std::is_base_of_v<typename Impl::Interface::Server, Impl>
  auto runInActor(kj::StringPtr name, Fn fn, SpawnOptions spawnOptions = {}) {
    return runInActor<typename Impl::Interface>(name, implementationNameOf<Impl>(), kj::mv(fn),
                                                spawnOptions);
  }

  // Graceful cancel of every child (cancel-actor, then SIGKILL after the grace period).
  void cancel();

  // tractor: Portal.cancel_actor. Cancels the one child behind `portal` (a portal this nursery's
  // startActor returned) the same graceful way; its siblings carry on. A child that leaves this
  // way (or is killed after the grace period) is no error of the nursery's; calls on the portal
  // fail from then on.
  template <typename Portal>
  void cancelActor(Portal& portal) { cancelChildOf(portal.raw()); }

  size_t size() const { return children.size(); }

private:
  struct Child;
  Actor& actor;
  kj::Maybe<TaskNursery&> tasks;  // the supervisors' nursery, while the block is open
  ActorNurseryOptions options;
  kj::Vector<kj::Own<Child>> children;
  bool cancelling = false;

  Co<void> supervise(Child& child);
  // spawn() for a child whose end `watcher` handles (the supervisor's children).
  Co<Peer*> spawn(kj::StringPtr name, kj::StringPtr implementation, SpawnOptions spawnOptions,
                  kj::Maybe<ChildWatcher&> watcher);
  // cancelActor(), then resolves with the child's wait status once it has exited.
  Co<int> stopChildOf(RawPortal& portal);
  pid_t pidOf(RawPortal& portal);
  Child& childOf(RawPortal& portal);
  // Drops the record of a child that has ended, once nothing uses it (its process and channel go;
  // its portals raise TransportClosed from then on). False if the nursery closed first (the
  // record then goes with it).
  Co<bool> forget(RawPortal& portal);
  void checkServes(kj::StringPtr implementation, uint64_t interfaceId, kj::StringPtr interfaceName,
                   const SpawnOptions& spawnOptions);
  template <typename Impl>
  kj::StringPtr implementationNameOf() {
    return KJ_REQUIRE_NONNULL(actor.implementations(), "this actor has no Implementations")
        .template nameOf<Impl>();
  }
  // harrow.ActorDied for `child`, which ended with wait status `status`.
  kj::Exception died(Child& child, int status);
  // What the child's callers get once its channel is lost: ActorDied if it exits in time, else
  // `channelError`.
  kj::Promise<kj::Exception> explainLoss(Child& child, kj::Exception channelError);
  Co<void> stop(Child& child);
  Co<void> reapAll();
  void cancelChild(Child& child);
  void cancelChildOf(RawPortal& portal);
  TaskNursery& taskNursery();

  friend class ActorSupervisor;
  friend Co<void> openActorNursery(Actor& actor,
                                   kj::Function<kj::Promise<void>(ActorNursery&)> body,
                                   ActorNurseryOptions options);
};

Co<void> openActorNursery(Actor& actor, kj::Function<kj::Promise<void>(ActorNursery&)> body,
                          ActorNurseryOptions options = {});

// The result of a one-shot actor started with runInActor().
template <typename T>
class ActorResult {
public:
  explicit ActorResult(kj::Promise<T>&& promise) : promise(kj::mv(promise)) {}
  // The result, or the actor's error. Once.
  kj::Promise<T> result() {
    KJ_REQUIRE(promise != nullptr, "result() already taken");
    auto taken = kj::mv(KJ_ASSERT_NONNULL(promise));
    promise = nullptr;
    return taken;
  }

private:
  kj::Maybe<kj::Promise<T>> promise;
};

template <typename Interface, typename Fn>
requires requires {
  Interface::INTERFACE_ID;
}
auto ActorNursery::runInActor(kj::StringPtr name, kj::StringPtr implementation, Fn fn,
                              SpawnOptions spawnOptions) {
  using Portal = typename Interface::Portal;
  using T = PromiseValue<decltype(fn(kj::instance<Portal&>()))>;
  return [](ActorNursery& self, Co<Peer*> spawned, Fn fn) -> Co<ActorResult<T>> {
    Peer* peer = co_await kj::mv(spawned);
    auto paf = kj::newPromiseAndFulfiller<T>();
    self.taskNursery().startSoon([&self, peer, fn = kj::mv(fn),
                              fulfiller = kj::mv(paf.fulfiller)]() mutable -> Co<void> {
      Portal portal(*peer);
      try {
        fulfiller->fulfill(co_await fn(portal));
      } catch (...) {
        auto e = currentException();  // handled without suspending; Cancelled too, re-raised
        self.cancelChildOf(*peer);    // its one job failed
        fulfiller->reject(kj::mv(e));
        throw;
      }
      self.cancelChildOf(*peer);  // its one job is done
    });
    co_return ActorResult<T>(kj::mv(paf.promise));
  }(*this, spawn(name, implementation, spawnOptions), kj::mv(fn));
}

// The same, in the current actor (harrow::currentActor()): how a handler grows a subtree.
Co<void> openActorNursery(kj::Function<kj::Promise<void>(ActorNursery&)> body,
                          ActorNurseryOptions options = {});

}  // namespace harrow
