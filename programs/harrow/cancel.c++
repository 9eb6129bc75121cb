// harrow cancel: cancelActor (wire.capnp), as a parent sends it; SIGKILL after the grace period,
// by pidfd, for an actor on this host whose process this command has verified itself.
//
// Nothing it is told decides what it kills: the registry's entry and the actor's own answer only
// name a candidate pid. It signals that pid only if, by the kernel's word, (1) a pidfd opened
// before anything else was decided refers to it, (2) the process runs as this user (real and
// effective uid, from /proc, read while the pidfd shows it alive: not a reused pid), and (3) it is
// the process at the other end of the authenticated channel the cancel went over (SO_PEERCRED of
// the Unix socket; on loopback TCP, the socket /proc/net/tcp pairs with ours is open in it).
// Otherwise the actor is only asked, as one on another host is (docs/PROTOCOL.md, "Threat model").

#include "programs/harrow/commands.h"
#include "programs/harrow/errors.h"
#include "programs/harrow/format.h"

#include <kj/async-unix.h>
#include <kj/debug.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace harrow::cli {
namespace {

using Introspect = introspect::Introspect;

// Whether the actor at these addresses runs on this host: Unix sockets, or TCP on loopback.
bool onThisHost(const RegisteredActor& entry) {
  if (entry.addresses.size() == 0) return false;
  for (auto& address : entry.addresses) {
    if (address.startsWith("unix:")) continue;
    if (address.startsWith("tcp:127.") || address.startsWith("tcp:[::1]") ||
        address.startsWith("tcp:localhost:")) {
      continue;
    }
    return false;
  }
  return true;
}

// A pidfd for `pid`, or -1 if there is no such process.
int openPidfd(pid_t pid) {
  int fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0 && errno != ESRCH) KJ_FAIL_SYSCALL("pidfd_open", errno, pid);
  return fd;
}

// Why the process of `pidfd` (pid `pid`) is not this user's, or nullptr if it is: its real and
// effective uids from /proc/PID/status, which describe the pidfd's process only if that process is
// still alive after the read (a pid is reused only once its process has gone).
kj::Maybe<kj::String> whyNotThisUser(int pidfd, pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  long real = -1, effective = -1;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) == 0) {
      sscanf(line.c_str() + 4, "%ld %ld", &real, &effective);
      break;
    }
  }
  if (syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0) {
    if (errno == ESRCH) return kj::str("process ", pid, " has exited");
    return kj::str("process ", pid, " may not be signalled by this user: ", strerror(errno));
  }
  if (real < 0) return kj::str("/proc/", pid, "/status cannot be read");
  if (real != long(geteuid()) || effective != long(geteuid())) {
    return kj::str("process ", pid, " runs as uid ", real, "/", effective, ", not as this user (uid ",
                   geteuid(), ")");
  }
  return nullptr;
}

// An address as /proc/net/tcp{,6} prints it: the address words in hex as stored, ":", the port.
std::string procNetAddress(const sockaddr_storage& address) {
  char text[64];
  if (address.ss_family == AF_INET) {
    auto& in = reinterpret_cast<const sockaddr_in&>(address);
    snprintf(text, sizeof(text), "%08X:%04X", in.sin_addr.s_addr, ntohs(in.sin_port));
  } else {
    auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
    uint32_t words[4];
    memcpy(words, &in6.sin6_addr, sizeof(words));
    snprintf(text, sizeof(text), "%08X%08X%08X%08X:%04X", words[0], words[1], words[2], words[3],
             ntohs(in6.sin6_port));
  }
  return text;
}

// The inode of the TCP socket on this host whose local end is `local` and remote end `remote`
// (/proc/net/tcp or tcp6), or 0.
unsigned long tcpSocketInode(const sockaddr_storage& local, const sockaddr_storage& remote) {
  std::string wantLocal = procNetAddress(local);
  std::string wantRemote = procNetAddress(remote);
  std::ifstream table(local.ss_family == AF_INET ? "/proc/net/tcp" : "/proc/net/tcp6");
  std::string line;
  std::getline(table, line);  // the header
  while (std::getline(table, line)) {
    char localText[64], remoteText[64];
    unsigned long inode = 0;
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    if (sscanf(line.c_str(), " %*s %63s %63s %*s %*s %*s %*s %*s %*s %lu", localText,
               remoteText, &inode) != 3) {
      continue;
    }
    if (wantLocal == localText && wantRemote == remoteText) return inode;
  }
  return 0;
}

// Whether process `pid` holds the socket with `inode` among its open files.
bool holdsSocket(pid_t pid, unsigned long inode) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* fds = opendir(dir.c_str());
  if (fds == nullptr) return false;
  KJ_DEFER(closedir(fds));
  std::string want = "socket:[" + std::to_string(inode) + "]";
  while (struct dirent* entry = readdir(fds)) {
    char target[64];
    ssize_t n = readlinkat(dirfd(fds), entry->d_name, target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (want == target) return true;
  }
  return false;
}

