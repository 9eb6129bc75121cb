#include <harrow/spawn/actor_nursery.h>
#include <harrow/spawn/debug.h>

#include <harrow/co/event.h>

#include <harrow/spawn/link.h>
#include <harrow/spawn/ssh.h>

#include <kj/debug.h>

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace harrow {

struct ActorNursery::Child {
  kj::String name;
  kj::Own<Process> process;  // a ChildProcess, or a RemoteChild's (spawn/link.h)
  kj::Maybe<kj::Own<Peer>> peer;
  bool cancelSent = false;
  kj::Maybe<ChildWatcher&> watcher;  // a supervisor's child: how it ends is the watcher's call
  Event supervised;                  // its supervising task has finished
  // SIGKILL once the grace period after cancel() has passed. Declared after `process`, which it
  // refers to, so that it is destroyed first.
  kj::Maybe<kj::Promise<void>> killAfterGrace;
  kj::Maybe<kj::TimePoint> cancelledAt;  // when teardown began (the metrics' teardown time)
  // A Slurm step's liveness calls (spawn/ssh.h watchStep). Last: it refers to process and peer.
  kj::Maybe<kj::Promise<void>> liveness;
};

namespace {

// Grace periods nest (docs/PROTOCOL.md, "Cancelling an actor"): a child gets at most 3/4 of the
// grace its own actor was given, so its subtree is killed, bottom-up, before its parent's grace
// runs out and the actors in between still run their own teardown.
ActorNurseryOptions nested(Actor& actor, ActorNurseryOptions options) {
  KJ_IF_MAYBE(own, actor.gracePeriod()) {
    options.gracePeriod = kj::min(options.gracePeriod, *own * 3 / 4);
  }
  return options;
}

// How long, once a child's channel has ended, its callers wait for the child's exit to tell them
// why (ActorDied). A dead child is reaped within milliseconds of its channel ending; one that is
// alive but dropped its channel leaves its callers with the channel's own TransportClosed.
constexpr kj::Duration EXIT_EXPLAINS_LOSS_WITHIN = 1 * kj::SECONDS;

}  // namespace

ActorNursery::ActorNursery(Actor& actor, ActorNurseryOptions options)
    : actor(actor), options(nested(actor, options)) {}

ActorNursery::~ActorNursery() noexcept(false) {
  // Children that never got a supervisor (cancelled while starting), and every child of a nursery
  // dropped instead of closed (its block's promise destroyed: KJ cancellation), are killed and
  // reaped by ChildProcess's destructor. All are sent SIGKILL here first, so that they die
  // together: one destructor after another would each wait for its own child's death (a 1,110-
  // actor tree dropped at its root took 0.6 s that way, ten subtrees one after another). Peers go
  // before processes, and a Slurm step's liveness calls before its peer.
  for (auto& child : children) {
    child->liveness = nullptr;
    child->peer = nullptr;
    child->process->kill(SIGKILL);
  }
}

Co<Peer*> ActorNursery::spawn(kj::StringPtr name, kj::StringPtr implementation,
                              SpawnOptions spawnOptions) {
  return spawn(name, implementation, spawnOptions, nullptr);
}

Co<Peer*> ActorNursery::spawn(kj::StringPtr nameParam, kj::StringPtr implementationParam,
                              SpawnOptions spawnOptions, kj::Maybe<ChildWatcher&> watcher) {
  auto begun = kj::systemPreciseMonotonicClock().now();  // harrow_spawn_duration_seconds
  // The caller's strings may be temporaries (startActor(kj::str("w", i), ...) stored and awaited
  // later): own copies, taken before the first suspension, are what the rest uses.
  auto name = kj::heapString(nameParam);
  auto implementation = kj::heapString(implementationParam);
  auto executable = kj::heapString(spawnOptions.executable);
  spawnOptions.executable = executable;
  auto node = kj::heapString(spawnOptions.node);
  auto host = kj::heapString(spawnOptions.host);
  auto remotePath = kj::heapString(spawnOptions.remotePath);
  if (node.size() > 0 && host.size() > 0) {
    kj::throwFatalException(makeError(ErrorKind::SPAWN_FAILED,
        kj::str("actor '", name, "': both a node ('", node, "') and an ssh host ('", host,
                "'): pick one")));
  }
  if (spawnOptions.executable.size() == 0) {
    // Same binary: an unknown implementation is known here already, no need to spawn to find out.
    KJ_IF_MAYBE(impls, actor.implementations()) {
      if (!impls->has(implementation)) {
        kj::throwFatalException(makeError(ErrorKind::SPAWN_FAILED,
            kj::str("actor '", name, "': no implementation registered under the name '",
                    implementation, "'; registered: ", impls->names())));
      }
    }
  }
  auto child = kj::heap<Child>();
  child->name = kj::heapString(name);
  child->watcher = watcher;
  kj::AutoCloseFd parentEnd;
  kj::String homeAddress;  // a remote child's: where its host reaches ours
  if (node.size() > 0) {
    // On another host: its node starts it and relays its channel to parentEnd.
    // (Computed outside the co_await: GCC 12 destroys a conditional's temporaries twice there.)
    kj::String program = executable.size() > 0 ? kj::heapString(executable) : selfExecutable();
    auto remote = co_await startRemoteChild(actor, node, name, program, options.gracePeriod);
    child->process = kj::mv(remote.process);
    parentEnd = kj::mv(remote.channelFd);
    homeAddress = kj::mv(remote.homeAddress);
  } else if (host.size() > 0) {
    // Through ssh: its client's stdin/stdout are the child's channel (spawn/ssh.h).
    kj::String program = remotePath.size() > 0 ? kj::heapString(remotePath)
                         : executable.size() > 0 ? kj::heapString(executable)
                                                 : selfExecutable();
    auto remote = co_await startSshChild(actor, host, name, program);
    child->process = kj::mv(remote.process);
    parentEnd = kj::mv(remote.channelFd);
    homeAddress = kj::mv(remote.homeAddress);
  } else {
    int fds[2];
    KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
    parentEnd = kj::AutoCloseFd(fds[0]);
    kj::AutoCloseFd childEnd(fds[1]);
    // Re-executed or forked by the zygote, as spawnOptions.backend says; registered with the
    // event port before we yield to it.
    child->process = startChildProcess(actor.eventPort(), name, spawnOptions.executable,
                                       spawnOptions.backend, childEnd.get());
  }
  Child& ref = *child;
  children.add(kj::mv(child));

  // The socketpair is trusted by construction (only the child holds its other end): no proof is
  // exchanged on it, and the spawn spec brings the child the tree's secret. Not so srun's relay
  // behind it (a Slurm step's channel crosses the network in plain TCP): there both ends prove the
  // secret, the child's from the shared cookie, and every frame is encrypted as on a link.
  bool throughSlurm = host.size() > 0 && sshHostUrl(host).startsWith("slurm://");
  PeerOptions channelOptions;
  channelOptions.parentChildOverRelay = throughSlurm;
  channelOptions.link = throughSlurm;
  auto handshaken = co_await errorOr([&]() {
    return handshakeWithChild(kj::heap<Channel>(actor.eventPort(), kj::mv(parentEnd)), actor,
                              channelOptions);
  });
  KJ_IF_MAYBE(e, handshaken.error()) {
    // A child that dies before its hello (a crash at startup, a kill) is an ActorDied too.
    if (isTransportClosed(*e)) kj::throwFatalException(co_await explainLoss(ref, kj::mv(*e)));
    kj::throwFatalException(kj::mv(*e));
  }
  kj::Own<Peer> peer = kj::mv(*handshaken);
  // Every task of the child's channel that is still waiting when it dies (a call, a stream, a
  // context) gets ActorDied, naming the child and how it ended, not the channel's EOF or reset.
  peer->explainLossWith([this, &ref](kj::Exception channelError) {
    return explainLoss(ref, kj::mv(channelError));
  });

  auto message = peer->newControlMessage();
  auto spec = message->getRoot<wire::Message>().initSpawnSpec();
  spec.setImplementation(implementation);
  spec.setGracePeriodNanos(options.gracePeriod / kj::NANOSECONDS);
  actor.fillSpawnSpec(spec, name);  // the secret, its listen address, the registry's, the root's
  if (host.size() > 0 || node.size() > 0) {
    // On another host (spawn/ssh.h; a node's link strips the secret itself): none of this host's
    // own addresses, and the registry exposed where the child's host reaches ours.
    stripHostLocalAddresses(spec, /*withoutSecret=*/throughSlurm);
    if (homeAddress.size() > 0) co_await actor.fillRemoteSpawnSpec(spec, homeAddress);
  }
  // The child inherits our message limit, and this channel uses it from the spec on.
  spec.setMaxMessageBytes(actor.maxMessageBytes());
  peer->send(kj::mv(message));
  peer->adoptMaxMessageBytes(actor.maxMessageBytes());

  Peer* result = peer.get();
  if (throughSlurm) {
    ref.liveness = watchStep(actor, *ref.process, *peer).eagerlyEvaluate(nullptr);
  }
  ref.peer = kj::mv(peer);
  KJ_ASSERT_NONNULL(tasks, "the actor nursery is closed").startSoon([this, &ref]() {
    return supervise(ref);
  });
  actor.metrics().spawned(kj::systemPreciseMonotonicClock().now() - begun);
  co_return result;
}

void ActorNursery::checkServes(kj::StringPtr implementation, uint64_t interfaceId,
                               kj::StringPtr interfaceName, const SpawnOptions& spawnOptions) {
  if (spawnOptions.executable.size() > 0) return;  // another program: its registry, not ours
  KJ_IF_MAYBE(impls, actor.implementations()) {
    if (!impls->has(implementation)) return;  // spawn() says so, listing the names
    auto served = impls->served(implementation);
    if (served.interfaceId != 0 && served.interfaceId != interfaceId) {
      kj::throwFatalException(makeError(ErrorKind::SPAWN_FAILED, kj::str(
          "implementation '", implementation, "' serves ", served.interfaceName, ", not ",
          interfaceName, " (startActor<", interfaceName, "Actor>)")));
    }
  }
}

void ActorNursery::cancel() {
  cancelling = true;
  for (auto& child : children) cancelChild(*child);
}

void ActorNursery::cancelChildOf(RawPortal& portal) { cancelChild(childOf(portal)); }

ActorNursery::Child& ActorNursery::childOf(RawPortal& portal) {
  for (auto& child : children) {
    KJ_IF_MAYBE(p, child->peer) {
      if (static_cast<RawPortal*>(p->get()) == &portal) return *child;
    }
  }
  KJ_FAIL_REQUIRE("cancelActor: the portal is not to a child of this actor nursery");
}

Co<int> ActorNursery::stopChildOf(RawPortal& portal) {
  Child& child = childOf(portal);
  cancelChild(child);
  co_return co_await child.process->onExit();
}

pid_t ActorNursery::pidOf(RawPortal& portal) { return childOf(portal).process->pid(); }

Co<bool> ActorNursery::forget(RawPortal& portal) {
  Child& child = childOf(portal);
  // Nothing may use the record any more: the supervising task, the channel's tasks, the exit.
  co_await child.supervised.wait();
  KJ_IF_MAYBE(peer, child.peer) co_await (*peer)->whenDrained();
  co_await child.process->onExit();
  // Once the nursery is closing, reapAll() walks the children across suspensions: the record
  // then stays until the nursery goes.
  if (cancelling) co_return false;
  for (size_t i = 0; i < children.size(); ++i) {
    if (children[i].get() == &child) {
      children[i] = kj::mv(children.back());
      children.removeLast();
      co_return true;
    }
  }
  co_return false;
}

TaskNursery& ActorNursery::taskNursery() {
  return KJ_ASSERT_NONNULL(tasks, "the actor nursery is closed");
}

void ActorNursery::cancelChild(Child& child) {
  if (child.cancelledAt == nullptr) child.cancelledAt = kj::systemPreciseMonotonicClock().now();
  KJ_IF_MAYBE(peer, child.peer) {
    if (!child.cancelSent && !(*peer)->isClosed()) {
      child.cancelSent = true;
      auto message = (*peer)->newControlMessage();
      message->getRoot<wire::Message>().setCancelActor();
      (*peer)->send(kj::mv(message));
    }
  }
  // A child that does not exit within the grace period is killed, whether or not its channel
  // ever ends (its supervisor only starts its own grace timer once the channel has ended, and a
  // child stuck in a task that ignores cancellation keeps its channel open forever).
  if (child.killAfterGrace == nullptr && !child.process->hasExited()) {
    Process& process = *child.process;
    child.killAfterGrace = actor.timer()
        .afterDelay(options.gracePeriod)
        // Not while the tree's debugger is in use (--harrow-debug): the child may be in it.
        .then([this]() { return whenDebuggerIdle(actor, options.gracePeriod); })
        .then([&process]() { process.kill(SIGKILL); })
        .eagerlyEvaluate(nullptr);
  }
}

Co<void> ActorNursery::stop(Child& child) {  // in `children` until the nursery ends
  // Graceful first: cancel-actor, then wait for the exit; SIGKILL after the grace period.
  cancelChild(child);
  co_await child.process->onExit();
  KJ_IF_MAYBE(begun, child.cancelledAt) {
    actor.metrics().tornDown(kj::systemPreciseMonotonicClock().now() - *begun);
  }
}

Co<void> ActorNursery::supervise(Child& child) {  // in `children` until the nursery ends
  KJ_DEFER(child.supervised.set());
  Peer& peer = *KJ_ASSERT_NONNULL(child.peer);
  // serve() routes the child's answers until its channel ends. How that ended is the channel's
  // business: the child's exit status, below, says what happened to the child.
  (void)co_await errorOf([&]() {
    return finally([&]() { return peer.serve(); }, [&]() { return stop(child); });
  });

  int status = co_await child.process->onExit();
  KJ_IF_MAYBE(watcher, child.watcher) co_return watcher->ended(peer, status);
  bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  bool killedByUs = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && child.cancelSent;
  if (!clean && !killedByUs) kj::throwFatalException(died(child, status));
}

kj::Exception ActorNursery::died(Child& child, int status) {
  return actorDied(child.name, child.process->pid(),
                   kj::str(ChildProcess::describe(status), child.process->where(),
                           child.cancelSent ? " while being cancelled" : ""));
}

kj::Promise<kj::Exception> ActorNursery::explainLoss(Child& child, kj::Exception channelError) {
  return child.process->onExit()
      .then([this, &child](int status) {
        KJ_IF_MAYBE(watcher, child.watcher) {
          KJ_IF_MAYBE(peer, child.peer) {
            return watcher->explainLoss(**peer, status, died(child, status));
          }
        }
        return died(child, status);
      }, [](kj::Exception&& unreachable) { return kj::mv(unreachable); })  // a remote child
      .exclusiveJoin(actor.timer().afterDelay(EXIT_EXPLAINS_LOSS_WITHIN)
          .then([channelError = kj::mv(channelError)]() mutable { return kj::mv(channelError); }));
}

Co<void> ActorNursery::reapAll() {
  // Supervisors stop and reap the children they own, even while we are being cancelled; a child
  // that never finished its handshake has no supervisor and is killed now.
  for (auto& child : children) {
    if (child->peer == nullptr) child->process->kill(SIGKILL);
  }
  for (auto& child : children) {
    // A remote child whose link is lost raised ActorUnreachable through its supervisor already.
    co_await child->process->onExit().catch_([](kj::Exception&&) { return 0; });
  }
}

Co<void> openActorNursery(kj::Function<kj::Promise<void>(ActorNursery&)> body,
                          ActorNurseryOptions options) {
  return openActorNursery(currentActor(), kj::mv(body), options);
}

Co<void> openActorNursery(Actor& actor, kj::Function<kj::Promise<void>(ActorNursery&)> body,
                          ActorNurseryOptions options) {
  // The nursery object outlives the task nursery: supervisors refer to its children.
  ActorNursery nursery(actor, options);
  co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
    nursery.tasks = tasks;
    KJ_DEFER(nursery.tasks = nullptr);
    co_await finally([&]() { return body(nursery); }, [&]() -> Co<void> {
      nursery.cancel();  // daemons live until the block ends
      co_await nursery.reapAll();
    });
  });
}

}  // namespace harrow
