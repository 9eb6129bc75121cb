#include <harrow/main.h>

#include <harrow/actor/busy_poll.h>
#include <harrow/actor/cookie.h>
#include <harrow/actor/log.h>
#include <harrow/actor/metrics_endpoint.h>
#include <harrow/discovery/discovery.h>
#include <harrow/flags.h>
#include <harrow/spawn/debug.h>
#include <harrow/spawn/forkserver.h>
#include <harrow/spawn/ssh.h>

#include <kj/debug.h>
#include <kj/main.h>

#include <atomic>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace harrow {
namespace {

constexpr kj::StringPtr CHILD_FLAG = "--harrow-child"_kj;
constexpr kj::StringPtr SSH_CHILD_FLAG = "--harrow-ssh-child"_kj;  // <harrow/spawn/ssh.h>
constexpr kj::StringPtr SLURM_CHILD_FLAG = "--harrow-slurm-child"_kj;

// Whether a root runs in this process: harrow's one piece of process-wide state, since what it
// guards is process-wide too.
std::atomic<bool> rootRunning{false};

// How a child's channel reached it: fd 3 from its parent or the zygote, an ssh session, a Slurm
// step's srun relay.
enum class ChildChannel { LOCAL, THROUGH_SSH, THROUGH_SLURM };

// A child started through ssh has no PR_SET_PDEATHSIG to end it with its parent: once its
// parent channel is gone (the session ended) it cancels itself as any orphan does, and SIGALRM
// (default action: terminate) ends it one grace period later, stuck or not.
void exitAfterGrace(Actor& actor) {
  kj::Duration grace = 1 * kj::SECONDS;
  KJ_IF_MAYBE(own, actor.gracePeriod()) grace = *own;
  alarm(unsigned((grace / kj::MILLISECONDS + 999) / 1000));
}

// A child's life: handshake on the inherited channel (fd 3, or an ssh session's stdin/stdout),
// receive the spawn spec, serve. Teardown follows the seed notes: rpc tasks first, then the
// parent channel, last.
Co<void> runChild(Actor& actor, Implementations& implementations,  // childMain's, until this ends
                  kj::Own<Channel> channel, ChildChannel reached) {
  PeerOptions options;
  if (reached == ChildChannel::THROUGH_SLURM) {
    // srun's relay crosses the network in plain TCP: the secret does not travel in the spawn
    // spec; the cookie is on a filesystem the allocation's nodes share. Both ends prove it in the
    // handshake, and every frame is encrypted as on a link (<harrow/spawn/ssh.h>).
    actor.setTreeSecret(readCookie(cookiePathFromEnvironment()));
    options.parentChildOverRelay = true;
    options.link = true;
  }
  // Otherwise the channel is trusted by construction (docs/PROTOCOL.md, "authenticate"): no proof
  // on it; the spawn spec brings the tree's secret, before this actor listens or connects anywhere.
  kj::Own<Peer> parent = co_await handshakeWithParent(kj::mv(channel), actor, options);

  auto specMessage = co_await parent->receiveOne();
  auto message = specMessage->getRoot<wire::Message>();
  KJ_REQUIRE(message.isSpawnSpec(), "the parent's first message after hello is not a spawn spec");
  if (message.getSpawnSpec().hasTreeSecret()) {
    actor.setTreeSecret(TreeSecret::fromBytes(message.getSpawnSpec().getTreeSecret()));
  }
  if (uint64_t limit = message.getSpawnSpec().getMaxMessageBytes()) {
    actor.setMaxMessageBytes(limit);  // inherited: for this channel and every later one
    parent->adoptMaxMessageBytes(limit);
  }
  actor.addServer(implementations.create(message.getSpawnSpec().getImplementation()));
  if (uint64_t grace = message.getSpawnSpec().getGracePeriodNanos()) {
    actor.setGracePeriod(grace * kj::NANOSECONDS);
  }
  KJ_IF_MAYBE(discovery, DiscoveryOptions::forChild(message.getSpawnSpec())) {
    setDiscovery(actor, kj::mv(*discovery));
  }
  if (message.getSpawnSpec().getDebug()) {  // --harrow-debug: <harrow/spawn/debug.h>
    joinDebugger(actor, message.getSpawnSpec().getDebugTerminal());
  }

  co_await openNursery([&](TaskNursery& root) -> Co<void> {
    // The parent's messages are served once this actor is up: its own channel server bound and
    // registered with the registry (Actor::serve does both before it runs its body).
    auto serveParent = [&]() { root.startSoon([&]() -> Co<void> {
      KJ_IF_MAYBE(e, co_await errorOf([&]() { return parent->serve(); })) {
        KJ_LOG(INFO, "parent channel lost; shutting down", *e);
      }
      if (reached != ChildChannel::LOCAL) exitAfterGrace(actor);
      actor.cancel();  // the parent is gone: nobody is left to serve
    }); };

    // Once cancelled, this actor spawns nothing more: its zygote leaves now, while the children
    // are torn down, not after them on the way out (issue 20, "Cascades" in bench/README.md).
    root.startSoon([&]() -> Co<void> {
      co_await actor.whenCancelled();
      retireForkServer();
    });
    co_await actor.serve([&]() -> Co<void> {
      serveParent();
      co_await actor.whenCancelled();
    });

    // Every rpc task has finished. Acknowledge the canceller, then close the parent channel.
    KJ_IF_MAYBE(requester, actor.cancelRequester()) {
      if (!requester->isClosed()) {
        auto ack = requester->newControlMessage();
        ack->getRoot<wire::Message>().setCancelActorAck();
        requester->send(kj::mv(ack));
      }
    }
    if (!parent->isClosed()) {
      try {
        co_await parent->channel().shutdownWrite();
      } catch (...) {
        // The parent may already be gone; there is nothing more to tell it.
      }
    }
    root.cancel();
  });
}

void raiseDescriptorLimit() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);  // best effort: the old limit still works for small trees
  }
}

