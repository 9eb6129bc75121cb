#include <harrow/spawn/forkserver.h>

#include <harrow/co/errors.h>

#include <kj/debug.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace harrow {
namespace {

// The zygote's end of the control socket, in the zygote. A forked child moves its channel onto
// the same number, which closes its copy of the control socket in the same step.
constexpr int CONTROL_FD = 3;

// The protocol, over a SOCK_SEQPACKET socketpair (one message per request and per reply, so a
// request is never read in pieces):
//   request: RequestHeader, then the actor name (nameSize bytes, no NUL); the child's channel fd
//            as SCM_RIGHTS ancillary data.
//   reply:   Reply: the child's pid, or -1 and the errno of what failed.
// One request at a time: the requesting actor is single-threaded and waits for each reply.
constexpr uint32_t REQUEST_MAGIC = 0x7a79676f;
constexpr size_t MAX_NAME = 1024;
constexpr int REPLY_TIMEOUT_SECONDS = 10;

struct RequestHeader {
  uint32_t magic;
  uint32_t nameSize;
};

struct Reply {
  int32_t pid;
  int32_t error;
};

// The zygote of this process, while it runs. Actor processes are single-threaded; only that
// thread touches this.
struct ForkServer {
  pid_t pid;
  int control;  // our end of the control socket
  int pidfd;    // -1 without pidfd support
};
ForkServer* zygote = nullptr;
ForkServer* retired = nullptr;  // told to leave (retireForkServer), not reaped yet
bool warnedNoZygote = false;

// ---------------------------------------------------------------------------------------------
// Inside the zygote and the children it forks. Nothing here returns into the code that forked
// the zygote: every path ends in _exit.

void closeFrom(int lowest) {
  if (syscall(SYS_close_range, lowest, ~0U, 0) == 0) return;
  long max = sysconf(_SC_OPEN_MAX);
  for (int fd = lowest; fd < (max > 0 ? max : 65536); ++fd) close(fd);
}

void resetSignals() {
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  for (int signal : signalsResetInChildren()) ::signal(signal, SIG_DFL);
}

// A child the zygote forked: the requesting actor's child. Runs harrow::main's child mode.
[[noreturn]] void forkedChildMain(const char* name, int channel, pid_t parent,
                                  ChildEntry& childEntry) {
  setpgid(0, 0);  // a process group of its own, as exec'd children
  // childMain sets PR_SET_PDEATHSIG and checks the parent again; doing it here first closes the
  // window in which the parent could die unnoticed while we set up.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1);
  // The channel becomes fd 3, as for an exec'd child; dup2 closes our copy of the zygote's
  // control socket, which was fd 3.
  if (dup2(channel, CONTROL_FD) < 0) _exit(1);
  close(channel);
  int status = 1;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   status = childEntry(name, parent);
                 })) {
    fprintf(stderr, "harrow: actor '%s' failed: %s\n", name, kj::str(*e).cStr());
    status = 1;
  }
  fflush(nullptr);
  _exit(status);
}

[[noreturn]] void serve(pid_t parent, ChildEntry& childEntry) {
  for (;;) {
    char buffer[sizeof(RequestHeader) + MAX_NAME];
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {buffer, sizeof(buffer)};
    struct msghdr message = {};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(CONTROL_FD, &message, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);  // end-of-file: our actor is done with us (or gone)

    int channel = -1;
    for (auto* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
          c->cmsg_len == CMSG_LEN(sizeof(int))) {
        memcpy(&channel, CMSG_DATA(c), sizeof(int));
      }
    }
    RequestHeader header;
    memcpy(&header, buffer, kj::min(sizeof(header), size_t(n)));
    char name[MAX_NAME + 1];
    Reply reply = {-1, EINVAL};
    if (channel >= 0 && size_t(n) >= sizeof(header) && header.magic == REQUEST_MAGIC &&
        header.nameSize > 0 && header.nameSize == size_t(n) - sizeof(header) &&
        (message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0) {
      memcpy(name, buffer + sizeof(header), header.nameSize);
      name[header.nameSize] = '\0';
      // Raw clone, not fork(): glibc's fork() has no way to ask for CLONE_PARENT. The new
      // process's parent is our parent, the requesting actor; its exit signal is ours (SIGCHLD).
      long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
      if (pid == 0) forkedChildMain(name, channel, parent, childEntry);
      reply = pid > 0 ? Reply{int32_t(pid), 0} : Reply{-1, errno};
    }
    if (channel >= 0) close(channel);
    while (send(CONTROL_FD, &reply, sizeof(reply), MSG_NOSIGNAL) < 0) {
      if (errno != EINTR) _exit(0);  // our actor is gone
    }
  }
}

