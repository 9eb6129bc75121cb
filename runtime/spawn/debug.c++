#include <harrow/spawn/debug.h>

#include <harrow/co/multi_error.h>
#include <harrow/engine/remote_error.h>
#include <harrow/spawn/process.h>

#include <capnp/message.h>
#include <kj/debug.h>

#include <deque>

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

namespace harrow {
namespace {

// The root reads at most this much of a request (an actor's name and why it stopped).
constexpr size_t MAX_REQUEST_BYTES = 16 * 1024;

// What the root answers. A stopped actor reads one byte: RESUMED once its turn at the terminal
// is over. A supervisor asking whether the debugger is busy (WAIT_REQUEST) reads IDLE (nobody
// holds or waits for the terminal) or WAS_BUSY (somebody did; now nobody does).
constexpr char RESUMED = 'r';
constexpr char IDLE = 'i';
constexpr char WAS_BUSY = 'w';
constexpr kj::StringPtr WAIT_REQUEST = "wait\n"_kj;
constexpr kj::StringPtr DEBUG_REQUEST = "debug "_kj;

struct SocketAddress {
  sockaddr_un address;
  socklen_t length;
};

// "unix:@NAME", as newBindAddress makes them: an abstract Unix socket (no file to clean up). Who
// may ask is checked by the kernel's word (SO_PEERCRED), not by the name's secrecy.
SocketAddress parseAddress(kj::StringPtr text) {
  KJ_REQUIRE(text.startsWith("unix:@"), "the debugger's address is not an abstract Unix socket",
             text);
  kj::StringPtr name = text.slice(6);
  SocketAddress result;
  memset(&result.address, 0, sizeof(result.address));
  result.address.sun_family = AF_UNIX;
  KJ_REQUIRE(name.size() + 1 <= sizeof(result.address.sun_path), "debugger address too long",
             text);
  memcpy(result.address.sun_path + 1, name.begin(), name.size());
  result.length = offsetof(sockaddr_un, sun_path) + 1 + name.size();
  return result;
}

// Sends `request` to the root at `address` and blocks until it answers: the answer's byte, or 0
// if the root could not be reached or said nothing. Async-signal-safe (a fatal signal's handler
// calls it).
char askRoot(const SocketAddress& address, const char* request, size_t length) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address.address), address.length) < 0) {
    close(fd);
    return 0;
  }
  // Under Yama's ptrace_scope=1 only an ancestor may attach, and gdb is the root's child, not
  // ours: let the root (and so its children) trace us while we wait. EINVAL without Yama.
  ucred root;
  socklen_t credLength = sizeof(root);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &root, &credLength) == 0) {
    prctl(PR_SET_PTRACER, root.pid, 0, 0, 0);
  }
  while (length > 0) {
    ssize_t n = write(fd, request, length);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    request += n;
    length -= n;
  }
  shutdown(fd, SHUT_WR);
  char answer = 0;
  for (;;) {
    ssize_t n = read(fd, &answer, 1);  // gdb attaches, and detaches, while we block here
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) answer = 0;
    break;
  }
  close(fd);
  prctl(PR_SET_PTRACER, 0, 0, 0, 0);
  return answer;
}

// ---- the fatal-signal handlers ----