// A child's process, however it started: re-executed with --harrow-child (from harrow::main),
// forked by its parent's zygote (through startForkServer below, with its fds already in place),
// or run by ssh or srun on another host (--harrow-ssh-child, --harrow-slurm-child).
// `parentChannel` makes its channel.
int childMain(kj::StringPtr name, Implementations& implementations,
              kj::Function<kj::Own<Channel>(kj::AsyncIoContext&)> parentChannel,
              ChildChannel reached) {
  prctl(PR_SET_NAME, name.cStr());
  // Children are reaped through the event loop. A forked child's zygote reset SIGCHLD to its
  // default; an exec'd child captured it in harrow::main already (this is then a no-op).
  kj::UnixEventPort::captureChildExit();
  // A zygote of our own when our process default is forkserver, for the children we may spawn:
  // before the event loop and the log callback exist. Reaped when we are done.
  if (wantsForkServer(/*isRoot=*/false)) startForkServer(implementations);
  KJ_DEFER(stopForkServer());
  ActorLog log(name);
  setLogLevelFromEnvironment();

  auto io = kj::setupAsyncIo();
  Actor actor(io, ActorIdentity::random(name), implementations);
  CurrentActorScope current(actor);
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   // The root checked the setting before it started any child.
                   waitPolling(kj::Promise<void>(
                                   runChild(actor, implementations, parentChannel(io), reached)),
                               io, busyPollFromEnvironment());
                 })) {
    fprintf(stderr, "harrow: actor '%s' failed: %s\n", name.cStr(), kj::str(*e).cStr());
    return 1;
  }
  return 0;
}

int localChildMain(kj::StringPtr name, pid_t parentPid, Implementations& implementations) {
  // Die with the parent, even if it is killed with SIGKILL. If it died before this line, we
  // were re-parented already: leave at once.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parentPid) _exit(1);
  return childMain(
      name, implementations,
      [](kj::AsyncIoContext& io) {
        return kj::heap<Channel>(io.unixEventPort, kj::AutoCloseFd(3));
      },
      ChildChannel::LOCAL);
}

int sshChildMain(kj::StringPtr name, Implementations& implementations, bool slurm) {
  auto fds = takeSshChannel(slurm);  // off fds 0 and 1 before anything can print; announced
  return childMain(
      name, implementations,
      [&fds](kj::AsyncIoContext& io) {
        return kj::heap<Channel>(pipePairStream(*io.lowLevelProvider, kj::mv(fds)));
      },
      slurm ? ChildChannel::THROUGH_SLURM : ChildChannel::THROUGH_SSH);
}

// Runs one step of starting the root: false, once its error is printed, if it threw.
template <typename Step>
bool succeeded(Step&& step) {
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(kj::fwd<Step>(step))) {
    fprintf(stderr, "harrow: %s\n", e->getDescription().cStr());
    return false;
  }
  return true;
}

// The settings a root checks before anything starts (Setting::check): a bad one ends it at once,
// naming the flag and its variable, rather than in some child later.
bool settingsAreValid() {
  for (const Setting& setting : settings()) {
    if (setting.check == nullptr) continue;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions(setting.check)) {
      kj::StringPtr problem = e->getDescription();
      if (problem.startsWith(setting.variable)) {  // it names the setting itself
        fprintf(stderr, "harrow: %s\n", problem.cStr());
      } else {
        fprintf(stderr, "harrow: %s / %s: %s\n", setting.flag.cStr(), setting.variable.cStr(),
                problem.cStr());
      }
      return false;
    }
  }
  return true;
}

// The root's name: --harrow-name=NAME, else the program's file name.
kj::StringPtr rootName(const char* program, const RootFlags& flags) {
  KJ_IF_MAYBE (name, flags.name) return *name;
  const char* slash = strrchr(program, '/');
  return slash != nullptr ? slash + 1 : program;
}

