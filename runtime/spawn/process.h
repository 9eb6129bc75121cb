// A child process of this one: spawned with posix_spawn (or forked for us by the zygote, see
// runtime/forkserver.h), reaped through the event loop.
//
// Spawning resets what the parent's event loop changed for itself: SIGCHLD is blocked (KJ's
// child-exit capture) and SIGPIPE ignored; the child gets the default disposition and an empty
// signal mask. Standard I/O is inherited. Each child leads a process group of its own.

#pragma once

#include <kj/array.h>
#include <kj/memory.h>
#include <kj/async-unix.h>
#include <kj/string.h>

#include <sys/types.h>

namespace harrow {

// How a child actor's process is started (SpawnOptions::backend; HARROW_SPAWN for the default).
//  - EXEC: this program re-executed with posix_spawn (or a named executable). Always available.
//  - FORKSERVER: forked by this process's zygote, a single-threaded copy of the program made
//    before any event loop or thread existed (runtime/forkserver.h). Much cheaper: no exec, no
//    dynamic loading, no static initialisation; the child is still a child of this process.
//  - DEFAULT: the process default, from the environment variable HARROW_SPAWN.
enum class SpawnBackend { DEFAULT, EXEC, FORKSERVER };

kj::StringPtr spawnBackendName(SpawnBackend backend);  // "default", "exec", "forkserver"

// The signals a child gets back at their default disposition: those harrow and KJ handle or
// ignore in a parent (SIGPIPE, SIGCHLD, SIGINT, SIGTERM). Both backends reset these and empty the
// signal mask; other handlers (say, a sanitizer's SIGSEGV handler) are left alone.
kj::ArrayPtr<const int> signalsResetInChildren();

// Starts `argv[0]` as ChildProcess does (signals reset, a process group of its own), without
// registering it with any event loop: the caller reaps it (waitpid) before the event loop runs
// again. For a child the process waits for with its event loop stopped (the root's debugger).
// `stdioFd`, if not -1, becomes the child's stdin and stdout (the ssh client, spawn/ssh.h).
pid_t spawnProcess(kj::ArrayPtr<const kj::StringPtr> argv, int passFd = -1, int stdioFd = -1);

// What a supervisor needs of a child actor's process: a ChildProcess here, or one a node runs on
// another host (<harrow/spawn/link.h>).
class Process {
public:
  virtual ~Process() noexcept(false) = default;
  // The pid on the host that runs it.
  virtual pid_t pid() const = 0;
  virtual bool hasExited() const = 0;
  // The wait status once the child has exited; any number of waiters. A remote child whose link
  // is lost raises harrow.ActorUnreachable instead (its fate is unknown here; its node kills it).
  virtual kj::Promise<int> onExit() = 0;
  // Sends `signal` unless the child has exited already.
  virtual void kill(int signal) = 0;
  // How a supervisor's errors name where it runs: "" here, " on node 'b'" for a remote child.
  virtual kj::String where() const { return kj::str(); }
};

class ChildProcess final : public Process {
public:
  // Starts `argv[0]` with `argv`. `passFd`, if not -1, becomes the child's fd 3 (every other fd is
  // close-on-exec). `eventPort` must have captureChildExit() in effect.
  ChildProcess(kj::UnixEventPort& eventPort, kj::ArrayPtr<const kj::StringPtr> argv,
               int passFd = -1);

  // Adopts `pid`, a child of this process started some other way (the zygote forks children
  // whose parent is this process). Must be called before the event loop runs again after the
  // child came into being: KJ reaps *every* exited child on SIGCHLD (waitpid(-1)) and drops the
  // status of those nobody registered, so a child that exited before this registration would
  // never be seen exiting. runtime/forkserver.h says how the zygote path keeps to this.
  ChildProcess(kj::UnixEventPort& eventPort, pid_t pid);

  // Last resort when the owner was destroyed without waiting (KJ cancellation): SIGKILL and reap,
  // which returns promptly since SIGKILL cannot be ignored. Supervisors wait for onExit() instead.
  ~ChildProcess() noexcept(false);
  KJ_DISALLOW_COPY(ChildProcess);

  pid_t pid() const override { return pidValue; }
  bool hasExited() const override { return status != nullptr; }

  // The wait status once the child has exited and been reaped; any number of waiters.
  kj::Promise<int> onExit() override { return exit.addBranch(); }

  // Sends `signal` unless the child has already been reaped (its pid may then be reused).
  void kill(int signal) override;

  // "exited with status 3", "killed by signal 9 (Killed)".
  static kj::String describe(int waitStatus);

private:
  pid_t pidValue;
  kj::Maybe<pid_t> pidSlot;  // nulled by the event port when the child is reaped
  kj::Maybe<int> status;
  kj::ForkedPromise<int> exit;
};

// The path of this process's executable, for re-executing itself.
kj::String selfExecutable();

}  // namespace harrow