constexpr int FATAL_SIGNALS[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

// What a fatal signal's handler needs, set once by joinDebugger before the handlers are
// installed and never changed: a signal handler can reach nothing but process-wide state.
struct CrashRequest {
  SocketAddress root;
  char prefix[256];  // "debug NAME\nreceived "
  size_t prefixLength;
  void* alternateStack;  // for as long as the process lives (held here, not leaked)
};
CrashRequest crashRequest;

void append(char* buffer, size_t& length, size_t capacity, const char* text) {
  while (*text != '\0' && length < capacity) buffer[length++] = *text++;
}

void onFatalSignal(int signal) {
  char request[512];
  size_t length = 0;
  memcpy(request, crashRequest.prefix, crashRequest.prefixLength);
  length = crashRequest.prefixLength;
  const char* abbreviation = sigabbrev_np(signal);
  append(request, length, sizeof(request), "SIG");
  append(request, length, sizeof(request), abbreviation != nullptr ? abbreviation : "?");
  const char* description = sigdescr_np(signal);
  append(request, length, sizeof(request), " (");
  append(request, length, sizeof(request), description != nullptr ? description : "?");
  append(request, length, sizeof(request), ")");
  askRoot(crashRequest.root, request, length);
  // SA_RESETHAND has restored the default action: the signal ends the actor as it would have.
  raise(signal);
}

void installFatalSignalHandlers(kj::StringPtr address, kj::StringPtr name) {
  crashRequest.root = parseAddress(address);
  auto prefix = kj::str(DEBUG_REQUEST, name, "\nreceived ");
  crashRequest.prefixLength = kj::min(prefix.size(), sizeof(crashRequest.prefix));
  memcpy(crashRequest.prefix, prefix.begin(), crashRequest.prefixLength);

  // An alternate stack, so that a stack overflow's SIGSEGV still reaches the handler. Lives as
  // long as the process.
  stack_t alternate;
  alternate.ss_size = 64 * 1024;
  if (crashRequest.alternateStack == nullptr) {
    crashRequest.alternateStack = malloc(alternate.ss_size);
  }
  alternate.ss_sp = crashRequest.alternateStack;
  alternate.ss_flags = 0;
  if (alternate.ss_sp != nullptr) sigaltstack(&alternate, nullptr);

  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = onFatalSignal;
  action.sa_flags = SA_RESETHAND | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  for (int signal : FATAL_SIGNALS) sigaction(signal, &action, nullptr);
}

// ---- the root's side ----

// Whether `pid` is a descendant of this process: only the tree's own actors may have the
// terminal (and a debugger attached to them).
bool isDescendant(pid_t pid) {
  pid_t self = getpid();
  for (int hops = 0; hops < 1000 && pid > 1; ++hops) {
    auto path = kj::str("/proc/", pid, "/stat");
    FILE* file = fopen(path.cStr(), "re");
    if (file == nullptr) return false;
    char buffer[1024];
    size_t n = fread(buffer, 1, sizeof(buffer) - 1, file);
    fclose(file);
    buffer[n] = '\0';
    const char* end = strrchr(buffer, ')');  // the command name may hold anything, ')' too
    int parent;
    if (end == nullptr || sscanf(end + 1, " %*c %d", &parent) != 1) return false;
    if (parent == self) return true;
    pid = parent;
  }
  return false;
}

// Whether `pid` is a live process (not a zombie waiting for its parent to reap it).
bool isAlive(pid_t pid) {
  auto path = kj::str("/proc/", pid, "/stat");
  FILE* file = fopen(path.cStr(), "re");
  if (file == nullptr) return false;
  char buffer[1024];
  size_t n = fread(buffer, 1, sizeof(buffer) - 1, file);
  fclose(file);
  buffer[n] = '\0';
  const char* end = strrchr(buffer, ')');
  return end != nullptr && end[1] == ' ' && end[2] != 'Z' && end[2] != 'X';
}

// Text from a child, made safe to print on the terminal: no control characters but newlines.
kj::String printable(kj::ArrayPtr<const char> text) {
  auto result = kj::heapString(text);
  for (char& c : result) {
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\n') || c == 0x7f) c = '?';
  }
  return result;
}

void say(kj::StringPtr text) {
  // Straight to the terminal, in one write.
  for (size_t done = 0; done < text.size();) {
    ssize_t n = write(STDERR_FILENO, text.begin() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += n;
  }
}

// Gives the terminal `fd` to process group `group` for as long as it lives, then gives it back to
// whoever had it, in the state it was in.
class ForegroundTerminal {
public:
  ForegroundTerminal(int fd, pid_t group) : fd(fd), previous(tcgetpgrp(fd)) {
    hasAttributes = tcgetattr(fd, &attributes) == 0;
    setForeground(group);
    kill(-group, SIGCONT);  // in case it touched the terminal before it was its: SIGTTOU stops it
  }
  ~ForegroundTerminal() {
    setForeground(previous);
    if (hasAttributes) tcsetattr(fd, TCSADRAIN, &attributes);
  }
  KJ_DISALLOW_COPY(ForegroundTerminal);

private:
  int fd;
  pid_t previous;
  bool hasAttributes;
  termios attributes;

  void setForeground(pid_t group) {
    // Called from the background, tcsetpgrp raises SIGTTOU (which stops us) unless it is blocked.
    sigset_t ttou, saved;
    sigemptyset(&ttou);
    sigaddset(&ttou, SIGTTOU);
    pthread_sigmask(SIG_BLOCK, &ttou, &saved);
    if (tcsetpgrp(fd, group) < 0) KJ_LOG(WARNING, "tcsetpgrp failed", group, strerror(errno));
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  }
};

// Whether the root can hand out a terminal: its stdin is one, and its session's controlling one.
bool haveTerminal() { return isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) >= 0; }

// gdb (HARROW_GDB, else /usr/bin/gdb) attached to `pid`, quiet about symbols, never asking
// "are you sure?" (so that `quit` just detaches) and never reaching for debuginfod servers.
struct GdbCommand {
  explicit GdbCommand(pid_t pid) : pidText(kj::str(pid)) {
    const char* configured = getenv("HARROW_GDB");
    path = configured != nullptr && *configured != '\0' ? configured : "/usr/bin/gdb";
  }
  kj::StringPtr path;
  kj::String pidText;

  // Starts it. Ctrl-Z is ignored in it (readline leaves an ignored SIGTSTP alone): a stopped gdb
  // would keep the terminal from the root, which waits for it to exit.
  template <typename Start>
  auto start(Start&& starter) {
    kj::StringPtr argv[] = {path, "-q", "-iex", "set debuginfod enabled off",
                            "-iex", "set confirm off", "-iex", "set print symbol-loading off",
                            "-p", pidText};
    struct sigaction ignore, saved;
    memset(&ignore, 0, sizeof(ignore));
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGTSTP, &ignore, &saved);
    KJ_DEFER(sigaction(SIGTSTP, &saved, nullptr));
    return starter(kj::ArrayPtr<const kj::StringPtr>(argv));
  }
};

