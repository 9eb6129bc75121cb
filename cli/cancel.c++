// harrow cancel: cancelActor (wire.capnp), as a parent sends it; SIGKILL after the grace period,
// by pidfd, for an actor on this host.

#include "cli/commands.h"
#include "cli/errors.h"
#include "cli/format.h"

#include <kj/async-unix.h>
#include <kj/debug.h>

#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

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
  if (info->getInfo().getPid() != entry.pid) {
    // Another pid namespace, or a registry entry that lies: never signal by this pid.
    if (pidfd >= 0) close(pidfd);
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
    RegistryActor::Portal registry(*co_await session.registry());
    auto uuid = kj::heapArray<kj::byte>(entry.uuid);
    bool late = co_await moveOnAfter(actor.timer(), session.opts().grace, [&]() -> Co<void> {
      co_await registry.waitForDeparture([&](auto params) { params.setUuid(uuid); });
    });
    if (late) {
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
