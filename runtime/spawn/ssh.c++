#include <harrow/spawn/ssh.h>

#include <harrow/actor/introspect.h>
#include <harrow/spawn/link.h>

#include <kj/debug.h>
#include <kj/vector.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace harrow {

namespace {

// Calls `each(name, value)` for every "name=value" of a comma-separated list.
void forEachEntry(kj::StringPtr list, kj::FunctionParam<void(kj::StringPtr, kj::StringPtr)> each) {
  kj::StringPtr rest = list;
  while (rest.size() > 0) {
    size_t end = rest.size();
    KJ_IF_MAYBE(comma, rest.findFirst(',')) end = *comma;
    auto entry = kj::heapString(rest.begin(), end);
    rest = end < rest.size() ? rest.slice(end + 1) : kj::StringPtr("");
    KJ_IF_MAYBE(eq, entry.findFirst('=')) {
      each(kj::heapString(entry.begin(), *eq), entry.slice(*eq + 1));
    }
  }
}

}  // namespace

kj::Maybe<kj::String> namedEntry(kj::StringPtr list, kj::StringPtr name) {
  kj::Maybe<kj::String> found;
  forEachEntry(list, [&](kj::StringPtr entryName, kj::StringPtr value) {
    if (found == nullptr && entryName == name) found = kj::heapString(value);
  });
  return found;
}