[[noreturn]] void zygoteMain(int control, pid_t parent, ChildEntry& childEntry) {
  // Die with our actor; if it is gone already, leave now.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
  setpgid(0, 0);  // a terminal's Ctrl-C is for the root alone
  prctl(PR_SET_NAME, "harrow-zygote");
  resetSignals();
  if (control != CONTROL_FD) {
    // Over whatever was fd 3 here (a child actor's own parent channel: not ours to hold).
    if (dup2(control, CONTROL_FD) < 0) _exit(1);
  }
  closeFrom(CONTROL_FD + 1);
  serve(parent, childEntry);
}

int countThreads() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return 1;
  int count = 0;
  while (struct dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count;
}

// Reaps the zygote (a child of ours, not registered with KJ). If it died while an event loop ran,
// KJ's waitpid(-1) reaped it already: ECHILD. The pidfd makes both the kill and the wait refer to
// the zygote and nothing else, even if its pid was reused since.
void reap(ForkServer& server) {
  if (server.pidfd >= 0) {
    syscall(SYS_pidfd_send_signal, server.pidfd, SIGKILL, nullptr, 0);
    siginfo_t info;
    while (waitid(idtype_t(P_PIDFD), server.pidfd, &info, WEXITED) < 0 && errno == EINTR) {}
    close(server.pidfd);
  } else {
    int status;
    while (waitpid(server.pid, &status, 0) < 0 && errno == EINTR) {}
  }
}

// Asks the zygote for a child. Synchronous on purpose: the reply comes within microseconds, and
// the caller must register the pid with the event port before the event loop turns again (see
// ChildProcess's adopting constructor): KJ reaps every exited child on SIGCHLD and drops the
// status of unregistered ones, so a child that failed at once would otherwise be lost, and its
// nursery would wait for it forever. Registering first and then raising SIGCHLD at ourselves
// would not help: the status would be gone already. Done synchronously, the child's own SIGCHLD
// stays pending (blocked) until the loop next waits, by which time the pid is registered.
// `broken` is set when the zygote is out of step or gone (as opposed to refusing a request).
pid_t requestChild(ForkServer& server, kj::StringPtr name, int channelFd, bool& broken) {
  auto fail = [&](kj::StringPtr why) -> pid_t {
    kj::throwFatalException(
        makeError(ErrorKind::SPAWN_FAILED, kj::str("actor '", name, "': ", why)));
  };
  auto gone = [&](kj::StringPtr why) -> pid_t {
    broken = true;
    return fail(kj::str("the fork server (pid ", server.pid, ") ", why));
  };
  if (name.size() == 0 || name.size() > MAX_NAME || strlen(name.cStr()) != name.size()) {
    return fail(kj::str("the fork server takes names of 1 to ", MAX_NAME, " bytes, no NUL"));
  }
  RequestHeader header = {REQUEST_MAGIC, uint32_t(name.size())};
  struct iovec iov[2] = {{&header, sizeof(header)},
                         {const_cast<char*>(name.begin()), name.size()}};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr message = {};
  message.msg_iov = iov;
  message.msg_iovlen = 2;
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  auto* c = CMSG_FIRSTHDR(&message);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &channelFd, sizeof(int));

  while (sendmsg(server.control, &message, MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) {
      return gone(kj::str("is gone: ", strerror(errno)));
    }
  }
  Reply reply;
  ssize_t n;
  while ((n = recv(server.control, &reply, sizeof(reply), 0)) < 0 && errno == EINTR) {}
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return gone(kj::str("did not answer within ", REPLY_TIMEOUT_SECONDS, " s"));
  }
  if (n < 0) return gone(kj::str("is gone: ", strerror(errno)));
  if (n == 0) return gone("is gone");
  if (size_t(n) != sizeof(reply)) return gone("answered out of protocol");
  if (reply.pid <= 0) {
    return fail(kj::str("the fork server could not fork: ", strerror(reply.error)));
  }
  return reply.pid;
}

kj::Own<ChildProcess> execChild(kj::UnixEventPort& eventPort, kj::StringPtr name,
                                kj::StringPtr executable, int channelFd) {
  auto program = executable.size() > 0 ? kj::heapString(executable) : selfExecutable();
  auto parentPid = kj::str(getpid());
  kj::StringPtr argv[] = {program, "--harrow-child", name, parentPid};
  return kj::heap<ChildProcess>(eventPort, argv, channelFd);
}

}  // namespace

