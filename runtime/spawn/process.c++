#include <harrow/spawn/process.h>

#include <kj/debug.h>
#include <kj/vector.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace harrow {
namespace {

constexpr int RESET_IN_CHILDREN[] = {SIGPIPE, SIGCHLD, SIGINT, SIGTERM};

}  // namespace

pid_t spawnProcess(kj::ArrayPtr<const kj::StringPtr> argv, int passFd, int stdioFd) {
  KJ_REQUIRE(argv.size() > 0);
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  KJ_ASSERT(posix_spawn_file_actions_init(&actions) == 0);
  KJ_DEFER(posix_spawn_file_actions_destroy(&actions));
  KJ_ASSERT(posix_spawnattr_init(&attributes) == 0);
  KJ_DEFER(posix_spawnattr_destroy(&attributes));

  if (passFd != -1) {
    // dup2 clears close-on-exec on the new descriptor; when it is already 3, do it by hand.
    if (passFd == 3) {
      int flags = fcntl(passFd, F_GETFD);
      KJ_SYSCALL(fcntl(passFd, F_SETFD, flags & ~FD_CLOEXEC));
    } else {
      KJ_ASSERT(posix_spawn_file_actions_adddup2(&actions, passFd, 3) == 0);
    }
  }

  if (stdioFd != -1) {
    KJ_ASSERT(posix_spawn_file_actions_adddup2(&actions, stdioFd, STDIN_FILENO) == 0);
    KJ_ASSERT(posix_spawn_file_actions_adddup2(&actions, stdioFd, STDOUT_FILENO) == 0);
  }

  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  for (int signal : signalsResetInChildren()) sigaddset(&defaults, signal);
  KJ_ASSERT(posix_spawnattr_setsigmask(&attributes, &empty) == 0);
  KJ_ASSERT(posix_spawnattr_setsigdefault(&attributes, &defaults) == 0);
  // A process group of its own: a terminal's Ctrl-C goes to the root alone, which cancels its
  // children in order instead of having them die under it.
  KJ_ASSERT(posix_spawnattr_setpgroup(&attributes, 0) == 0);
  KJ_ASSERT(posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                                      POSIX_SPAWN_SETPGROUP) == 0);

  kj::Vector<char*> args;
  for (auto& arg : argv) args.add(const_cast<char*>(arg.cStr()));
  args.add(nullptr);

  pid_t pid;
  int error = posix_spawn(&pid, argv[0].cStr(), &actions, &attributes, args.begin(), environ);
  if (passFd == 3) {
    int flags = fcntl(passFd, F_GETFD);
    fcntl(passFd, F_SETFD, flags | FD_CLOEXEC);
  }
  if (error != 0) {
    KJ_FAIL_SYSCALL("posix_spawn", error, argv[0]);
  }
  return pid;
}

kj::StringPtr spawnBackendName(SpawnBackend backend) {
  switch (backend) {
    case SpawnBackend::DEFAULT: return "default";
    case SpawnBackend::EXEC: return "exec";
    case SpawnBackend::FORKSERVER: return "forkserver";
  }
  return "?";
}

kj::ArrayPtr<const int> signalsResetInChildren() { return RESET_IN_CHILDREN; }

ChildProcess::ChildProcess(kj::UnixEventPort& eventPort, kj::ArrayPtr<const kj::StringPtr> argv,
                           int passFd)
    : ChildProcess(eventPort, spawnProcess(argv, passFd)) {}

ChildProcess::ChildProcess(kj::UnixEventPort& eventPort, pid_t pid)
    : pidValue(pid), pidSlot(pidValue), exit(nullptr) {
  // Must be registered before returning to the event loop, or the exit could be missed (and,
  // KJ reaping every child, its status lost). A child that has exited already is a zombie until
  // then, and its SIGCHLD is still pending (SIGCHLD is blocked outside the event loop's wait),
  // so the next turn of the loop reaps it through this registration.
  exit = eventPort.onChildExit(pidSlot).then([this](int waitStatus) {
    status = waitStatus;
    return waitStatus;
  }).fork();
}

ChildProcess::~ChildProcess() noexcept(false) {
  if (pidSlot == nullptr) return;  // reaped
  // Stop the event port from waiting for it, then reap it here.
  exit = kj::Promise<int>(0).fork();
  ::kill(pidValue, SIGKILL);
  int waitStatus;
  while (waitpid(pidValue, &waitStatus, 0) < 0 && errno == EINTR) {}
}

void ChildProcess::kill(int signal) {
  KJ_IF_MAYBE(pid, pidSlot) {
    ::kill(*pid, signal);
  }
}

kj::String ChildProcess::describe(int waitStatus) {
  if (WIFEXITED(waitStatus)) return kj::str("exited with status ", WEXITSTATUS(waitStatus));
  if (WIFSIGNALED(waitStatus)) {
    int sig = WTERMSIG(waitStatus);
    return kj::str("killed by signal ", sig, " (", strsignal(sig), ")");
  }
  return kj::str("ended with wait status ", waitStatus);
}

kj::String selfExecutable() {
  char buffer[4096];
  ssize_t n;
  KJ_SYSCALL(n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1));
  return kj::heapString(buffer, n);
}

}  // namespace harrow