namespace {

kj::Exception spawnFailed(kj::StringPtr why) { return makeError(ErrorKind::SPAWN_FAILED, why); }

kj::StringPtr environmentOr(const char* name, kj::StringPtr otherwise = "") {
  const char* value = getenv(name);
  return value != nullptr ? kj::StringPtr(value) : otherwise;
}

// 'text' for a POSIX shell: the remote login shell reads the command.
kj::String shellQuoted(kj::StringPtr text) {
  kj::Vector<char> out(text.size() + 2);
  out.add('\'');
  for (char c : text) {
    if (c == '\'') {
      out.addAll(kj::StringPtr("'\\''"));
    } else {
      out.add(c);
    }
  }
  out.add('\'');
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

// The tree-wide settings a remote child gets (the environment does not cross ssh): none of them
// secret. The cookie's path does not go: a child gets the secret in its spawn spec.
constexpr const char* FORWARDED[] = {
    "HARROW_LOG",   "HARROW_LOG_FORMAT",      "HARROW_HOSTS", "HARROW_SSH_CONFIG",
    "HARROW_NODES", "HARROW_LINK_TIMEOUT_MS", "HARROW_SPAWN", "HARROW_HANDSHAKE_TIMEOUT_MS",
};

constexpr kj::StringPtr ANNOUNCE = "harrow-ssh-child "_kj;
constexpr size_t MAX_NOISE = 64 * 1024;  // what a login script may print before the announcement

kj::String programOnPath(kj::StringPtr program, kj::StringPtr package) {
  kj::StringPtr path = environmentOr("PATH", "/usr/bin:/bin");
  while (true) {
    size_t end = path.size();
    KJ_IF_MAYBE(colon, path.findFirst(':')) end = *colon;
    auto candidate = kj::str(kj::heapString(path.begin(), end), "/", program);
    if (access(candidate.cStr(), X_OK) == 0) return candidate;
    if (end == path.size()) break;
    path = path.slice(end + 1);
  }
  kj::throwFatalException(spawnFailed(kj::str("no `", program, "` on PATH (Debian: apt-get "
                                              "install ", package, ")")));
}

// ServerAliveInterval/CountMax from --harrow-link-timeout: a silent connection is dropped after
// about the same bound as a node's link (ssh counts whole seconds).
kj::String serverAliveInterval() {
  auto timing = LinkTiming::fromEnvironment();
  auto bound = timing.heartbeat + timing.silence;
  return kj::str(kj::max(int64_t(1), (bound / kj::MILLISECONDS + 1500) / 3000));
}

}  // namespace

SshHost SshHost::parse(kj::StringPtr url) {
  auto bad = [&](kj::StringPtr why) -> SshHost {
    kj::throwFatalException(spawnFailed(kj::str("host '", url, "': ", why,
                                                " (ssh://[USER@]HOST[:PORT])")));
  };
  SshHost result;
  if (url.startsWith("slurm://")) {
    // A node of this Slurm allocation, or (empty) whichever node srun picks.
    result.slurm = true;
    result.host = kj::heapString(url.slice(8));
    if (result.host.startsWith("-") || result.host.findFirst(',') != nullptr) {
      return bad("a Slurm node is one node name");
    }
    return result;
  }
  if (!url.startsWith("ssh://")) return bad("not an ssh:// or slurm:// URL");
  kj::StringPtr rest = url.slice(6);
  KJ_IF_MAYBE(at, rest.findFirst('@')) {
    result.user = kj::heapString(rest.begin(), *at);
    rest = rest.slice(*at + 1);
    if (result.user.size() == 0) return bad("an empty user name");
  }
  kj::StringPtr portText;
  if (rest.startsWith("[")) {
    KJ_IF_MAYBE(close, rest.findFirst(']')) {
      result.host = kj::heapString(rest.begin() + 1, *close - 1);
      rest = rest.slice(*close + 1);
      if (rest.startsWith(":")) {
        portText = rest.slice(1);
      } else if (rest.size() > 0) {
        return bad("junk after the address");
      }
    } else {
      return bad("no ']' after an IPv6 address");
    }
  } else {
    KJ_IF_MAYBE(colon, rest.findFirst(':')) {
      result.host = kj::heapString(rest.begin(), *colon);
      portText = rest.slice(*colon + 1);
    } else {
      result.host = kj::heapString(rest);
    }
  }
  if (result.host.size() == 0) return bad("no host");
  if (result.host.startsWith("-")) return bad("a host may not start with '-'");
  if (result.user.startsWith("-")) return bad("a user may not start with '-'");
  if (portText != nullptr) {
    char* end;
    long port = strtol(portText.cStr(), &end, 10);
    if (portText.size() == 0 || *end != '\0' || port <= 0 || port > 65535) {
      return bad("a port is 1 to 65535");
    }
    result.port = uint16_t(port);
  }
  return result;
}

kj::String SshHost::toString() const {
  if (slurm) return kj::str("slurm:", host.size() > 0 ? host.asPtr() : "any");
  auto hostPart = host.findFirst(':') != nullptr ? kj::str("[", host, "]") : kj::str(host);
  return kj::str(user.size() > 0 ? kj::str(user, "@") : kj::str(), hostPart,
                 port != 0 ? kj::str(":", port) : kj::str());
}

kj::String sshHostUrl(kj::StringPtr host) {
  if (host.startsWith("ssh://") || host.startsWith("slurm://")) return kj::heapString(host);
  kj::StringPtr all = environmentOr("HARROW_HOSTS");
  KJ_IF_MAYBE(url, namedEntry(all, host)) return kj::mv(*url);
  kj::throwFatalException(spawnFailed(
      kj::str("no host named '", host, "' (--harrow-hosts / HARROW_HOSTS: '", all, "')")));
}

kj::Array<kj::String> hostNames() {
  kj::Vector<kj::String> names;
  forEachEntry(environmentOr("HARROW_HOSTS"), [&](kj::StringPtr name, kj::StringPtr) {
    names.add(kj::heapString(name));
  });
  return names.releaseAsArray();
}

kj::String sshRemoteCommand(kj::StringPtr remotePath, kj::StringPtr name) {
  kj::Vector<kj::String> words;
  words.add(kj::str("env"));
  for (const char* variable : FORWARDED) {
    const char* value = getenv(variable);
    if (value != nullptr && *value != '\0') {
      words.add(shellQuoted(kj::str(variable, "=", value)));
    }
  }
  words.add(shellQuoted(remotePath));
  words.add(kj::str("--harrow-ssh-child"));
  words.add(shellQuoted(name));
  // Not `exec`: the shell waits, so a child killed by a signal comes back as 128+N (ssh's own
  // status for a signal is its catch-all 255).
  return kj::str(kj::strArray(words, " "), "; exit $?");
}

namespace {

// srun running `remotePath` as child `name`: one job step of the allocation this process runs in,
// one task on one node, sharing the node's CPUs with the other steps (--overlap: children are
// not a batch of work to pack). srun passes the environment on (--export=ALL, its default) and
// relays the task's stdin/stdout: the channel, unbuffered.
kj::Array<kj::String> srunCommand(const SshHost& host, kj::StringPtr name,
                                  kj::ArrayPtr<const kj::StringPtr> command) {
  if (getenv("SLURM_JOB_ID") == nullptr) {
    kj::throwFatalException(spawnFailed(kj::str(
        "actor '", name, "': slurm:// children need a Slurm allocation (salloc, sbatch): "
        "SLURM_JOB_ID is not set")));
  }
  kj::Vector<kj::String> args;
  for (auto word : {"srun", "--nodes=1", "--ntasks=1", "--overlap", "--unbuffered", "--quiet",
                    "--kill-on-bad-exit=1"}) {
    args.add(kj::str(word));
  }
  args[0] = kj::str(programOnPath("srun", "slurm-client"));
  args.add(kj::str("--job-name=", name));
  if (host.host.size() > 0) args.add(kj::str("--nodelist=", host.host));
  args.add(kj::str("--"));
  for (auto word : command) args.add(kj::heapString(word));
  return args.releaseAsArray();
}

}  // namespace

kj::Array<kj::String> sshCommand(kj::StringPtr hostParam, kj::StringPtr remoteCommand) {
  auto host = SshHost::parse(sshHostUrl(hostParam));
  if (host.slurm) {
    kj::StringPtr command[] = {remoteCommand};
    return srunCommand(host, "harrow-floor", command);
  }
  kj::Vector<kj::String> args;
  args.add(programOnPath("ssh", "openssh-client"));
  args.add(kj::str("-T"));  // no terminal: the session's stdin/stdout are the channel
  // Never a prompt (a key, or nothing), and a silent connection dropped within the link bound.
  kj::String options[] = {kj::str("BatchMode=yes"), kj::str("ServerAliveCountMax=3"),
                          kj::str("ServerAliveInterval=", serverAliveInterval())};
  for (auto& option : options) {
    args.add(kj::str("-o"));
    args.add(kj::mv(option));
  }
  kj::StringPtr config = environmentOr("HARROW_SSH_CONFIG");
  if (config.size() > 0) {
    args.add(kj::str("-F"));
    args.add(kj::heapString(config));
  }
  if (host.port != 0) {
    args.add(kj::str("-p"));
    args.add(kj::str(host.port));
  }
  if (host.user.size() > 0) {
    args.add(kj::str("-l"));
    args.add(kj::heapString(host.user));
  }
  args.add(kj::str("--"));
  args.add(kj::heapString(host.host));
  args.add(kj::heapString(remoteCommand));
  return args.releaseAsArray();
}

// ---- the parent's side ----

namespace {

// What the child's supervisor sees: the local ssh client, its status read as the remote child's.
class SshProcess final : public Process {
public:
  SshProcess(kj::UnixEventPort& eventPort, pid_t client, kj::String name, SshHost host)
      : client(kj::heap<ChildProcess>(eventPort, client)), name(kj::mv(name)),
        host(kj::mv(host)) {}

