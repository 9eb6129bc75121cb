// The forkserver spawn backend: a zygote process that forks child actors on request.
//
//   HARROW_SPAWN=forkserver ./my_tree          # every spawn of the tree (children inherit it)
//   SpawnOptions{.backend = SpawnBackend::FORKSERVER}   // one spawn
//   harrow::startForkServer(implementations);  // a main of its own, before kj::setupAsyncIo()
//
// Why: exec pays a whole program start per child (exec, loading, relocation, static
// initialisation); the zygote, forked at the very start of harrow::main before any thread or
// event loop exists, pays it once, then forks each child to run what an exec'd child runs.
//
// Guarantees: a forked child is the requesting actor's own child (CLONE_PARENT: that actor reaps
// it, its PDEATHSIG and getppid() name it) in a process group of its own, like an exec'd one; it
// differs only in what it has of the zygote (environment, working directory, stdio, umask,
// rlimits, cmdline) where an exec'd child has its parent's. No zygote is left behind, not even as
// a zombie. Failures are harrow.SpawnFailed naming the actor, never hangs (a zygote silent for
// 10 s is stopped and exec is used). HARROW_SPAWN=exec-only starts no zygote; under TSan none
// starts and forkserver spawns use exec.
//
// docs/FORKSERVER.md has the design: the zygote's set-up, how a forked child differs from an
// exec'd one, sanitizers, why the request is synchronous (KJ drops unregistered children's exit
// statuses), and how the backend is selected.

#pragma once

#include <harrow/spawn/process.h>

#include <kj/function.h>
#include <kj/memory.h>
#include <kj/string.h>

#include <sys/types.h>

namespace harrow {

// The process default, from HARROW_SPAWN: EXEC when unset, empty, "exec" or "exec-only";
// FORKSERVER for "forkserver". Throws for anything else, listing the values.
SpawnBackend processSpawnBackend();

// Whether this process should have a zygote: the root unless HARROW_SPAWN=exec-only, a child only
// when processSpawnBackend() is FORKSERVER.
bool wantsForkServer(bool isRoot);

// What a child forked by the zygote runs once its fds are in place (its channel is fd 3): harrow's
// child mode, bound by harrow::startForkServer(Implementations&) in <harrow/main.h>. Returns the
// child's exit status.
using ChildEntry = kj::Function<int(kj::StringPtr name, pid_t parentPid)>;

// Starts this process's zygote, whose children run `childEntry`. Call it before
// kj::setupAsyncIo(), before any thread exists and before any ActorLog is installed (all of which
// the children would otherwise inherit half-alive), and after
// kj::UnixEventPort::captureChildExit(). stdout and stderr are flushed first. Logs a warning and
// starts nothing if threads exist already. Idempotent.
void startForkServer(ChildEntry childEntry);

// Starts the process for child actor `name`, with `channelFd` as its fd 3: this program (or
// `executable`) re-executed in child mode, or a fork from this process's zygote, as `backend`
// says (the rules: docs/FORKSERVER.md, "Selection"). The child is registered with `eventPort` on return. Throws an
// exception naming the actor if it cannot start; never blocks for long (a zygote that does not
// answer within seconds is an error).
kj::Own<ChildProcess> startChildProcess(kj::UnixEventPort& eventPort, kj::StringPtr name,
                                        kj::StringPtr executable, SpawnBackend backend,
                                        int channelFd);

// Stops and reaps the zygote, if any: children it forked are not affected (they are ours).
void stopForkServer();

// Tells the zygote to leave now, without waiting for it: for an actor that has been cancelled and
// will spawn nothing more. Its exit then runs while the actor's children are torn down, instead of
// after them (stopForkServer, on the way out, finds it gone: issue 20's cascades measured 2.3 ms
// median, 7.9 ms p90, per actor on that serial path). Spawns after this use exec, quietly.
void retireForkServer();

// The zygote's pid, while there is one.
kj::Maybe<pid_t> forkServerPid();

}  // namespace harrow