constexpr kj::StringPtr HOW_TO_QUIT =
    "`quit` detaches (the actor carries on), `kill` ends the actor"_kj;

// Whether an error stops its actor post mortem: raised in this actor, not relayed from another
// one (that one stopped already, where it was raised) nor a consequence of a channel or a
// cancellation.
bool raisedHere(const kj::Exception& error) {
  if (isMultiError(error)) {
    for (auto& failure : failuresIn(error)) {
      if (!isMultiError(failure) && raisedHere(failure)) return true;
    }
    return false;
  }
  if (isRemoteActorError(error)) return false;
  switch (errorKind(error)) {
    case ErrorKind::CANCELLED:
    case ErrorKind::TRANSPORT_CLOSED:
    case ErrorKind::REMOTE_ACTOR_ERROR:
    case ErrorKind::CONTEXT_CANCELLED:
    case ErrorKind::PROTOCOL_VIOLATION:
    case ErrorKind::ACTOR_DIED:
      return false;
    default:
      return true;
  }
}

class Debugger final : public ActorAttachment, private _::HandlerHook {
public:
  Debugger(Actor& actor, kj::String addressText, bool isRoot)
      : actor(actor), addressText(kj::mv(addressText)), address(parseAddress(this->addressText)),
        isRoot(isRoot) {
    _::handlerHook = this;
  }
  ~Debugger() noexcept(false) {
    if (_::handlerHook == this) _::handlerHook = nullptr;
  }

  // A handler's error, leaving its body (co.h): the actor stops here, in the handler's
  // coroutine, whose frame and locals gdb can show (`bt`, `frame N`, `info locals`), before the
  // error is handed on and the handler's frame is gone.
  void handlerRaised(const kj::Exception& error) override {
    if (!raisedHere(error)) return;
    stoppedFor = kj::str(error.getFile(), ":", error.getLine(), ": ", error.getDescription());
    stopHere(kj::str(describe(error), "\n  stopped in the handler, before its frame unwound"));
  }