  void started(pid_t pid) { remotePid = pid; }

  pid_t pid() const override { return remotePid != 0 ? remotePid : client->pid(); }
  pid_t clientPid() const { return client->pid(); }
  bool hasExited() const override { return client->hasExited(); }
  kj::Promise<int> onExit() override {
    return client->onExit().then([this](int status) -> kj::Promise<int> {
      KJ_IF_MAYBE (why, unreachable) return kj::cp(*why);  // watchStep() killed srun
      if (!WIFEXITED(status)) return status;  // ssh itself killed: by us, after the grace period
      int code = WEXITSTATUS(status);
      if (code == 255 && !host.slurm) {
        auto why = kj::str("the ssh session ended (ssh exited with status 255: the connection "
                           "failed or was lost)");
        if (remotePid == 0) {
          return spawnFailed(kj::str("actor '", name, "': ssh to ", host.toString(),
                                     " failed before the child started: ssh exited with status "
                                     "255 (its message is above)"));
        }
        return makeError(ErrorKind::ACTOR_UNREACHABLE,
                         kj::str("actor '", name, "' on host '", host.toString(), "': ", why));
      }
      if (code > 128 && code < 128 + 65) return code - 128;  // killed by signal code-128
      return code << 8;
    });
  }
  void kill(int signal) override {
    // ssh cannot pass a signal on: a hard kill ends the session, and the child with it.
    (void)signal;
    client->kill(SIGKILL);
  }
  kj::String where() const override { return kj::str(" on host '", host.toString(), "'"); }
  bool throughSlurm() const { return host.slurm; }