// Why process `pid` is not the one at the other end of `peer`'s channel, or nullptr if it is.
kj::Maybe<kj::String> whyNotAtTheOtherEnd(Peer& peer, pid_t pid) {
  int fd = -1;
  KJ_IF_MAYBE(f, peer.channel().getStream().getFd()) fd = *f;
  if (fd < 0) return kj::str("the channel has no socket to ask the kernel about");
  sockaddr_storage local = {}, remote = {};
  socklen_t localLength = sizeof(local), remoteLength = sizeof(remote);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &localLength) != 0 ||
      getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &remoteLength) != 0) {
    return kj::str("the channel's socket cannot be asked: ", strerror(errno));
  }
  if (local.ss_family == AF_UNIX) {
    struct ucred credentials = {};
    socklen_t length = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
      return kj::str("SO_PEERCRED: ", strerror(errno));
    }
    if (credentials.pid != pid) {
      return kj::str("the actor's socket is served by pid ", credentials.pid, ", not ", pid);
    }
    return nullptr;
  }
  if (local.ss_family == AF_INET || local.ss_family == AF_INET6) {
    // The actor's end of this connection is the socket whose local address is our remote one.
    unsigned long inode = tcpSocketInode(remote, local);
    if (inode == 0) return kj::str("the actor's end of the connection is not on this host");
    if (!holdsSocket(pid, inode)) {
      return kj::str("process ", pid, " does not hold the actor's end of the connection");
    }
    return nullptr;
  }
  return kj::str("the channel is neither a Unix socket nor TCP");
}

}  // namespace

Co<int> cancel(Session& session) {
  auto entry = co_await session.resolveOne(session.opts().args[0]);
  auto& actor = session.self();
  bool local = onThisHost(entry);
  // Opened before the actor confirms its pid below: from then on the pidfd can only be that
  // actor's process (a pid reused later is another process's, with another pidfd).
  int pidfd = local ? openPidfd(entry.pid) : -1;
  KJ_DEFER(if (pidfd >= 0) close(pidfd));

  Peer* peer = co_await session.connect(entry);
  IntrospectActor::Portal introspection(*peer);
  auto info = co_await session.bounded<Received<Introspect::InfoResults>>(
      kj::str("actor '", entry.name, "'"), [&]() { return introspection.info(); });
  // Whether the pidfd's process is the actor's, by the kernel's word (the opening comment).
  kj::Maybe<kj::String> unverified;
  if (pidfd >= 0) {
    if (info->getInfo().getPid() != entry.pid) {
      // Another pid namespace, or a registry entry that lies.
      unverified = kj::str("the actor reports pid ", info->getInfo().getPid(), ", the registry ",
                           entry.pid);
    } else KJ_IF_MAYBE(why, whyNotThisUser(pidfd, entry.pid)) {
      unverified = kj::mv(*why);
    } else KJ_IF_MAYBE(why, whyNotAtTheOtherEnd(*peer, entry.pid)) {
      unverified = kj::mv(*why);
    }
  } else if (local) {
    unverified = kj::str("there is no process ", entry.pid);
  }
  if (unverified != nullptr && pidfd >= 0) {
    // Never signal by this pid: the actor may only be asked.
    close(pidfd);
    pidfd = -1;
  }

  auto sentAt = actor.timer().now();
  {
    auto message = peer->newControlMessage();
    message->getRoot<wire::Message>().setCancelActor();
    peer->send(kj::mv(message));
  }

  kj::StringPtr outcome;
  if (pidfd >= 0) {
    kj::UnixEventPort::FdObserver exit(actor.eventPort(), pidfd,
                                       kj::UnixEventPort::FdObserver::OBSERVE_READ);
    bool late = co_await moveOnAfter(actor.timer(), session.opts().grace,
                                     [&]() { return exit.whenBecomesReadable(); });
    if (!late) {
      outcome = "exited";
    } else {
      // The last resort: the actor's teardown did not finish within the grace period.
      if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) < 0 && errno != ESRCH) {
        KJ_FAIL_SYSCALL("pidfd_send_signal", errno, entry.pid);
      }
      co_await session.bounded<bool>(kj::str("actor '", entry.name, "' (killed)"),
          [&]() { return exit.whenBecomesReadable().then([]() { return true; }); });
      outcome = "killed";
    }
  } else {
    // Not on this host (or not in our pid namespace): it may only be asked. Done once it has
    // left the registry.
    RegistryActor::Portal registry = co_await session.registry();
    auto uuid = kj::heapArray<kj::byte>(entry.uuid);
    bool late = co_await moveOnAfter(actor.timer(), session.opts().grace, [&]() -> Co<void> {
      co_await registry.waitForDeparture([&](auto params) { params.setUuid(uuid); });
    });
    if (late) {
      KJ_IF_MAYBE(why, unverified) {
        fail(EXIT_REMOTE_ERROR, kj::str("actor '", entry.name, "' did not leave within the grace "
                                        "period, and its process could not be verified (", *why,
                                        "): not killed"));
      }
      fail(EXIT_REMOTE_ERROR, kj::str("actor '", entry.name, "' did not leave within the grace "
                                      "period, and it is not on this host: not killed"));
    }
    outcome = "left the registry";
  }
  uint64_t nanos = (actor.timer().now() - sentAt) / kj::NANOSECONDS;

  if (session.opts().json) {
    printLine(kj::str("{\"name\": ", jsonString(entry.name), ", \"uuid\": \"", hex(entry.uuid),
                      "\", \"pid\": ", entry.pid, ", \"outcome\": ", jsonString(outcome),
                      ", \"seconds\": ", seconds(nanos), "}"));
  } else if (outcome == "killed") {
    printLine(kj::str(entry.name, " (pid ", entry.pid, ") did not exit within the grace period: "
                      "killed with SIGKILL"));
  } else {
    printLine(kj::str(entry.name, " (pid ", entry.pid, ") ", outcome, " ",
                      humanDuration(nanos), " after cancelActor"));
  }
  co_return EXIT_OK;
}

}  // namespace harrow::cli