  Co<void> start() override {
    if (!isRoot) co_return;
    int fd;
    KJ_SYSCALL(fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    kj::AutoCloseFd owned(fd);
    KJ_SYSCALL(bind(fd, reinterpret_cast<const sockaddr*>(&address.address), address.length),
               addressText);
    KJ_SYSCALL(listen(fd, 64));
    auto receiver = actor.io().lowLevelProvider->wrapListenSocketFd(
        owned.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                             kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                             kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
    tasks = kj::heap<kj::TaskSet>(logFailures);
    acceptLoop = accept(*receiver).attach(kj::mv(receiver)).eagerlyEvaluate([](kj::Exception e) {
      KJ_LOG(ERROR, "the debugger stopped accepting", e);
    });
    co_return;
  }

  Co<void> stop() override {
    acceptLoop = nullptr;
    tasks = nullptr;
    co_return;
  }

  void fillSpawnSpec(wire::SpawnSpec::Builder spec) override {
    spec.setDebug(true);
    spec.setDebugTerminal(addressText);
  }

  void taskFailed(const kj::Exception& error) override {
    if (!raisedHere(error)) return;
    // Stopped for already, in the handler (handlerRaised).
    KJ_IF_MAYBE(stopped, stoppedFor) {
      bool same = *stopped == kj::str(error.getFile(), ":", error.getLine(), ": ",
                                      error.getDescription());
      stoppedFor = nullptr;
      if (same) return;
    }
    stopHere(describe(error));
  }

  // What the root prints for a handler's error: type, message, where it was raised and the first
  // frames of its trace, symbolized here (as a RemoteActorError's are): gdb shows the actor in
  // the handler's coroutine, but the functions it called, where the error was raised, have
  // unwound.
  kj::String describe(const kj::Exception& error) {
    capnp::MallocMessageBuilder message;
    auto wire = message.initRoot<wire::Error>();
    fillWireError(wire, error, actor.identity());
    kj::StringPtr trace = wire.getRemoteTrace();
    kj::Vector<kj::String> lines;
    while (trace.size() > 0 && lines.size() < 8) {
      KJ_IF_MAYBE(end, trace.findFirst('\n')) {
        lines.add(kj::str("  ", trace.slice(0, *end)));
        trace = trace.slice(*end + 1);
      } else {
        lines.add(kj::str("  ", trace));
        break;
      }
    }
    return kj::str("a handler raised ", wire.getType(), ": ", wire.getMessage(), "\n  raised at ",
                   wire.getFile(), ":", wire.getLine(), "\n", kj::strArray(lines, "\n"));
  }

  // Blocks this actor until its turn at the root's terminal is over.
  void stopHere(kj::StringPtr why) {
    if (isRoot) return stopRoot(why);
    auto request = kj::str(DEBUG_REQUEST, actor.identity().name, "\n", why);
    if (askRoot(address, request.begin(), request.size()) == 0) {
      KJ_LOG(WARNING, "the root's debugger could not be reached; carrying on", addressText);
    }
  }

  // The root's own stop: its event loop, which hands out the terminal, stands still meanwhile,
  // so gdb is started and awaited here, directly. Actors that stop meanwhile queue on the socket.
  void stopRoot(kj::StringPtr why) {
    pid_t self = getpid();
    say(kj::str("\nharrow debugger: actor '", actor.identity().name, "' (the root, pid ", self,
                ") stopped: ", why, "\n"));
    if (held) {
      say("harrow debugger: an actor has the terminal, and only the root's event loop can give it "
          "back: the root carries on\n");
      return;
    }
    if (!haveTerminal()) {
      say("harrow debugger: the root has no terminal; it carries on\n");
      return;
    }
    GdbCommand command(self);
    say(kj::str("harrow debugger: attaching ", command.path, "; ", HOW_TO_QUIT, "\n"));
    held = true;
    KJ_DEFER(release());
    // gdb, our child, attaches to its parent: under Yama's ptrace_scope=1 we must allow it.
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    KJ_DEFER(prctl(PR_SET_PTRACER, 0, 0, 0, 0));
    pid_t gdb = -1;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   gdb = command.start([](kj::ArrayPtr<const kj::StringPtr> argv) {
                     return spawnProcess(argv);
                   });
                 })) {
      say(kj::str("harrow debugger: could not start ", command.path, ": ", e->getDescription(),
                  "\n"));
      return;
    }
    int status = 0;
    {
      ForegroundTerminal foreground(STDIN_FILENO, gdb);
      while (waitpid(gdb, &status, 0) < 0 && errno == EINTR) {}
    }
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      say(kj::str("harrow debugger: gdb ", ChildProcess::describe(status), "\n"));
    }
    say(kj::str("harrow debugger: the root released the terminal\n"));
  }

  Co<void> whenIdle(kj::Duration grace) {
    for (;;) {
      char answer = isRoot ? co_await waitHere() : co_await askRootWhetherIdle();
      if (answer != WAS_BUSY) co_return;
      co_await actor.timer().afterDelay(grace);
    }
  }