  // The child stopped answering (watchStep): it is unreachable, and its srun goes.
  void lost(kj::StringPtr why) {
    if (unreachable != nullptr || client->hasExited()) return;
    unreachable = makeError(ErrorKind::ACTOR_UNREACHABLE,
                            kj::str("actor '", name, "' on host '", host.toString(), "': ", why));
    client->kill(SIGKILL);
  }

private:
  kj::Own<ChildProcess> client;
  kj::String name;
  SshHost host;
  pid_t remotePid = 0;
  kj::Maybe<kj::Exception> unreachable;
};

// A child's announcement: its pid (0: ssh ended first), and the address its host reaches ours
// at ("" if it could not tell).
struct Announcement {
  pid_t pid = 0;
  kj::String homeAddress;
};

// "PID [ADDRESS]", or nullptr for anything else.
kj::Maybe<Announcement> parseAnnouncement(kj::StringPtr rest) {
  char* end;
  long pid = strtol(rest.cStr(), &end, 10);
  if (pid <= 0 || end == rest.cStr()) return nullptr;
  kj::StringPtr after = end;
  if (after.size() == 0) return Announcement{pid_t(pid), kj::str()};
  if (!after.startsWith(" ") || after.size() == 1 || after.slice(1).findFirst(' ') != nullptr) {
    return nullptr;
  }
  return Announcement{pid_t(pid), kj::heapString(after.slice(1))};
}

// Reads lines from `fd` (peeked, then consumed exactly, so that nothing after the announcement is
// taken from the channel) until "harrow-ssh-child PID [ADDRESS]"; a pid of 0 at end-of-file.
Co<Announcement> readAnnouncement(kj::UnixEventPort& eventPort, int fd, kj::StringPtr nameParam) {
  auto name = kj::heapString(nameParam);
  kj::UnixEventPort::FdObserver observer(eventPort, fd, kj::UnixEventPort::FdObserver::OBSERVE_READ);
  size_t skipped = 0;
  char buffer[512];
  for (;;) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      co_await observer.whenBecomesReadable();
      continue;
    }
    if (n < 0) KJ_FAIL_SYSCALL("recv", errno, name);
    if (n == 0) co_return Announcement{};
    kj::ArrayPtr<char> peeked(buffer, n);
    size_t lineEnd = 0;
    for (; lineEnd < peeked.size() && peeked[lineEnd] != '\n'; ++lineEnd) {}
    if (lineEnd == peeked.size() && peeked.size() < sizeof(buffer)) {
      co_await observer.whenBecomesReadable();  // a line still arriving
      continue;
    }
    size_t take = kj::min(lineEnd + 1, peeked.size());
    ssize_t got;
    KJ_SYSCALL(got = recv(fd, buffer, take, MSG_DONTWAIT));
    auto line = kj::heapString(buffer, kj::min(size_t(got), lineEnd));
    if (line.startsWith(ANNOUNCE)) {
      KJ_IF_MAYBE (announced, parseAnnouncement(line.slice(ANNOUNCE.size()))) {
        co_return kj::mv(*announced);
      }
    }
    skipped += got;
    if (skipped > MAX_NOISE) {
      kj::throwFatalException(spawnFailed(kj::str(
          "actor '", name, "': the remote side printed ", skipped,
          " bytes and no announcement (a login script's output?)")));
    }
    KJ_LOG(WARNING, "ssh child: skipped a line before its announcement", name, line);
  }
}

}  // namespace