// The tree's secret from the cookie file; its channel server and the registry (hosted here, or
// joined): set up as root.serve() starts. The debugger and the metrics endpoint if asked for.
void setUpRoot(Actor& root, kj::StringPtr name) {
  root.setTreeSecret(readCookie(cookiePathFromEnvironment()));
  setDiscovery(root, DiscoveryOptions::forRoot(name));
  if (debugModeFromEnvironment()) hostDebugger(root);
  KJ_IF_MAYBE (address, metricsAddressFromEnvironment()) {
    root.attach(kj::heap<MetricsEndpoint>(root, *address, metricsTokenFromEnvironment()));
  }
}

// Ctrl-C or SIGTERM cancels the tree in order and is remembered in `interruptedBy`; a second one
// leaves at once (children follow through PR_SET_PDEATHSIG).
kj::Promise<void> cancelOnSignals(kj::AsyncIoContext& io, Actor& root, int& interruptedBy) {
  auto onSignal = [&](int signal) {
    return io.unixEventPort.onSignal(signal).then([&root, &interruptedBy, signal](siginfo_t) {
      if (interruptedBy != 0) _exit(128 + signal);
      interruptedBy = signal;
      fprintf(stderr, "harrow: %s: cancelling the actor tree\n", strsignal(signal));
      root.cancel();
      retireForkServer();  // as a cancelled child does (runChild)
    });
  };
  return onSignal(SIGINT).exclusiveJoin(onSignal(SIGTERM)).eagerlyEvaluate(nullptr);
}

// The root actor's life: `body` inside it, until it returns or the tree is cancelled. Exits 0,
// 1 if it failed, or 128+N if signal N cancelled it.
int runRoot(kj::StringPtr name, Implementations& implementations,
            kj::Function<kj::Promise<void>(Actor& root)> body) {
  ActorLog log(name);
  auto io = kj::setupAsyncIo();
  Actor root(io, ActorIdentity::random(name), implementations);
  CurrentActorScope current(root);
  if (!succeeded([&]() { setUpRoot(root, name); })) return 1;

  int interruptedBy = 0;
  auto interrupts = cancelOnSignals(io, root, interruptedBy);
  // The setting was checked by settingsAreValid().
  bool served = succeeded([&]() {
    waitPolling(kj::Promise<void>(root.serve([&]() { return body(root); })), io,
                busyPollFromEnvironment());
  });
  if (interruptedBy != 0) return 128 + interruptedBy;
  return served ? 0 : 1;
}

}  // namespace

void startForkServer(Implementations& implementations) {
  startForkServer([&implementations](kj::StringPtr name, pid_t parentPid) {
    return localChildMain(name, parentPid, implementations);
  });
}

int main(int argc, char** argv, Implementations& implementations,
         kj::Function<kj::Promise<void>(Actor& root)> body) {
  // Before any thread exists: children are reaped through the event loop.
  kj::UnixEventPort::captureChildExit();
  // Each child is a channel (one descriptor in its parent), each listener and connection one
  // more: a wide nursery outgrows the usual soft limit of 1024 long before the hard limit. The
  // event loop is epoll, so large descriptor numbers cost nothing; children inherit the limit.
  raiseDescriptorLimit();

  if (argc >= 4 && CHILD_FLAG == argv[1]) {
    return localChildMain(argv[2], atoi(argv[3]), implementations);
  }
  if (argc >= 3 && SSH_CHILD_FLAG == argv[1]) {
    return sshChildMain(argv[2], implementations, /*slurm=*/false);
  }
  if (argc >= 3 && SLURM_CHILD_FLAG == argv[1]) {
    return sshChildMain(argv[2], implementations, /*slurm=*/true);
  }

  // One root per process, on any thread (tractor refuses a second open_root_actor too): what a
  // root owns — signal dispositions, child-exit capture, the zygote — belongs to the process.
  if (rootRunning.exchange(true)) {
    fprintf(stderr, "harrow: a root actor already runs in this process; harrow::main can run "
                    "one root per process at a time\n");
    return 1;
  }
  KJ_DEFER(rootRunning = false);

  // Ctrl-C and SIGTERM cancel the whole tree in order. Children run in process groups of their
  // own, so a terminal's Ctrl-C reaches only the root and no child races its orderly cancel.
  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureSignal(SIGTERM);

  // The --harrow-* flags go through the environment (<harrow/flags.h>), so that every child
  // inherits them; children get the tree's secret from their spawn spec, never from there.
  RootFlags flags = applyFlags(argc, argv);
  if (flags.help) {
    fputs(settingsHelp().cStr(), stdout);
    return 0;
  }
  if (!settingsAreValid()) return 1;
  setLogLevelFromEnvironment();

  // The zygote for forkserver spawns (runtime/forkserver.h): forked now, before the event loop,
  // any thread or the log callback exist, with the --harrow-* settings above already in the
  // environment (forked children see the environment as it is now). Stopped and reaped on the
  // way out, after the actor tree is gone.
  if (wantsForkServer(/*isRoot=*/true)) startForkServer(implementations);
  KJ_DEFER(stopForkServer());

  return runRoot(rootName(argv[0], flags), implementations, kj::mv(body));
}

}  // namespace harrow
