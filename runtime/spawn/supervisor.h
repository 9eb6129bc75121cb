// Supervisors: actor nurseries that restart their children, with Erlang/OTP's strategies
// (tractor has none: its issue #22).
//
//   SupervisorOptions options{.strategy = Strategy::ONE_FOR_ONE};
//   co_await harrow::openActorSupervisor(root, [&](harrow::ActorSupervisor& sup) -> Co<void> {
//     co_await sup.startChild<WorkerImpl>("worker", {.restart = Restart::PERMANENT});
//     for (;;) {
//       auto worker = co_await sup.portal<WorkerActor>("worker");  // the current instance
//       auto failure = co_await errorOf([&]() { return worker.work(); });
//       KJ_IF_MAYBE(e, failure) {  // ActorRestarted: loop, and work on the new instance
//         if (!is(*e, ErrorKind::ACTOR_RESTARTED)) kj::throwFatalException(kj::mv(*e));
//       }
//     }
//   }, options);
//
// A supervisor is an actor nursery (spawning, grace periods, the kill after them and reaping are
// ActorNursery's) whose children's ends do not fail it. When a child ends, its restart type
// decides (OTP's child restart types):
//  - PERMANENT: restarted whatever the end; TRANSIENT: restarted only after an abnormal end (any
//    end but a clean exit, status 0: a crash, a kill, a failure exit); TEMPORARY: never.
//  - A child stopped on purpose (stopChild(), cancel(), the supervisor closing or failing) is
//    never restarted. A child not restarted is no error of the supervisor's (a TEMPORARY child
//    that crashed is logged).
// and the strategy decides who is restarted with it:
//  - ONE_FOR_ONE: the child alone; ONE_FOR_ALL: every child; REST_FOR_ONE: the child and those
//    started after it. The others are stopped (gracefully, last started first) and started again
//    in their start order, under the same names (so each re-registers under its name with the
//    tree's registry). A TEMPORARY sibling is stopped and not restarted.
//
// Restart intensity (OTP's MaxR in MaxT): more than `intensity` restarts within `period` fail
// the supervisor with harrow.RestartIntensity, naming the child, how it ended and the count; its
// children are then stopped and the error escalates to its parent like any nursery's failure.
// A child that fails to start again (SpawnFailed, a crash during its handshake) is retried; each
// try counts as a restart.
//
// Restarts run one at a time, in the order they were decided, as OTP's supervisor handles one
// exit at a time: a group restart stops and starts the whole group before the next begins, and
// the group is taken when its restart begins (a sibling that an earlier restart brought back
// meanwhile goes down again; one startChild() is still starting is stopped once up). A child
// that crashes while a restart of its group is still waiting its turn is part of that restart:
// no restart of its own, and the intensity does not count it. A child that crashes once a
// restart has started it again is a new restart, decided after that one.
//
// Backoff: a restart waits a random delay in [0, min(backoffMax, backoffBase * 2^k)] (full
// jitter), k being the child's restarts within the period before this one, on the actor's KJ
// timer: nothing sleeps, the actor serves on meanwhile.
//
// Portals and restarts. A portal is to one instance of a child. Once that instance has ended and
// is being restarted, its callers (in-flight calls and later ones) get harrow.ActorRestarted
// ("actor 'w' restarted (generation 3): harrow.ActorDied: ..."); portal<I>(name) gives the
// current instance (waiting while one is starting). Portals do not follow restarts by
// themselves: a call in flight when its actor crashed may or may not have taken effect, and only
// the caller can tell whether repeating it is safe (docs/REFERENCE.md, Supervisors).
//
// Each restart is logged at warning level (actor and task names, the child, its generation, the
// cause). The records of each child's last 8 ended instances (a closed channel each) are kept, so
// that their portals keep failing typed; older ones are dropped (their portals then raise
// TransportClosed), so that a long-lived supervisor does not accumulate sockets.

#pragma once

#include <harrow/spawn/actor_nursery.h>

#include <kj/vector.h>

#include <random>

namespace harrow {

enum class Strategy { ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE };
enum class Restart { PERMANENT, TRANSIENT, TEMPORARY };

kj::StringPtr strategyName(Strategy strategy);  // "one_for_one", ...
kj::StringPtr restartName(Restart restart);     // "permanent", ...

struct SupervisorOptions {
  Strategy strategy = Strategy::ONE_FOR_ONE;
  // At most `intensity` restarts within `period` (OTP's defaults: 1 in 5 s).
  uint32_t intensity = 1;
  kj::Duration period = 5 * kj::SECONDS;
  // Full-jitter exponential backoff before each restart (see above).
  kj::Duration backoffBase = 10 * kj::MILLISECONDS;
  kj::Duration backoffMax = 1 * kj::SECONDS;
  // false: wait the whole min(backoffMax, backoffBase * 2^k), no jitter (fixed delays).
  bool jitter = true;
  // The grace period for stopping children.
  ActorNurseryOptions nursery = {};
};

struct ChildSpec {
  Restart restart = Restart::PERMANENT;
  SpawnOptions spawn = {};
};

class ActorSupervisor final {
public:
  ActorSupervisor(Actor& actor, SupervisorOptions options);
  ~ActorSupervisor() noexcept(false);
  KJ_DISALLOW_COPY(ActorSupervisor);

