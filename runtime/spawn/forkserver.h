// The forkserver spawn backend: a zygote process that forks child actors on request.
//
// Spawning by exec (the EXEC backend) pays for a whole program start per child: exec, dynamic
// loading, relocation, static initialisation. The zygote pays it once. It is a fork of the actor
// process taken at the very start of harrow::main — after KJ's signal capture, before
// kj::setupAsyncIo(), before any thread, log callback or actor exists — which then waits on a
// Unix socketpair (its control socket). For every request (an actor name plus, by SCM_RIGHTS, the
// child's end of its channel) it forks a child that runs exactly what an exec'd child runs
// (harrow::main's child mode), and answers with the child's pid.
//
// Who is whose child. The zygote forks with the raw clone syscall and CLONE_PARENT, so the new
// process's parent is the zygote's parent: the actor process that asked. That actor reaps it
// through kj::UnixEventPort::onChildExit exactly as an exec'd child (ChildProcess adopts the
// pid), its PR_SET_PDEATHSIG is relative to that actor, and getppid() in the child names it.
// (With CLONE_PARENT the kernel gives the new process the exit signal of the zygote itself,
// SIGCHLD as for any forked process, whatever the flags say.)
//
// The zygote:
//  - leads a process group of its own (a terminal's Ctrl-C is for the root alone), sets
//    PR_SET_PDEATHSIG(SIGKILL) and leaves at once if its parent is already gone;
//  - empties its signal mask and resets signalsResetInChildren() to their defaults, so that it
//    and the children it forks start as an exec'd child would;
//  - closes every file descriptor except stdin, stdout, stderr and its control socket (fd 3);
//  - is named "harrow-zygote" (/proc/PID/comm);
//  - exits with _exit(0) on end-of-file on its control socket, and dies with SIGKILL when its
//    actor dies (PDEATHSIG). Its owner (harrow::main, or whoever called startForkServer) stops
//    it on the way out — closes the socket, SIGKILLs it through a pidfd to be sure — and reaps
//    it, so no zygote is left behind, not even as a zombie. While it runs it is a child of its
//    actor like any other: a check for leftover children should expect forkServerPid().
//
// A forked child: setpgid(0, 0) (its own process group, as exec'd children),
// PR_SET_PDEATHSIG(SIGKILL) and a getppid() check against the requesting actor, PR_SET_NAME,
// its channel moved to fd 3 (which closes its copy of the zygote's socket), then harrow::main's
// child mode, then _exit with its status after flushing stdio: it never returns into the
// zygote's loop, runs no atexit handlers or static destructors of the snapshot it was forked
// from, and is not leak-checked by LSan at exit (the snapshot's allocations, still referenced
// from frames that will never return, are not its leaks). Differences from an exec'd child:
//  - its environment, working directory, stdio, umask and rlimits are those the zygote was
//    forked with (changes the parent makes later are not seen; harrow::main sets HARROW_LOG
//    before the zygote starts);
//  - its /proc/PID/cmdline is that of the process whose zygote forked it (no --harrow-child
//    NAME of its own);
//  - glibc's cached thread id is the zygote's (the raw clone does not update it). glibc uses it
//    only as an opaque owner id for recursive and error-checking mutexes, consistent within the
//    process; raise() and abort() ask the kernel (since glibc 2.34), so abort() still raises
//    SIGABRT in the child.
//
// Sanitizers. The zygote is forked with glibc's fork() (which ASan intercepts) from a
// single-threaded process: ASan and LSan start no thread of their own, so nothing of theirs is
// held mid-operation. The zygote and its children end with _exit, so LSan's leak check at exit
// never runs in them: it would report allocations of the snapshot that are only referenced from
// frames that will never return. Exec'd children and the root are leak-checked as before. Where a
// runtime does start a thread first (TSan's background thread), startForkServer() declines and
// forkserver spawns use exec.
//
// Reaping, and the race with an early exit. KJ 0.9.2 answers SIGCHLD with waitpid(-1, WNOHANG)
// in a loop and drops the status of every child nobody registered with onChildExit. A forked
// child that failed at once, exiting before its pid is registered, would then vanish and its
// nursery wait for it forever; raising SIGCHLD at ourselves after registering (to make KJ look
// again) cannot help, as the status is gone by then. So the request to the zygote is synchronous:
// send, wait for the pid (microseconds), adopt it into a ChildProcess, all before the event loop
// turns again. SIGCHLD is blocked outside the loop's wait (KJ reads it from a signalfd), so the
// child's exit stays pending until then and KJ finds the registered pid.
//
// Failures are errors naming the actor ("harrow.SpawnFailed: actor 'NAME': ..."), never hangs: a
// zygote that is gone or does not answer within 10 s is stopped (its replies could no longer be
// matched to requests) and later forkserver spawns in that process use exec.
//
// Selection (SpawnBackend, runtime/process.h): HARROW_SPAWN=exec (the default) or forkserver
// sets the process default, which children inherit; SpawnOptions::backend overrides it per
// spawn. The root always starts a zygote so that a nursery may ask for forkserver even when the
// default is exec, unless HARROW_SPAWN=exec-only (exec, and no zygote at all: the cost-free
// opt-out). A child starts its own zygote only when its process default is forkserver, so nested
// trees keep working. Asking for forkserver in a process without a zygote falls back to exec with
// a warning (once per process). A named executable (SpawnOptions::executable) always uses exec.
//
// Programs with a main of their own that call harrow::main only in child mode (tests) may start
// and stop the zygote themselves with startForkServer() / stopForkServer().

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

// Starts this process's zygote, whose children run `childEntry`. Call it before kj::setupAsyncIo(), before any thread exists and before any ActorLog is
// installed (all of which the children would otherwise inherit half-alive), and after
// kj::UnixEventPort::captureChildExit(). stdout and stderr are flushed first. Logs a warning and
// starts nothing if threads exist already. Idempotent.
void startForkServer(ChildEntry childEntry);

// Starts the process for child actor `name`, with `channelFd` as its fd 3: this program (or
// `executable`) re-executed in child mode, or a fork from this process's zygote, as `backend`
// says (the rules are above). The child is registered with `eventPort` on return. Throws an
// exception naming the actor if it cannot start; never blocks for long (a zygote that does not
// answer within seconds is an error).
kj::Own<ChildProcess> startChildProcess(kj::UnixEventPort& eventPort, kj::StringPtr name,
                                        kj::StringPtr executable, SpawnBackend backend,
                                        int channelFd);

// Stops and reaps the zygote, if any: children it forked are not affected (they are ours).
void stopForkServer();

// The zygote's pid, while there is one.
kj::Maybe<pid_t> forkServerPid();

}  // namespace harrow
