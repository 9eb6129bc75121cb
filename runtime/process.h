// A child process of this one: spawned with posix_spawn, reaped through the event loop.
//
// Spawning resets what the parent's event loop changed for itself: SIGCHLD is blocked (KJ's
// child-exit capture) and SIGPIPE ignored; the child gets the default disposition and an empty
// signal mask. Standard I/O is inherited. Each child leads a process group of its own.

#pragma once

#include <kj/array.h>
#include <kj/async-unix.h>
#include <kj/string.h>

#include <sys/types.h>

namespace harrow {

class ChildProcess {
public:
  // Starts `argv[0]` with `argv`. `passFd`, if not -1, becomes the child's fd 3 (every other fd is
  // close-on-exec). `eventPort` must have captureChildExit() in effect.
  ChildProcess(kj::UnixEventPort& eventPort, kj::ArrayPtr<const kj::StringPtr> argv,
               int passFd = -1);

  // Last resort when the owner was destroyed without waiting (KJ cancellation): SIGKILL and reap,
  // which returns promptly since SIGKILL cannot be ignored. Supervisors wait for onExit() instead.
  ~ChildProcess() noexcept(false);
  KJ_DISALLOW_COPY(ChildProcess);

  pid_t pid() const { return pidValue; }
  bool hasExited() const { return status != nullptr; }

  // The wait status once the child has exited and been reaped; any number of waiters.
  kj::Promise<int> onExit() { return exit.addBranch(); }

  // Sends `signal` unless the child has already been reaped (its pid may then be reused).
  void kill(int signal);

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