private:
  Actor& actor;
  kj::String addressText;
  SocketAddress address;
  bool isRoot;

  kj::Maybe<kj::String> stoppedFor;  // the error handlerRaised stopped for, until taskFailed

  // The root's: the terminal lock, its queue (first come, first served) and who waits for it
  // to be free.
  bool held = false;
  std::deque<kj::Own<kj::PromiseFulfiller<void>>> queue;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> idleWaiters;
  kj::Maybe<kj::Promise<void>> acceptLoop;
  kj::Maybe<kj::Own<kj::TaskSet>> tasks;

  struct LogFailures final : public kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& exception) override {
      KJ_LOG(WARNING, "a debugger connection failed", exception);
    }
  } logFailures;

  kj::Promise<void> accept(kj::ConnectionReceiver& receiver) {
    return receiver.accept().then([this, &receiver](kj::Own<kj::AsyncIoStream> stream) {
      KJ_IF_MAYBE(t, tasks) (*t)->add(serve(kj::mv(stream)));
      return accept(receiver);
    });
  }

  kj::Promise<void> acquire() {
    if (!held) {
      held = true;
      return kj::READY_NOW;
    }
    auto paf = kj::newPromiseAndFulfiller<void>();
    queue.push_back(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }

  void release() {
    while (!queue.empty()) {
      auto next = kj::mv(queue.front());
      queue.pop_front();
      if (next->isWaiting()) return next->fulfill();  // its turn
    }
    held = false;
    for (auto& waiter : idleWaiters) waiter->fulfill();
    idleWaiters.clear();
  }

  struct Turn {
    Debugger& debugger;
    ~Turn() { debugger.release(); }
  };

  Co<char> waitHere() {
    if (!held) co_return IDLE;
    auto paf = kj::newPromiseAndFulfiller<void>();
    idleWaiters.add(kj::mv(paf.fulfiller));
    co_await kj::mv(paf.promise);
    co_return WAS_BUSY;
  }

  Co<char> askRootWhetherIdle() {
    char answer = 0;
    KJ_IF_MAYBE(e, co_await errorOf([&]() -> Co<void> {
      int fd;
      KJ_SYSCALL(fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      auto stream = co_await actor.io().lowLevelProvider->wrapConnectingSocketFd(
          fd, reinterpret_cast<const sockaddr*>(&address.address), address.length,
          kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
              kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
              kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
      co_await stream->write(WAIT_REQUEST.begin(), WAIT_REQUEST.size());
      stream->shutdownWrite();
      co_await stream->tryRead(&answer, 1, 1);
    })) {
      KJ_LOG(INFO, "the root's debugger could not be asked; it is taken as idle", *e);
    }
    co_return answer;
  }

  // One connection to the root's debugger: a supervisor's question or a stopped actor's turn.
  Co<void> serve(kj::Own<kj::AsyncIoStream> stream) {
    ucred peer;
    memset(&peer, 0, sizeof(peer));
    uint credLength = sizeof(peer);
    stream->getsockopt(SOL_SOCKET, SO_PEERCRED, &peer, &credLength);
    if (!isDescendant(peer.pid)) {
      // Not one of the tree's actors: not a word to it.
      KJ_LOG(WARNING, "the debugger refused a process outside the tree", peer.pid);
      co_return;
    }

    kj::Vector<char> request;
    char buffer[4096];
    while (request.size() < MAX_REQUEST_BYTES) {
      size_t n = co_await stream->tryRead(buffer, 1, sizeof(buffer));
      if (n == 0) break;
      request.addAll(buffer, buffer + kj::min(n, MAX_REQUEST_BYTES - request.size()));
    }
    kj::ArrayPtr<const char> text = request.asPtr();
    if (text == WAIT_REQUEST.asArray()) {
      char answer = co_await waitHere();
      try {
        co_await stream->write(&answer, 1);
      } catch (...) {
        // The supervisor stopped asking (its child exited meanwhile): nobody to tell.
      }
      co_return;
    }
    if (text.size() < DEBUG_REQUEST.size() ||
        text.slice(0, DEBUG_REQUEST.size()) != DEBUG_REQUEST.asArray()) {
      KJ_LOG(WARNING, "the debugger got a request it does not know", peer.pid);
      co_return;
    }
    text = text.slice(DEBUG_REQUEST.size(), text.size());
    size_t newline = 0;
    while (newline < text.size() && text[newline] != '\n') ++newline;
    auto name = printable(text.slice(0, newline));
    auto why = printable(text.slice(kj::min(newline + 1, text.size()), text.size()));

    co_await acquire();
    {
      Turn turn{*this};
      co_await session(peer.pid, name, why);
    }
    char answer = RESUMED;
    try {
      co_await stream->write(&answer, 1);
    } catch (...) {
      // The actor ended during its turn (gdb's `kill`): nobody to tell.
    }
  }

  // The actor `pid`'s turn at the terminal: gdb, attached to it, in the foreground until it exits.
  Co<void> session(pid_t pid, kj::StringPtr nameParam, kj::StringPtr why) {
    auto name = kj::heapString(nameParam);
    if (!isAlive(pid)) co_return;  // it died while it waited
    say(kj::str("\nharrow debugger: actor '", name, "' (pid ", pid, ") stopped: ", why, "\n"));
    if (!haveTerminal()) {
      say("harrow debugger: the root has no terminal; the actor carries on\n");
      co_return;
    }
    GdbCommand command(pid);
    say(kj::str("harrow debugger: attaching ", command.path, "; ", HOW_TO_QUIT, "\n"));
    kj::Maybe<kj::Own<ChildProcess>> gdb;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   gdb = command.start([&](kj::ArrayPtr<const kj::StringPtr> argv) {
                     return kj::heap<ChildProcess>(actor.eventPort(), argv);
                   });
                 })) {
      say(kj::str("harrow debugger: could not start ", command.path, ": ", e->getDescription(),
                  "\n"));
      co_return;
    }
    ChildProcess& process = *KJ_ASSERT_NONNULL(gdb);
    ForegroundTerminal foreground(STDIN_FILENO, process.pid());
    int status = co_await process.onExit();
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      say(kj::str("harrow debugger: gdb ", ChildProcess::describe(status), "\n"));
    }
    say(kj::str("harrow debugger: actor '", name, "' (pid ", pid, ") released the terminal\n"));
  }
};

}  // namespace