  // Starts child `name` (unique among this supervisor's running children) running the
  // registered implementation `implementation`, as ActorNursery::startActor does, and supervises
  // it. Resolves with the portal to its first instance (generation 1). A failure to start is
  // raised here, as startActor's, and the child is not restarted.
  template <typename Interface>
    requires requires { Interface::INTERFACE_ID; }
  Co<typename Interface::Portal> startChild(kj::StringPtr name, kj::StringPtr implementation,
                                            ChildSpec spec = {}) {
    nurseryRef().checkServes(implementation, Interface::INTERFACE_ID, Interface::NAME, spec.spawn);
    Peer* peer = co_await startChildRaw(name, implementation, spec);
    co_return typename Interface::Portal(*peer);
  }

  // The same by implementation type (startChild<WorkerImpl>("w", {.restart = ...})).
  template <typename Impl>
    requires std::is_base_of_v<typename Impl::Interface::Server, Impl>
  Co<typename Impl::Interface::Portal> startChild(kj::StringPtr name, ChildSpec spec = {}) {
    return startChild<typename Impl::Interface>(
        name, nurseryRef().implementationNameOf<Impl>(), kj::mv(spec));
  }

  // The current instance of child `name`: at once while it runs; while it is being restarted,
  // once its new instance is up. harrow.ActorDied if it has ended for good (not restarted).
  template <typename Interface>
  Co<typename Interface::Portal> portal(kj::StringPtr name) {
    Peer* peer = co_await currentPeer(name);
    co_return typename Interface::Portal(*peer);
  }

  // The generation of child `name`'s current (or starting) instance: 1 for the first, one more
  // with each restart.
  uint32_t generation(kj::StringPtr name);
  // Resolves once child `name` has ended for good: it ended and its restart type does not
  // restart it, it was stopped, or the supervisor closed.
  Co<void> whenEnded(kj::StringPtr name);
  // The pid of child `name`'s running instance, if it runs.
  kj::Maybe<pid_t> pidOf(kj::StringPtr name);
  // Restarts so far, all children together.
  uint32_t restartCount() const { return restarts; }

  // Stops child `name` gracefully (as ActorNursery::cancelActor); it is not restarted, whatever
  // its restart type.
  void stopChild(kj::StringPtr name);

  // Stops every child gracefully; none is restarted.
  void cancel();

  // The untyped form of startChild: the first instance's channel.
  Co<Peer*> startChildRaw(kj::StringPtr name, kj::StringPtr implementation, ChildSpec spec);

private:
  struct Slot;
  struct Instance;
  struct Request;
  enum class Decision { NOT_RESTARTED, RESTART, ESCALATE };

  Actor& actor;
  SupervisorOptions options;
  kj::Vector<kj::Own<Slot>> slots;           // in start order
  kj::Vector<kj::Own<Instance>> instances;   // every instance ever started (watchers of them)
  kj::Vector<kj::TimePoint> recentRestarts;  // within the period, for the intensity
  uint32_t restarts = 0;
  bool closing = false;  // the body ended, failed, or cancel(): nothing restarts any more
  kj::Vector<kj::Own<Request>> requests;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> wakeRestarter;
  kj::Maybe<CancelScope&> restarterScope;
  kj::Maybe<CancelScope&> bodyScope;
  std::mt19937_64 random;
  // While the supervisor is open. It lives inside openActorSupervisor's frame, inside this
  // object's lifetime: its children, which refer to the instances as their watchers, go first.
  kj::Maybe<ActorNursery&> nursery;

  ActorNursery& nurseryRef();
  kj::Maybe<Slot&> slotNamed(kj::StringPtr name);
  Co<Peer*> currentPeer(kj::StringPtr name);
  Co<Peer*> spawnInstance(Slot& slot);
  Decision decide(Instance& instance, int status);
  // Whether a restart of `failed` restarts `other` too (the strategy's group).
  bool inGroup(Slot& failed, Slot& other);
  kj::Exception explainLoss(Instance& instance, int status, kj::Exception died);
  void ended(Instance& instance, int status);
  void markDown(Slot& slot, Instance& instance);
  bool overIntensity();
  kj::Exception intensityError(Slot& slot, kj::StringPtr cause);
  // Drops an ended instance's records (here and in the nursery) once nothing uses them.
  void forget(Instance& instance);
  // The restart intensity is exceeded: fail the supervisor with `error`.
  void giveUp(kj::Exception error);
  kj::Duration backoff(Slot& slot);
  Co<void> runRestarter();
  Co<void> restart(Request& request);
  void close();
  // Inside openActorSupervisor: the nursery is open; starts the restarter task in it.
  void attach(ActorNursery& nursery);

  friend Co<void> openActorSupervisor(Actor& actor,
                                      kj::Function<kj::Promise<void>(ActorSupervisor&)> body,
                                      SupervisorOptions options);
};

// Opens a supervisor in `actor`, runs `body(supervisor)`, and resolves once every child has been
// stopped and reaped (as openActorNursery does); raises the body's error, or
// harrow.RestartIntensity when the children restarted too often.
Co<void> openActorSupervisor(Actor& actor, kj::Function<kj::Promise<void>(ActorSupervisor&)> body,
                             SupervisorOptions options = {});
// The same in the current actor (harrow::currentActor()).
Co<void> openActorSupervisor(kj::Function<kj::Promise<void>(ActorSupervisor&)> body,
                             SupervisorOptions options = {});

}  // namespace harrow