Co<SshChild> startSshChild(Actor& actor,  // outlives its tasks (it runs the loop)
                           kj::StringPtr hostParam, kj::StringPtr nameParam,
                           kj::StringPtr remotePathParam) {
  auto name = kj::heapString(nameParam);
  auto remotePath = kj::heapString(remotePathParam);
  auto url = sshHostUrl(hostParam);
  auto host = SshHost::parse(url);

  kj::StringPtr childCommand[] = {remotePath, "--harrow-slurm-child", name};
  auto args = host.slurm ? srunCommand(host, name, childCommand)
                         : sshCommand(url, sshRemoteCommand(remotePath, name));
  auto argv = KJ_MAP(arg, args) -> kj::StringPtr { return arg; };

  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  kj::AutoCloseFd ours(fds[0]);
  kj::AutoCloseFd theirs(fds[1]);
  pid_t client = 0;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   client = spawnProcess(argv, -1, theirs.get());
                 })) {
    kj::throwFatalException(spawnFailed(kj::str("actor '", name, "': cannot run ssh: ",
                                                e->getDescription())));
  }
  theirs = nullptr;
  // Registered before the event loop turns (ChildProcess's adopting constructor says why).
  auto process = kj::heap<SshProcess>(actor.eventPort(), client, kj::heapString(name),
                                      SshHost::parse(url));

  Announcement announced;
  auto timeout = handshakeTimeoutFromEnvironment() * 2;
  auto failure = co_await errorOf([&]() {
    return failAfter(actor.timer(), timeout, [&]() -> Co<void> {
      announced = co_await readAnnouncement(actor.eventPort(), ours.get(), name);
    });
  });
  KJ_IF_MAYBE(e, failure) {
    if (isTooSlow(*e)) {
      kj::throwFatalException(spawnFailed(kj::str(
          "actor '", name, "': ssh to ", host.toString(), " did not start the child within ",
          timeout / kj::MILLISECONDS, " ms")));
    }
    kj::throwFatalException(kj::mv(*e));
  }
  if (announced.pid == 0) {
    // ssh ended first: its status says why (255: it could not connect or log in; 127: no such
    // program there). Its message went to our stderr.
    int status = co_await process->onExit();
    kj::throwFatalException(spawnFailed(kj::str(
        "actor '", name, "': ssh to ", host.toString(), " ended before the child started (",
        ChildProcess::describe(status), "; running '", remotePath, "' there)")));
  }
  process->started(announced.pid);
  co_return SshChild{kj::mv(process), kj::mv(ours), kj::mv(announced.homeAddress)};
}

void stripHostLocalAddresses(wire::SpawnSpec::Builder spec, bool withoutSecret) {
  if (withoutSecret) spec.disownTreeSecret();  // Cap'n Proto zeroes what it disowns in place
  if (isHostLocal(spec.getRegistryAddress())) spec.setRegistryAddress("");
  if (isHostLocal(spec.getRootAddress())) spec.setRootAddress("");
}

namespace {

Co<void> watchStepLoop(Actor& actor, SshProcess& process, Peer& peer,  // the child's record's
                       LinkTiming timing, kj::Duration bound) {  // (the record owns the watch)
  while (!peer.isClosed() && !process.hasExited()) {
    co_await actor.timer().afterDelay(timing.heartbeat);
    if (peer.isClosed()) co_return;
    bool late = false;
    auto failure = co_await errorOf([&]() -> Co<void> {
      late = co_await moveOnAfter(actor.timer(), bound, [&]() -> Co<void> {
        co_await IntrospectActor::Portal(peer).info();
      });
    });
    if (failure != nullptr) co_return;  // the channel ended: its end says what happened
    if (late) {
      process.lost(kj::str("the Slurm step has not answered for ", bound / kj::MILLISECONDS,
                           " ms (its node failed or was cut off?)"));
      co_return;
    }
  }
}

}  // namespace