bool debugModeFromEnvironment() {
  const char* value = getenv("HARROW_DEBUG");
  if (value == nullptr) return false;
  return strcmp(value, "1") == 0 || strcasecmp(value, "true") == 0 ||
         strcasecmp(value, "yes") == 0 || strcasecmp(value, "on") == 0;
}

void pause() {
  KJ_IF_MAYBE(actor, tryCurrentActor()) {
    KJ_IF_MAYBE(debugger, actor->attachment<Debugger>()) {
      debugger->stopHere("called harrow::pause()");
    }
  }
}

void hostDebugger(Actor& root) {
  root.attach(kj::heap<Debugger>(root, newBindAddress(TransportKind::UNIX_ABSTRACT, "debugger"),
                                 /*isRoot=*/true));
}

void joinDebugger(Actor& actor, kj::StringPtr address) {
  auto debugger = kj::heap<Debugger>(actor, kj::heapString(address), /*isRoot=*/false);
  installFatalSignalHandlers(address, actor.identity().name);
  actor.attach(kj::mv(debugger));
}

kj::Promise<void> whenDebuggerIdle(Actor& actor, kj::Duration grace) {
  KJ_IF_MAYBE(debugger, actor.attachment<Debugger>()) return debugger->whenIdle(grace);
  return kj::READY_NOW;
}

}  // namespace harrow
