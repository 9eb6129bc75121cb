#include <harrow/spawn/supervisor.h>

#include <harrow/co/event.h>

#include <kj/debug.h>

#include <sys/wait.h>

#include <deque>

namespace harrow {

kj::StringPtr strategyName(Strategy strategy) {
  switch (strategy) {
    case Strategy::ONE_FOR_ONE: return "one_for_one"_kj;
    case Strategy::ONE_FOR_ALL: return "one_for_all"_kj;
    case Strategy::REST_FOR_ONE: return "rest_for_one"_kj;
  }
  KJ_UNREACHABLE;
}

kj::StringPtr restartName(Restart restart) {
  switch (restart) {
    case Restart::PERMANENT: return "permanent"_kj;
    case Restart::TRANSIENT: return "transient"_kj;
    case Restart::TEMPORARY: return "temporary"_kj;
  }
  KJ_UNREACHABLE;
}

namespace {

// How many ended instances of each child keep their records (see the header's "Portals").
constexpr size_t ENDED_KEPT = 8;

kj::String describeDuration(kj::Duration d) {
  if (d % kj::SECONDS == 0 * kj::SECONDS) return kj::str(d / kj::SECONDS, " s");
  if (d % kj::MILLISECONDS == 0 * kj::MILLISECONDS) return kj::str(d / kj::MILLISECONDS, " ms");
  return kj::str(d / kj::MICROSECONDS, " us");
}

}  // namespace

// One child, across its instances.
struct ActorSupervisor::Slot {
  enum class State {
    STARTING,  // startChild() is spawning its first instance
    UP,        // `current` runs
    DOWN,      // `current` ended; a new instance is coming (the restarter's requests)
    ENDED,     // no instance runs or will: not restarted, stopped, or never started
  };

  kj::String name;
  kj::String implementation;
  kj::String executable;  // spec.spawn.executable points here
  ChildSpec spec;
  State state = State::STARTING;
  uint32_t generation = 1;  // of the current or coming instance
  kj::Maybe<Instance&> current;
  kj::Own<Event> up = kj::heap<Event>();  // set once it leaves STARTING or DOWN
  Event ended;                            // set once it is ENDED
  kj::String endedBecause;
  bool stopRequested = false;
  kj::Vector<kj::TimePoint> restartTimes;  // this child's, within the period: its backoff
  std::deque<Instance*> endedInstances;    // oldest first, at most ENDED_KEPT once one is up

  void end(kj::String why) {
    state = State::ENDED;
    endedBecause = kj::mv(why);
    up->set();
    ended.set();
  }
};

// One instance of a child: a process and its channel. It watches how that instance ends.
struct ActorSupervisor::Instance final : public ChildWatcher {
  Instance(ActorSupervisor& supervisor, Slot& slot)
      : supervisor(supervisor), slot(slot), generation(slot.generation) {}

  ActorSupervisor& supervisor;
  Slot& slot;
  uint32_t generation;
  Peer* peer = nullptr;
  pid_t pid = 0;
  kj::Maybe<Decision> decision;  // made once, by whichever of the two below sees the exit first