kj::Promise<void> watchStep(Actor& actor, Process& processParam, Peer& peer) {
  auto& process = dynamic_cast<SshProcess&>(processParam);
  auto timing = LinkTiming::fromEnvironment();
  auto bound = timing.heartbeat + timing.silence;
  // Started from the event loop, outside any coroutine: the watch belongs to no cancel scope (it
  // lives as long as its child's record, like a remote child's relay).
  return kj::evalLater([&actor, &process, &peer, timing, bound]() -> kj::Promise<void> {
    return watchStepLoop(actor, process, peer, timing, bound);
  });
}

// ---- the child's side ----

namespace {

// The address the parent's host has as seen from here: ssh's client address (SSH_CONNECTION:
// "CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT"), or the node srun ran on (Slurm's
// SLURM_LAUNCH_NODE_IPADDR, for a step). The parent exposes its tree's registry there for this child
// (discovery.h). "" if neither is set, or either is not an address.
kj::String homeAddress(bool slurm) {
  kj::String text;
  // A step's environment is its srun's, which may hold an SSH_CONNECTION of the user's login.
  if (slurm) {
    text = kj::heapString(environmentOr("SLURM_LAUNCH_NODE_IPADDR"));
  } else {
    kj::StringPtr connection = environmentOr("SSH_CONNECTION");
    KJ_IF_MAYBE (space, connection.findFirst(' ')) {
      text = kj::heapString(connection.begin(), *space);
    }
  }
  for (char c : text) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
              c == '.' || c == ':';
    if (!ok) return kj::str();
  }
  if (text.findFirst(':') != nullptr) return kj::str("[", text, "]");  // IPv6
  return text;
}

}  // namespace

SshChildFds takeSshChannel(bool slurm) {
  SshChildFds fds;
  int in, out;
  KJ_SYSCALL(in = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3));
  KJ_SYSCALL(out = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3));
  fds.in = kj::AutoCloseFd(in);
  fds.out = kj::AutoCloseFd(out);
  // Nothing the actor reads or prints may touch the channel: stdin reads nothing, stdout is
  // stderr (which ssh passes back to the parent's stderr).
  int null;
  KJ_SYSCALL(null = open("/dev/null", O_RDONLY | O_CLOEXEC));
  KJ_SYSCALL(dup2(null, STDIN_FILENO));
  close(null);
  KJ_SYSCALL(dup2(STDERR_FILENO, STDOUT_FILENO));
  auto home = homeAddress(slurm);
  auto line = kj::str(ANNOUNCE, getpid(), home.size() > 0 ? " " : "", home, "\n");
  size_t written = 0;
  while (written < line.size()) {
    ssize_t n = write(fds.out.get(), line.begin() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    KJ_REQUIRE(n > 0, "cannot announce this ssh child on its channel", strerror(errno));
    written += n;
  }
  return fds;
}

namespace {

class PipePairStream final : public kj::AsyncIoStream {
public:
  PipePairStream(kj::Own<kj::AsyncInputStream> in, kj::Own<kj::AsyncOutputStream> out)
      : in(kj::mv(in)), out(kj::mv(out)) {}
  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    return in->tryRead(buffer, minBytes, maxBytes);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return writer().write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return writer().write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override {
    KJ_IF_MAYBE(o, out) return (*o)->whenWriteDisconnected();
    return kj::READY_NOW;
  }
  void shutdownWrite() override { out = nullptr; }  // closes the pipe: end-of-file over there

private:
  kj::Own<kj::AsyncInputStream> in;
  kj::Maybe<kj::Own<kj::AsyncOutputStream>> out;

  kj::AsyncOutputStream& writer() {
    return *KJ_REQUIRE_NONNULL(out, "write after shutdownWrite");
  }
};

}  // namespace

kj::Own<kj::AsyncIoStream> pipePairStream(kj::LowLevelAsyncIoProvider& provider,
                                          SshChildFds fds) {
  auto flags = kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP;
  auto in = provider.wrapInputFd(fds.in.release(), flags);
  auto out = provider.wrapOutputFd(fds.out.release(), flags);
  return kj::heap<PipePairStream>(kj::mv(in), kj::mv(out));
}

}  // namespace harrow