SpawnBackend processSpawnBackend() {
  const char* value = getenv("HARROW_SPAWN");
  if (value == nullptr) return SpawnBackend::EXEC;
  kj::StringPtr name = value;
  if (name == "" || name == "exec" || name == "exec-only") return SpawnBackend::EXEC;
  if (name == "forkserver") return SpawnBackend::FORKSERVER;
  KJ_FAIL_REQUIRE("HARROW_SPAWN: unknown spawn backend (use exec, forkserver or exec-only)",
                  name);
}

bool wantsForkServer(bool isRoot) {
  const char* value = getenv("HARROW_SPAWN");
  kj::StringPtr name = value != nullptr ? value : "";
  if (isRoot) return name != "exec-only";
  return name == "forkserver";
}

void startForkServer(ChildEntry childEntry) {
  if (zygote != nullptr) return;
  int threads = countThreads();
  if (threads > 1) {
    KJ_LOG(WARNING, "not starting the zygote: threads exist already, so forkserver spawns will "
                    "use exec", threads);
    return;
  }
  // Whatever is buffered now would be written again by every forked child.
  fflush(stdout);
  fflush(stderr);

  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds));
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    zygoteMain(fds[1], parent, childEntry);
  }
  int error = errno;
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    KJ_LOG(WARNING, "could not fork the zygote; forkserver spawns will use exec",
           strerror(error));
    return;
  }
  // Nothing can have reaped it yet (no event loop runs), so the pidfd refers to it.
  int pidfd = int(syscall(SYS_pidfd_open, pid, 0));
  // A zygote that stops answering must not hang its actor: see requestChild.
  struct timeval timeout = {REPLY_TIMEOUT_SECONDS, 0};
  setsockopt(fds[0], SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  zygote = new ForkServer{pid, fds[0], pidfd};
}

void stopForkServer() {
  retireForkServer();
  if (retired == nullptr) return;
  ForkServer* server = retired;
  retired = nullptr;
  reap(*server);
  delete server;
}

void retireForkServer() {
  if (zygote == nullptr) return;
  if (retired != nullptr) {  // a zygote started since the last one was retired (tests do that)
    reap(*retired);
    delete retired;
  }
  retired = zygote;
  zygote = nullptr;
  warnedNoZygote = true;    // a cancelled actor that still spawns gets exec, not a warning
  close(retired->control);  // end-of-file: the zygote leaves
  retired->control = -1;
  if (retired->pidfd >= 0) syscall(SYS_pidfd_send_signal, retired->pidfd, SIGKILL, nullptr, 0);
}

kj::Maybe<pid_t> forkServerPid() {
  if (zygote == nullptr) return nullptr;
  return zygote->pid;
}

kj::Own<ChildProcess> startChildProcess(kj::UnixEventPort& eventPort, kj::StringPtr name,
                                        kj::StringPtr executable, SpawnBackend backend,
                                        int channelFd) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   if (backend == SpawnBackend::DEFAULT) backend = processSpawnBackend();
                 })) {
    kj::throwFatalException(kj::Exception(
        e->getType(), e->getFile(), e->getLine(),
        kj::str(errorPrefix(ErrorKind::SPAWN_FAILED), "actor '", name, "': ",
                e->getDescription())));
  }
  // A named executable is another program: the zygote can only run this one.
  if (executable.size() > 0) backend = SpawnBackend::EXEC;
  if (backend == SpawnBackend::FORKSERVER && zygote == nullptr) {
    if (!warnedNoZygote) {
      warnedNoZygote = true;
      KJ_LOG(WARNING, "forkserver spawn asked for, but this process has no zygote (it starts in "
                      "harrow::main, or startForkServer()); spawning by exec instead",
             name);
    }
    backend = SpawnBackend::EXEC;
  }

  if (backend == SpawnBackend::FORKSERVER) {
    ForkServer& server = *zygote;
    bool broken = false;
    pid_t pid = 0;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                     pid = requestChild(server, name, channelFd, broken);
                   })) {
      // A zygote that failed to answer cannot be trusted to be in step with its replies any more
      // (a late answer would be taken for the next request's): stop it; later spawns use exec.
      if (broken && zygote == &server) stopForkServer();
      kj::throwFatalException(kj::mv(*e));
    }
    return kj::heap<ChildProcess>(eventPort, pid);
  }

  kj::Maybe<kj::Own<ChildProcess>> process;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   process = execChild(eventPort, name, executable, channelFd);
                 })) {
    kj::throwFatalException(kj::Exception(
        e->getType(), e->getFile(), e->getLine(),
        kj::str(errorPrefix(ErrorKind::SPAWN_FAILED), "actor '", name, "': ",
                e->getDescription())));
  }
  return kj::mv(KJ_ASSERT_NONNULL(process));
}

}  // namespace harrow