  kj::Exception explainLoss(Peer& child, int status, kj::Exception died) override {
    peer = &child;
    return supervisor.explainLoss(*this, status, kj::mv(died));
  }
  void ended(Peer& child, int status) override {
    peer = &child;
    supervisor.ended(*this, status);
  }
};

// One decision to restart `failed` (and its group), waiting its turn with the restarter. Who
// goes down with it is decided when its turn comes (restart()), as OTP's supervisor, handling one
// exit at a time, sees its children then.
struct ActorSupervisor::Request {
  Request(Slot& failed, kj::String cause) : failed(failed), cause(kj::mv(cause)) {}
  Slot& failed;
  kj::String cause;
};

ActorSupervisor::ActorSupervisor(Actor& actor, SupervisorOptions options)
    : actor(actor), options(options), random(std::random_device{}()) {
  KJ_REQUIRE(options.period > 0 * kj::SECONDS, "SupervisorOptions::period must be positive");
  KJ_REQUIRE(options.backoffBase <= options.backoffMax,
             "SupervisorOptions::backoffBase is over backoffMax");
}

ActorSupervisor::~ActorSupervisor() noexcept(false) {}

ActorNursery& ActorSupervisor::nurseryRef() {
  return KJ_REQUIRE_NONNULL(nursery, "the supervisor is closed");
}

kj::Maybe<ActorSupervisor::Slot&> ActorSupervisor::slotNamed(kj::StringPtr name) {
  for (size_t i = slots.size(); i-- > 0;) {
    if (slots[i]->name == name) return *slots[i];
  }
  return nullptr;
}

Co<Peer*> ActorSupervisor::startChildRaw(kj::StringPtr name, kj::StringPtr implementation,
                                         ChildSpec spec) {
  KJ_REQUIRE(!closing, "the supervisor is closing: no child can be started", name);
  KJ_IF_MAYBE(existing, slotNamed(name)) {
    KJ_REQUIRE(existing->state == Slot::State::ENDED,
               "a child of this supervisor runs under that name already", name);
  }
  // Own copies before the first suspension: the caller's strings may be temporaries.
  auto slot = kj::heap<Slot>();
  slot->name = kj::heapString(name);
  slot->implementation = kj::heapString(implementation);
  slot->executable = kj::heapString(spec.spawn.executable);
  slot->spec = spec;
  slot->spec.spawn.executable = slot->executable;
  Slot& ref = *slot;
  slots.add(kj::mv(slot));

  try {
    co_return co_await spawnInstance(ref);
  } catch (...) {
    auto e = currentException();  // handled without suspending; Cancelled too, re-raised
    ref.end(kj::str("it failed to start: ", e.getDescription()));
    throw;
  }
}

Co<Peer*> ActorSupervisor::spawnInstance(Slot& slot) {  // in `slots` for the supervisor's life
  auto instance = kj::heap<Instance>(*this, slot);
  Instance& ref = *instance;
  instances.add(kj::mv(instance));
  slot.current = ref;
  Peer* peer = co_await nurseryRef().spawn(slot.name, slot.implementation, slot.spec.spawn, ref);
  ref.peer = peer;
  ref.pid = nurseryRef().pidOf(*peer);
  if (ref.decision == nullptr) {  // (it could only have ended already in a race with the loop)
    slot.state = Slot::State::UP;
    slot.up->set();
    if (slot.stopRequested || closing) nurseryRef().cancelChildOf(*peer);
  }
  while (slot.endedInstances.size() > ENDED_KEPT) {
    forget(*slot.endedInstances.front());
    slot.endedInstances.pop_front();
  }
  co_return peer;
}

Co<Peer*> ActorSupervisor::currentPeer(kj::StringPtr nameParam) {
  auto name = kj::heapString(nameParam);
  for (;;) {
    Slot* slot = nullptr;
    KJ_IF_MAYBE(s, slotNamed(name)) slot = s;
    KJ_REQUIRE(slot != nullptr, "the supervisor has no child of that name", name);
    switch (slot->state) {
      case Slot::State::UP:
        KJ_IF_MAYBE(instance, slot->current) co_return instance->peer;
        KJ_UNREACHABLE;
      case Slot::State::ENDED:
        kj::throwFatalException(makeError(ErrorKind::ACTOR_DIED,
            kj::str("actor '", name, "' has ended and is not restarted (", slot->endedBecause,
                    "; restart type ", restartName(slot->spec.restart), ")")));
      case Slot::State::STARTING:
      case Slot::State::DOWN:
        break;
    }
    co_await slot->up->wait();
  }
}

uint32_t ActorSupervisor::generation(kj::StringPtr name) {
  KJ_IF_MAYBE(slot, slotNamed(name)) return slot->generation;
  KJ_FAIL_REQUIRE("the supervisor has no child of that name", name);
}

Co<void> ActorSupervisor::whenEnded(kj::StringPtr name) {
  Slot* slot = nullptr;
  KJ_IF_MAYBE(s, slotNamed(name)) slot = s;
  KJ_REQUIRE(slot != nullptr, "the supervisor has no child of that name", name);
  co_await slot->ended.wait();
}

kj::Maybe<pid_t> ActorSupervisor::pidOf(kj::StringPtr name) {
  KJ_IF_MAYBE(slot, slotNamed(name)) {
    if (slot->state == Slot::State::UP) {
      KJ_IF_MAYBE(instance, slot->current) return instance->pid;
    }
  }
  return nullptr;
}

void ActorSupervisor::stopChild(kj::StringPtr name) {
  KJ_IF_MAYBE(slot, slotNamed(name)) {
    slot->stopRequested = true;
    if (slot->state == Slot::State::UP) {
      KJ_IF_MAYBE(instance, slot->current) nurseryRef().cancelChildOf(*instance->peer);
    }
    // STARTING or DOWN: stopped once up (spawnInstance), or not started again (restart()).
    return;
  }
  KJ_FAIL_REQUIRE("the supervisor has no child of that name", name);
}

void ActorSupervisor::cancel() {
  close();
  nurseryRef().cancel();
}

void ActorSupervisor::close() {
  if (closing) return;
  closing = true;
  KJ_IF_MAYBE(scope, restarterScope) scope->cancel();
  // Nobody waits for an instance that will not come.
  for (auto& slot : slots) {
    if (slot->state == Slot::State::DOWN) {
      slot->end(kj::str("the supervisor closed before it was restarted"));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Deciding

kj::Exception ActorSupervisor::explainLoss(Instance& instance, int status, kj::Exception died) {
  if (decide(instance, status) != Decision::RESTART) return died;
  return makeError(ErrorKind::ACTOR_RESTARTED,
      kj::str("actor '", instance.slot.name, "' restarted (generation ", instance.generation + 1,
              "): ", died.getDescription()));
}

void ActorSupervisor::ended(Instance& instance, int status) { decide(instance, status); }

void ActorSupervisor::markDown(Slot& slot, Instance& instance) {
  instance.decision = Decision::RESTART;
  slot.generation = instance.generation + 1;
  slot.state = Slot::State::DOWN;
  slot.up = kj::heap<Event>();
}

bool ActorSupervisor::overIntensity() {
  auto now = actor.timer().now();
  kj::Vector<kj::TimePoint> kept;
  for (auto at : recentRestarts) {
    if (now - at < options.period) kept.add(at);
  }
  kept.add(now);
  recentRestarts = kj::mv(kept);
  return recentRestarts.size() > options.intensity;
}

kj::Exception ActorSupervisor::intensityError(Slot& slot, kj::StringPtr cause) {
  return makeError(ErrorKind::RESTART_INTENSITY,
      kj::str(cause, "; restarting child '", slot.name, "' would be restart ",
              recentRestarts.size(), " within ", describeDuration(options.period),
              ", over the supervisor's intensity of ", options.intensity, " (",
              strategyName(options.strategy), "): the supervisor gave up and stopped its "
              "children"));
}

ActorSupervisor::Decision ActorSupervisor::decide(Instance& instance, int status) {
  KJ_IF_MAYBE(made, instance.decision) return *made;
  instance.slot.endedInstances.push_back(&instance);
  Slot& slot = instance.slot;
  auto cause = kj::str("actor '", slot.name, "' (generation ", instance.generation, ", pid ",
                       instance.pid, ") ", ChildProcess::describe(status));
  bool current = false;
  KJ_IF_MAYBE(c, slot.current) current = c == &instance;
  bool normal = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  bool restartable = slot.spec.restart == Restart::PERMANENT ||
                     (slot.spec.restart == Restart::TRANSIENT && !normal);

  auto endSlot = [&](kj::String why) {
    instance.decision = Decision::NOT_RESTARTED;
    if (current) slot.end(kj::mv(why));
    return Decision::NOT_RESTARTED;
  };
  if (closing || !current) return endSlot(kj::str(cause, ", as the supervisor closed"));
  if (slot.stopRequested) return endSlot(kj::str(cause, ", stopped"));
  if (!restartable) {
    if (!normal) {
      kj::StringPtr why = cause;
      kj::StringPtr restart = restartName(slot.spec.restart);
      KJ_LOG(WARNING, "a supervised child ended abnormally; its restart type does not restart it",
             why, restart);
    }
    return endSlot(kj::mv(cause));
  }

  // A child that a restart still waiting its turn will stop and start anyway (its group's):
  // its crash is part of that restart, not one of its own, and does not count towards the
  // intensity (OTP: terminating the group, the supervisor takes in that exit).
  for (auto& queued : requests) {
    if (inGroup(queued->failed, slot)) {
      markDown(slot, instance);
      return Decision::RESTART;
    }
  }
  if (overIntensity()) {
    instance.decision = Decision::ESCALATE;
    slot.end(kj::str(cause, ", and the supervisor gave up"));
    giveUp(intensityError(slot, cause));
    return Decision::ESCALATE;
  }

  ++restarts;
  actor.metrics().recordRestart(slot.name);  // harrow_restarts_total{child=...}
  markDown(slot, instance);
  requests.add(kj::heap<Request>(slot, kj::mv(cause)));
  KJ_IF_MAYBE(wake, wakeRestarter) {
    (*wake)->fulfill();
    wakeRestarter = nullptr;
  }
  return Decision::RESTART;
}

bool ActorSupervisor::inGroup(Slot& failed, Slot& other) {
  if (&other == &failed || options.strategy == Strategy::ONE_FOR_ALL) return true;
  if (options.strategy == Strategy::ONE_FOR_ONE) return false;
  bool after = false;  // rest_for_one: those started after it
  for (auto& slot : slots) {
    if (slot.get() == &other) return after;
    after = after || slot.get() == &failed;
  }
  return false;
}

void ActorSupervisor::forget(Instance& instance) {
  ActorNursery& children = nurseryRef();
  children.taskNursery().startSoon([this, &children, &instance]() -> Co<void> {
    // The instance is the record's watcher: it goes only if the record went.
    bool forgotten = co_await children.forget(*instance.peer);
    if (!forgotten) co_return;
    for (size_t i = 0; i < instances.size(); ++i) {
      if (instances[i].get() == &instance) {
        instances[i] = kj::mv(instances.back());
        instances.removeLast();
        break;
      }
    }
  });
}

void ActorSupervisor::giveUp(kj::Exception error) {
  kj::StringPtr why = error.getDescription();
  KJ_LOG(ERROR, "a supervisor gave up", why);
  close();
  // The body is cancelled now, before the callers of the child that ended learn of it: they
  // have nothing left to act on (a body that rethrew their ActorDied would only add a second
  // failure to the supervisor's). The supervisor fails with `error`: a task of its nursery that
  // raises it cancels the rest, and the nursery raises it to the parent once every child is
  // stopped and reaped.
  KJ_IF_MAYBE(scope, bodyScope) scope->cancel();
  nurseryRef().taskNursery().startSoon(
      [error = kj::mv(error)]() mutable -> kj::Promise<void> { return kj::mv(error); });
}

// ---------------------------------------------------------------------------------------------
// Restarting

kj::Duration ActorSupervisor::backoff(Slot& slot) {
  auto now = actor.timer().now();
  kj::Vector<kj::TimePoint> kept;
  for (auto at : slot.restartTimes) {
    if (now - at < options.period) kept.add(at);
  }
  size_t k = kept.size();
  kept.add(now);
  slot.restartTimes = kj::mv(kept);
  kj::Duration cap = options.backoffBase;
  for (size_t i = 0; i < k && cap < options.backoffMax; ++i) cap = cap * 2;
  cap = kj::min(cap, options.backoffMax);
  int64_t nanos = cap / kj::NANOSECONDS;
  if (nanos <= 0 || !options.jitter) return cap;
  std::uniform_int_distribution<int64_t> full(0, nanos);  // full jitter
  return full(random) * kj::NANOSECONDS;
}

Co<void> ActorSupervisor::runRestarter() {
  for (;;) {
    if (requests.empty()) {
      auto paf = kj::newPromiseAndFulfiller<void>();
      wakeRestarter = kj::mv(paf.fulfiller);
      co_await kj::mv(paf.promise);
      continue;
    }
    // One at a time, in order: a group restart finishes before the next decision's starts.
    auto request = kj::mv(requests[0]);
    kj::Vector<kj::Own<Request>> rest;
    for (size_t i = 1; i < requests.size(); ++i) rest.add(kj::mv(requests[i]));
    requests = kj::mv(rest);
    co_await restart(*request);
  }
}

Co<void> ActorSupervisor::restart(Request& request) {  // the restarter's, which awaits this
  Slot& failed = request.failed;
  if (failed.state != Slot::State::DOWN) co_return;  // an earlier restart brought it back
  // A sibling of the group that startChild() is still starting is stopped once it is up.
  for (size_t i = 0; i < slots.size(); ++i) {
    Slot& sibling = *slots[i];
    while (inGroup(failed, sibling) && sibling.state == Slot::State::STARTING) {
      auto up = sibling.up->wait();
      co_await errorOf([&]() { return kj::mv(up); });  // (an Event replaced while waited on)
    }
  }
  // The group as it is now, in start order (OTP: one_for_all every child, rest_for_one those
  // started after it): one brought back by an earlier restart since the crash goes down again,
  // so each restart stops and starts the whole group. Temporary ones are stopped and not
  // started again.
  kj::Vector<Instance*> stop;
  kj::Vector<Slot*> start;
  for (auto& other : slots) {
    Slot& sibling = *other;
    if (!inGroup(failed, sibling)) continue;
    if (&sibling == &failed || sibling.state == Slot::State::DOWN) {
      start.add(&sibling);
    } else if (sibling.state == Slot::State::UP) {
      KJ_IF_MAYBE(running, sibling.current) {
        stop.add(running);
        if (sibling.spec.restart == Restart::TEMPORARY) {
          sibling.stopRequested = true;
        } else {
          markDown(sibling, *running);
          start.add(&sibling);
        }
      }
    }
  }
  {
    // "restarting a supervised child; why = actor 'w' (generation 1, pid 12) exited with status
    // 3; generation = 2; strategy = one_for_one; siblings = 0"
    kj::StringPtr why = request.cause;
    uint32_t generation = failed.generation;
    kj::StringPtr strategy = strategyName(options.strategy);
    size_t siblings = stop.size();
    KJ_LOG(WARNING, "restarting a supervised child", why, generation, strategy, siblings);
  }
  // Siblings first, last started first, each gracefully (cancel-actor, the kill after the grace
  // period): ActorNursery's own stop.
  for (size_t i = stop.size(); i-- > 0;) {
    co_await nurseryRef().stopChildOf(*stop[i]->peer);
  }

  co_await actor.timer().afterDelay(backoff(failed));
  for (Slot* slot : start) {
    while (slot->state == Slot::State::DOWN) {
      if (slot->stopRequested) {
        slot->end(kj::str("stopped while being restarted"));
        break;
      }
      auto failure = co_await errorOf([&]() -> Co<void> { co_await spawnInstance(*slot); });
      KJ_IF_MAYBE(e, failure) {
        kj::StringPtr child = slot->name;
        kj::StringPtr why = e->getDescription();
        KJ_LOG(WARNING, "a supervised child failed to start again", child, why);
        if (overIntensity()) {
          auto cause = kj::str("actor '", slot->name, "' failed to start again: ",
                               e->getDescription());
          slot->end(kj::str(cause));
          giveUp(intensityError(*slot, cause));
          co_return;
        }
        ++restarts;
        actor.metrics().recordRestart(slot->name);
        co_await actor.timer().afterDelay(backoff(*slot));
      } else {
        KJ_IF_MAYBE(instance, slot->current) {
          kj::StringPtr child = slot->name;
          uint32_t generation = slot->generation;
          pid_t pid = instance->pid;
          KJ_LOG(INFO, "supervised child restarted", child, generation, pid);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

void ActorSupervisor::attach(ActorNursery& opened) {
  nursery = opened;
  opened.taskNursery().startSoon([this]() -> Co<void> {
    CancelScope scope;
    scope.setName(kj::str("supervisor"));
    restarterScope = scope;
    KJ_DEFER(restarterScope = nullptr);
    if (closing) co_return;
    co_await scope.run([this]() { return runRestarter(); });
  });
}

Co<void> openActorSupervisor(kj::Function<kj::Promise<void>(ActorSupervisor&)> body,
                             SupervisorOptions options) {
  return openActorSupervisor(currentActor(), kj::mv(body), options);
}

Co<void> openActorSupervisor(Actor& actor, kj::Function<kj::Promise<void>(ActorSupervisor&)> body,
                             SupervisorOptions options) {
  // The supervisor outlives the actor nursery (inside the call below), whose children refer to
  // its instances.
  ActorSupervisor supervisor(actor, options);
  co_await openActorNursery(actor, [&](ActorNursery& nursery) -> Co<void> {
    supervisor.attach(nursery);
    // However the body ends, nothing is restarted from here on: the nursery stops every child.
    KJ_DEFER(supervisor.close());
    // Its own scope, which giveUp() cancels.
    CancelScope bodyScope;
    supervisor.bodyScope = bodyScope;
    KJ_DEFER(supervisor.bodyScope = nullptr);
    co_await bodyScope.run([&]() { return body(supervisor); });
  }, options.nursery);
  supervisor.nursery = nullptr;
}

}  // namespace harrow
