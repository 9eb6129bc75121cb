// Supervision across real process trees: errors travelling up (typed, combined, nested, relayed),
// cancellation travelling down (streams, starting children, blocked children, SIGINT and Ctrl-C
// at the root), and processes dying under the tree (kill -9 of a child, kill -9 of the root).
//
// This binary is a harrow program: run with --harrow-child it is a Worker actor (worker.h), and
// otherwise it runs the tests. Most tests run a tree below an in-process root actor; the signal
// tests run tree_program (a separate root process) and signal or kill it.
//
// After every test no process of the tree may be left: no child of this process (running or
// zombie), and none of the pids the actors reported or logged (grandchildren included) may exist.
// This process is a child subreaper, so processes orphaned by a kill -9 are reparented to it and
// can be awaited and reaped by the test that caused them; any other orphan is a failure.
//
// Guards: failAfter() around every in-process tree, a bounded wait for every external event, and
// a watchdog alarm that ends the whole binary should even those hang.

#include <harrow/spawn/actor_nursery.h>
#include <harrow/main.h>
#include "tests/spawn/supervision/worker.capnp.harrow.h"
#include "tests/spawn/supervision/worker.h"
#include "tests/names.h"
#include "tests/processes.h"
#include "tests/root_test.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace harrow {
namespace {

using Grown = WorkerActor::Schema::Grown;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string treeProgram;  // --tree-program=PATH, from the command line

Implementations& implementations() {
  static Implementations* impls = []() {
    auto* i = new Implementations;
    sup::registerWorker(*i);
    return i;
  }();
  return *impls;
}

// ---------------------------------------------------------------------------------------------
// Processes

using testing::childrenOf;
using testing::describe;
using testing::ProcStat;
using testing::readStat;

// Every process below `pid`, at this moment.
std::vector<pid_t> descendantsOf(pid_t pid) {
  std::vector<pid_t> out;
  std::vector<pid_t> frontier{pid};
  while (!frontier.empty()) {
    std::vector<pid_t> next;
    for (pid_t parent : frontier) {
      for (auto& child : childrenOf(parent)) {
        out.push_back(child.pid);
        next.push_back(child.pid);
      }
    }
    frontier = next;
  }
  return out;
}


int pidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

void pause(milliseconds ms) {
  struct timespec t = {0, static_cast<long>(ms.count()) * 1000000};
  nanosleep(&t, nullptr);
}

// Pidfds opened while the processes are known to exist, so that a later wait cannot confuse them
// with a reused pid.
struct Watched {
  pid_t pid;
  int fd;  // -1: it was already gone
};

std::vector<Watched> watch(const std::vector<pid_t>& pids) {
  std::vector<Watched> out;
  for (pid_t pid : pids) out.push_back({pid, pidfdOpen(pid)});
  return out;
}

// Waits (poll on the pidfds: an event, bounded by `timeout`) until every watched process has
// terminated. Returns the pids still running when the time is up, and closes the pidfds.
std::vector<pid_t> awaitTermination(std::vector<Watched> watched, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::vector<pid_t> running;
  for (;;) {
    std::vector<struct pollfd> fds;
    std::vector<size_t> which;
    for (size_t i = 0; i < watched.size(); ++i) {
      if (watched[i].fd >= 0) {
        fds.push_back({watched[i].fd, POLLIN, 0});
        which.push_back(i);
      }
    }
    if (fds.empty()) break;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      for (size_t i : which) running.push_back(watched[i].pid);
      break;
    }
    int n = poll(fds.data(), fds.size(), static_cast<int>(left));
    if (n < 0 && errno != EINTR) break;
    for (size_t j = 0; j < fds.size(); ++j) {
      if (fds[j].revents != 0) {
        close(watched[which[j]].fd);
        watched[which[j]].fd = -1;
      }
    }
  }
  for (auto& w : watched) {
    if (w.fd >= 0) close(w.fd);
  }
  return running;
}

// After a kill -9 in the tree, its processes are orphaned to us (we are a subreaper): the ones we
// know of (`tree`) and any helper process they had running, which we cannot know of (under ASan,
// e.g., LeakSanitizer's tracer of a process that was exiting when its parent's SIGKILL reached
// it). Waits, bounded by `timeout`, until every process of `tree` is gone and no child of ours is
// left, reaping every orphan that has terminated. Only for tests without live children of their
// own. Returns what is still there at the deadline.
std::vector<std::string> reapOrphans(const std::vector<pid_t>& tree, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    std::vector<std::string> left;
    for (auto& child : childrenOf(getpid())) {
      int status;
      if (child.state == 'Z' && waitpid(child.pid, &status, WNOHANG) == child.pid) continue;
      left.push_back(describe(child));
    }
    for (pid_t pid : tree) {
      KJ_IF_MAYBE(stat, readStat(pid)) {
        if (stat->ppid != getpid()) left.push_back(describe(*stat));
      }
    }
    if (left.empty() || Clock::now() > deadline) return left;
    pause(milliseconds(5));  // reparenting is not an event we can wait on; bounded by `timeout`
  }
}

std::string lines(const std::vector<std::string>& items) {
  std::string out;
  for (auto& item : items) out += "\n  " + item;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Errors

bool contains(const kj::Exception& e, const std::string& what) {
  return std::string(e.getDescription().cStr()).find(what) != std::string::npos;
}


size_t occurrences(kj::StringPtr text, const std::string& what) {
  std::string s = text.cStr();
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

std::string text(const kj::Exception& e) { return e.getDescription().cStr(); }

std::vector<std::string> names(const kj::Vector<ActorIdentity>& path) {
  std::vector<std::string> out;
  for (auto& id : path) out.push_back(id.name.cStr());
  return out;
}

// ---------------------------------------------------------------------------------------------
// tree_program, run as a real root process

struct Program {
  pid_t pid = -1;  // -1 once reaped
  int out = -1;    // its stdout
  std::string errPath;

  Program() = default;
  Program(Program&& other)
      : pid(other.pid), out(other.out), errPath(std::move(other.errPath)) {
    other.pid = -1;
    other.out = -1;
  }
  // A test that gave up on it (a failed ASSERT) must not leave it running.
  ~Program() {
    if (out >= 0) close(out);
    if (pid > 0) {
      kill(pid, SIGKILL);
      int status;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    }
  }
};

// Starts tree_program as a shell would start a job: default signal dispositions, nothing blocked,
// a process group of its own. Its stdout is a pipe to us, its stderr goes to `errPath`. It dies
// with this process (PR_SET_PDEATHSIG), should the watchdog end us.
Program startProgram(const std::vector<std::string>& args, const std::string& errPath) {
  // Everything the child needs is prepared before fork(): after it, only async-signal-safe calls.
  std::vector<char*> argv{const_cast<char*>(treeProgram.c_str())};
  for (auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  // Our environment (SUP_LOG included), without a tree registry: the test is about supervision,
  // and a registry on the shared default port would couple it to whatever else runs.
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (strncmp(*e, "HARROW_REGISTRY=", 16) != 0) env.push_back(*e);
  }
  env.push_back("HARROW_REGISTRY=none");
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int out[2];
  KJ_SYSCALL(pipe2(out, O_CLOEXEC));
  int err;
  KJ_SYSCALL(err = open(errPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  pid_t parent = getpid();

  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    setpgid(0, 0);
    dup2(out[1], STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    struct sigaction defaults = {};
    defaults.sa_handler = SIG_DFL;
    for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGALRM}) sigaction(sig, &defaults, nullptr);
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, nullptr);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(out[1]);
  close(err);
  if (pid < 0) {
    close(out[0]);
    KJ_FAIL_SYSCALL("fork", errno);
  }
  // Also from here, so that no signal we send can find it still in our group.
  setpgid(pid, pid);
  Program program;
  program.pid = pid;
  program.out = out[0];
  program.errPath = errPath;
  return program;
}

// Reads the program's stdout until a line starting with `prefix` arrives (or EOF, or the
// timeout: a failure guard).
kj::Maybe<std::string> readLineStartingWith(int fd, const std::string& prefix,
                                            milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string buffer;
  for (;;) {
    size_t newline;
    while ((newline = buffer.find('\n')) != std::string::npos) {
      std::string line = buffer.substr(0, newline);
      buffer.erase(0, newline + 1);
      if (line.rfind(prefix, 0) == 0) return line;
    }
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return nullptr;
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0) return nullptr;
    buffer.append(chunk, n);
  }
}

std::vector<pid_t> pidsAfter(const std::string& line) {
  std::istringstream in(line);
  std::string word;
  in >> word;  // "ready"
  std::vector<pid_t> pids;
  pid_t pid;
  while (in >> pid) pids.push_back(pid);
  return pids;
}

// Waits for the program to exit, bounded by `timeout`; kills it if it does not. Returns its wait
// status, or nullptr if it had to be killed.
kj::Maybe<int> awaitExit(Program& program, milliseconds timeout) {
  int fd = pidfdOpen(program.pid);
  bool exited = true;
  if (fd >= 0) {
    struct pollfd p = {fd, POLLIN, 0};
    exited = poll(&p, 1, static_cast<int>(timeout.count())) == 1;
    close(fd);
  }
  if (!exited) kill(program.pid, SIGKILL);
  int status;
  while (waitpid(program.pid, &status, 0) < 0 && errno == EINTR) {}
  program.pid = -1;
  if (program.out >= 0) close(program.out);
  program.out = -1;
  if (!exited) return nullptr;
  return status;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream all;
  all << in.rdbuf();
  return all.str();
}

std::string describeStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

// ---------------------------------------------------------------------------------------------
// The fixture

constexpr kj::Duration LONG_GRACE = 10 * kj::SECONDS;  // where nobody should need killing
constexpr milliseconds STARTUP(60000);              // an external tree getting ready

class SupervisionTest : public testing::RootTest<> {
protected:
  SupervisionTest() : RootTest("sup-test", implementations()) {}

  std::string logPath;
  std::string tmpDir;

  void SetUp() override {
    RootTest::SetUp();
    const char* tmp = getenv("TEST_TMPDIR");
    tmpDir = tmp != nullptr ? tmp : "/tmp";
    logPath = tmpDir + "/" +
              testing::uniqueName(::testing::UnitTest::GetInstance()->current_test_info()->name())
                  .cStr() +
              ".log";
    unlink(logPath.c_str());
    setenv(sup::LOG_ENV, logPath.c_str(), 1);  // every process of the tree inherits it
  }

  void TearDown() override {
    for (auto& entry : log()) known.insert(entry.pid);  // every pid of the tree we learnt of
    RootTest::TearDown();
    unsetenv(sup::LOG_ENV);
  }

  std::vector<sup::LogEntry> log() { return sup::readLog(logPath); }

  // The events actor `name` logged, in order.
  std::vector<std::string> eventsOf(const std::string& name) {
    std::vector<std::string> events;
    for (auto& entry : log()) {
      if (entry.actor == name) events.push_back(entry.event);
    }
    return events;
  }

  // Actor name -> pid, for every actor that started.
  std::map<std::string, pid_t> startedActors() {
    std::map<std::string, pid_t> out;
    for (auto& entry : log()) {
      if (entry.event == "started") out[entry.actor] = entry.pid;
    }
    return out;
  }

  // An external root: runs tree_program, waits until its whole tree streams, and returns it with
  // the pids of every actor below it.
  Program startTree(int depth, int width, std::vector<pid_t>& pids) {
    auto program = startProgram({"--depth=" + std::to_string(depth),
                                 "--width=" + std::to_string(width)},
                                logPath + ".stderr");
    KJ_IF_MAYBE(line, readLineStartingWith(program.out, "ready", STARTUP)) {
      pids = pidsAfter(*line);
    }
    for (pid_t pid : pids) known.insert(pid);
    return program;
  }
};

std::string joined(const std::vector<std::string>& events) {
  std::string out;
  for (auto& e : events) out += "\n  " + e;
  return out;
}

bool has(const std::vector<std::string>& events, const std::string& event) {
  return std::find(events.begin(), events.end(), event) != events.end();
}

size_t indexOf(const std::vector<std::string>& events, const std::string& event) {
  return std::find(events.begin(), events.end(), event) - events.begin();
}

// ---------------------------------------------------------------------------------------------
// Errors travelling up

// A call's exception in a child arrives at the parent as a RemoteActorError carrying the remote
// type, message, source location and origin; raised out of the nursery as it is.
// (tractor's run_in_actor — a one-shot actor whose result is its function's — has no harrow
// counterpart yet: the one-shot child here is started with startActor and called once.)
TEST_F(SupervisionTest, RemoteErrorInAOneShotChildSurfacesTyped) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto worker = co_await nursery.startActor<WorkerActor>("one-shot", "worker");
      co_await worker.fail("the one thing it had to do");
    });
  });
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(isRemoteActorError(*e)) << text(*e);
    EXPECT_FALSE(isMultiError(*e)) << text(*e);
    KJ_IF_MAYBE(info, remoteErrorInfo(*e)) {
      EXPECT_EQ(info->kind, wire::ErrorKind::FAILED);
      EXPECT_EQ(std::string(info->type.cStr()), "sup.Failed");
      EXPECT_EQ(std::string(info->message.cStr()), "the one thing it had to do");
      EXPECT_EQ(std::string(info->file.cStr()), sup::FAIL_FILE);
      EXPECT_EQ(info->line, sup::FAIL_LINE);
      EXPECT_EQ(std::string(info->origin.name.cStr()), "one-shot");
      EXPECT_EQ(info->relayPath.size(), 0u);
    } else {
      ADD_FAILURE() << "no remote error info in: " << text(*e);
    }
  } else {
    ADD_FAILURE() << "the child's error was lost";
  }
  auto events = eventsOf("one-shot");
  EXPECT_TRUE(has(events, "cancel-actor received")) << joined(events);
  EXPECT_TRUE(has(events, "exit")) << joined(events);
}

// Three children fail; the nursery raises one MultiError holding each child's error once.
// Each call is shielded: the first failure cancels the nursery, and an unshielded sibling call
// would be cancelled before its own error could arrive (harrow, like trio, reports the errors
// that happened, and a cancelled call does not wait for its answer).
TEST_F(SupervisionTest, SeveralFailingChildrenRaiseOneMultiErrorListingEach) {
  constexpr int N = 3;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      kj::Vector<WorkerActor::Portal> workers;
      for (int i = 0; i < N; ++i) {
        workers.add(co_await nursery.startActor<WorkerActor>(kj::str("failing-", i), "worker"));
      }
      co_await openNursery([&](TaskNursery& calls) -> Co<void> {
        for (int i = 0; i < N; ++i) {
          calls.startSoon([&, i]() -> Co<void> {
            co_await shielded([&, i]() -> Co<void> {
              co_await workers[i].fail(kj::str("child ", i, " gave up"));
            });
          });
        }
        co_return;
      });
    });
  });
  KJ_IF_MAYBE(e, failure) {
    ASSERT_TRUE(isMultiError(*e)) << text(*e);
    auto errors = errorsIn(*e);
    ASSERT_EQ(errors.size(), size_t(N)) << text(*e);
    std::set<std::string> origins;
    for (auto& error : errors) {
      auto exception = kj::Exception(kj::Exception::Type::FAILED, "", 0, kj::str(error));
      KJ_IF_MAYBE(info, remoteErrorInfo(exception)) {
        EXPECT_EQ(std::string(info->type.cStr()), "sup.Failed");
        std::string origin = info->origin.name.cStr();
        origins.insert(origin);
        EXPECT_EQ(std::string(info->message.cStr()),
                  "child " + origin.substr(origin.size() - 1) + " gave up");
      } else {
        ADD_FAILURE() << "not a RemoteActorError: " << error.cStr();
      }
    }
    EXPECT_EQ(origins, (std::set<std::string>{"failing-0", "failing-1", "failing-2"}));
    for (int i = 0; i < N; ++i) {
      EXPECT_EQ(occurrences(e->getDescription(), "child " + std::to_string(i) + " gave up"), 1u);
    }
  } else {
    ADD_FAILURE() << "the children's errors were lost";
  }
}

// A single failure relayed through two actors keeps its origin and gains each relay.
TEST_F(SupervisionTest, RelayedErrorKeepsItsOriginAndItsRelayPath) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto top = co_await nursery.startActor<WorkerActor>("t", "worker");
      co_await top.grow(2, 1, true);  // t -> t.0 -> t.0.0, which fails
    });
  });
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(isRemoteActorError(*e)) << text(*e);
    KJ_IF_MAYBE(info, remoteErrorInfo(*e)) {
      EXPECT_EQ(std::string(info->type.cStr()), "sup.Failed");
      EXPECT_EQ(std::string(info->message.cStr()), "leaf t.0.0 failed");
      EXPECT_EQ(std::string(info->origin.name.cStr()), "t.0.0");
      EXPECT_EQ(names(info->relayPath), (std::vector<std::string>{"t.0", "t"}));
      EXPECT_EQ(info->line, sup::FAIL_LINE);
    } else {
      ADD_FAILURE() << "no remote error info in: " << text(*e);
    }
  } else {
    ADD_FAILURE() << "the leaf's error was lost";
  }
  EXPECT_EQ(startedActors().size(), 3u);
}

// Checks a tree's nested errors: every leaf of the tree below "t" exactly once, with the relay
// path of its ancestors (nearest last).
void expectEachLeafOnce(const kj::Exception& e, int depth, int width) {
  // The leaves' names: t.a.b... with `depth` indices.
  std::vector<std::string> leaves{"t"};
  for (int level = 0; level < depth; ++level) {
    std::vector<std::string> next;
    for (auto& node : leaves) {
      for (int i = 0; i < width; ++i) next.push_back(node + "." + std::to_string(i));
    }
    leaves = next;
  }
  // Structured all the way: each failure is its own exception, its fields from remoteErrorInfo.
  auto failures = failuresIn(e);
  ASSERT_EQ(failures.size(), leaves.size()) << text(e);
  std::set<std::string> seen;
  for (auto& failure : failures) {
    auto info = KJ_ASSERT_NONNULL(remoteErrorInfo(failure), text(failure));
    std::string origin = info.origin.name.cStr();
    EXPECT_EQ(std::string(info.type.cStr()), "sup.Failed");
    EXPECT_EQ(std::string(info.message.cStr()), "leaf " + origin + " failed");
    EXPECT_EQ(info.line, sup::FAIL_LINE);
    // Its ancestors, nearest last: for t.0.1.1, "t.0.1", "t.0", "t".
    std::vector<std::string> ancestors;
    for (std::string node = origin; node.find('.') != std::string::npos;) {
      node = node.substr(0, node.rfind('.'));
      ancestors.push_back(node);
    }
    EXPECT_EQ(names(info.relayPath), ancestors) << origin;
    EXPECT_TRUE(seen.insert(origin).second) << origin << " twice";
  }
  EXPECT_EQ(seen, std::set<std::string>(leaves.begin(), leaves.end()));
  // And in the raw error too, each leaf's failure is there exactly once.
  for (auto& leaf : leaves) {
    EXPECT_EQ(occurrences(e.getDescription(), "leaf " + leaf + " failed"), 1u) << leaf;
  }
}

// t -> 3 failing leaves: t raises a MultiError, which crosses t's channel with its errors
// structured (wire Error.causes): the root gets a MultiError of the leaves' RemoteActorErrors,
// each relayed by t.
TEST_F(SupervisionTest, NestedMultiErrorOneLevelDown) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto top = co_await nursery.startActor<WorkerActor>("t", "worker");
      co_await top.grow(1, 3, true);
    });
  });
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(isMultiError(*e)) << text(*e);
    expectEachLeafOnce(*e, 1, 3);
  } else {
    ADD_FAILURE() << "the leaves' errors were lost";
  }
  EXPECT_EQ(startedActors().size(), 4u);
}

// t -> 2 -> 4 -> 8 failing leaves: MultiErrors nested three channels deep.
TEST_F(SupervisionTest, NestedMultiErrorsThreeLevelsDown) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto top = co_await nursery.startActor<WorkerActor>("t", "worker");
      co_await top.grow(3, 2, true);
    });
  });
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(isMultiError(*e)) << text(*e);
    expectEachLeafOnce(*e, 3, 2);
  } else {
    ADD_FAILURE() << "the leaves' errors were lost";
  }
  EXPECT_EQ(startedActors().size(), 15u);
  for (auto& [name, pid] : startedActors()) {
    auto events = eventsOf(name);
    EXPECT_TRUE(has(events, "exit")) << name << joined(events);
  }
}

// A remote error's message keeps its lines, empty ones included.
TEST_F(SupervisionTest, RemoteErrorMessageKeepsItsLines) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto worker = co_await nursery.startActor<WorkerActor>("lines", "worker");
      co_await worker.fail("first line\nsecond line\n\nfourth line");
    });
  });
  KJ_IF_MAYBE(e, failure) {
    KJ_IF_MAYBE(info, remoteErrorInfo(*e)) {
      std::string message = info->message.cStr();
      EXPECT_EQ(message, "first line\nsecond line\n\nfourth line") << text(*e);
    } else {
      ADD_FAILURE() << "no remote error info in: " << text(*e);
    }
  } else {
    ADD_FAILURE() << "the error was lost";
  }
}

// ---------------------------------------------------------------------------------------------
// Cancellation travelling down

// A child streams forever (with a grandchild streaming to it); cancelling the stream's scope
// cancels the remote task, whose own nursery stops the grandchild; the child keeps serving.
TEST_F(SupervisionTest, CancellingAnInfinitelyStreamingChild) {
  std::vector<int32_t> treePids;
  std::vector<uint32_t> seqs;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto child = co_await nursery.startActor<WorkerActor>("streamer", "worker");
      CancelScope scope;
      co_await scope.run([&]() -> Co<void> {
        co_await child.endless(1, 1, [&](WorkerActor::Portal::EndlessStream& ticks) -> Co<void> {
          while (auto tick = co_await ticks.receive()) {
            if (seqs.empty()) {
              for (auto pid : tick->getPids()) treePids.push_back(pid);
            }
            seqs.push_back(tick->getSeq());
            if (seqs.size() == 3) scope.cancel();
          }
        });
        ADD_FAILURE() << "the endless stream ended";
      });
      EXPECT_TRUE(scope.cancelledCaught());
      // The remote task ended by cancellation, after its nursery reaped the grandchild.
      auto ended = co_await child.waitFor("endless ended");
      EXPECT_EQ(std::string(ended->getEntry().cStr()), "endless ended: cancelled");
      KJ_ASSERT(treePids.size() == 2);
      KJ_IF_MAYBE(stat, readStat(treePids[1])) {
        ADD_FAILURE() << "the grandchild outlived the cancelled stream: " << describe(*stat);
      }
      // And the child itself still serves.
      EXPECT_EQ((co_await child.info())->getPid(), treePids[0]);
    }, {LONG_GRACE});
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  EXPECT_EQ(seqs, (std::vector<uint32_t>{0, 1, 2}));
  for (auto pid : treePids) known.insert(pid);
  auto grandchild = eventsOf("streamer.0");
  EXPECT_TRUE(has(grandchild, "cancel-actor received")) << joined(grandchild);
  EXPECT_TRUE(has(grandchild, "endless ended: cancelled")) << joined(grandchild);
}

// The nursery is cancelled right after a spawn began (the child exists, its handshake has not
// happened): the child is killed at once and reaped, long before any grace period.
TEST_F(SupervisionTest, CancellingANurseryWhileAChildIsStillStarting) {
  CancelScope scope;
  std::vector<pid_t> starting;
  kj::Maybe<kj::TimePoint> cancelledAt;
  auto failure = runRoot([&]() -> Co<void> {
    co_await scope.run([&]() -> Co<void> {
      co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
        // Coroutines run eagerly: on return the child process exists and the handshake is
        // pending.
        auto spawning = nursery.startActor<WorkerActor>("starting", "worker");
        for (auto& child : childrenOf(getpid())) starting.push_back(child.pid);
        cancelledAt = root.timer().now();
        scope.cancel();
        co_await kj::mv(spawning);
        ADD_FAILURE() << "the spawn finished in a cancelled scope";
      }, {LONG_GRACE});
    });
    KJ_IF_MAYBE(at, cancelledAt) {
      EXPECT_LT(root.timer().now() - *at, 3 * kj::SECONDS) << "the starting child was not "
                                                              "killed at once";
    }
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  EXPECT_TRUE(scope.cancelledCaught());
  ASSERT_EQ(starting.size(), 1u);
  known.insert(starting[0]);
  EXPECT_TRUE(eventsOf("starting").empty()) << "it got as far as running: "
                                            << joined(eventsOf("starting"));
}

// A child blocked in read() cannot act on cancel-actor: it is killed when the grace period runs
// out, and the nursery then completes without an error.
TEST_F(SupervisionTest, ChildBlockedInASystemCallIsKilledAfterTheGracePeriod) {
  constexpr kj::Duration GRACE = 200 * kj::MILLISECONDS;
  // The child tells us through this FIFO that it is about to block (see Worker.block).
  std::string fifoPath = logPath + ".fifo";
  unlink(fifoPath.c_str());
  KJ_SYSCALL(mkfifo(fifoPath.c_str(), 0600));
  int fifo;
  KJ_SYSCALL(fifo = open(fifoPath.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  KJ_DEFER(close(fifo); unlink(fifoPath.c_str()));

  pid_t pid = 0;
  kj::Maybe<kj::TimePoint> bodyDone;
  kj::Duration teardown = 0 * kj::SECONDS;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto child = co_await nursery.startActor<WorkerActor>("blocker", "worker");
      pid = (co_await child.info())->getPid();
      CancelScope scope;
      co_await scope.run([&]() -> Co<void> {
        co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
          tasks.startSoon([&]() -> Co<void> {
            co_await child.block(fifoPath.c_str());
            ADD_FAILURE() << "block() returned";
          });
          kj::UnixEventPort::FdObserver observer(root.eventPort(), fifo,
                                                 kj::UnixEventPort::FdObserver::OBSERVE_READ);
          char byte;
          while (read(fifo, &byte, 1) != 1) co_await observer.whenBecomesReadable();
          scope.cancel();  // it is in read(), or nothing but that call is left before it
        });
      });
      bodyDone = root.timer().now();
    }, {GRACE});
    KJ_IF_MAYBE(done, bodyDone) teardown = root.timer().now() - *done;
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  ASSERT_TRUE(bodyDone != nullptr);
  EXPECT_GE(teardown, GRACE) << "it cannot have exited by itself";
  EXPECT_LT(teardown, 5 * kj::SECONDS);
  ASSERT_NE(pid, 0);
  known.insert(pid);
  auto events = eventsOf("blocker");
  EXPECT_TRUE(has(events, "blocking")) << joined(events);
  EXPECT_FALSE(has(events, "exit")) << "it was not killed: " << joined(events);
  // Killed, it could not reap its own helpers (its forkserver zygote, under HARROW_SPAWN=
  // forkserver): they die with it and are orphaned to us, the subreaper.
  auto left = reapOrphans({pid}, milliseconds(2000));
  EXPECT_TRUE(left.empty()) << "left behind:" << lines(left);
}

// Fifty children started concurrently, then torn down together: all cancelled in order (none
// needed killing: each logged its own exit), all reaped.
TEST_F(SupervisionTest, FiftyChildrenStartedAndTornDownConcurrently) {
  constexpr int N = 50;
  constexpr kj::Duration GRACE = 30 * kj::SECONDS;  // 50 exits under ASan on 2 cores take a while
  std::vector<pid_t> pids(N, 0);
  kj::Maybe<kj::TimePoint> bodyDone;
  kj::Duration teardown = 0 * kj::SECONDS;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      co_await openNursery([&](TaskNursery& starts) -> Co<void> {
        for (int i = 0; i < N; ++i) {
          starts.startSoon([&, i]() -> Co<void> {
            auto worker = co_await nursery.startActor<WorkerActor>(kj::str("w", i), "worker");
            pids[i] = (co_await worker.info())->getPid();
          });
        }
        co_return;
      });
      EXPECT_EQ(nursery.size(), size_t(N));
      bodyDone = root.timer().now();
    }, {GRACE});
    KJ_IF_MAYBE(done, bodyDone) teardown = root.timer().now() - *done;
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  EXPECT_LT(teardown, GRACE) << "a child had to be killed";
  std::set<pid_t> distinct(pids.begin(), pids.end());
  EXPECT_EQ(distinct.size(), size_t(N));
  EXPECT_EQ(distinct.count(0), 0u);
  for (pid_t pid : pids) known.insert(pid);
  auto started = startedActors();
  EXPECT_EQ(started.size(), size_t(N));
  for (auto& [name, pid] : started) {
    auto events = eventsOf(name);
    EXPECT_TRUE(has(events, "cancel-actor received")) << name << joined(events);
    EXPECT_TRUE(has(events, "exit")) << name << joined(events);
  }
}

// ---------------------------------------------------------------------------------------------
// Signals at the root

// tree_program (root, 2 children, 4 grandchildren, all streaming) is interrupted; it must cancel
// its tree in order and exit with 130, leaving nothing behind. `wholeGroup`: the SIGINT goes to
// the root's process group, as a terminal's Ctrl-C does.
class SignalTest : public SupervisionTest {
public:
  void interrupt(bool wholeGroup) {
    std::vector<pid_t> pids;
    Program program = startTree(2, 2, pids);
    ASSERT_EQ(pids.size(), 6u) << "the tree did not get ready: " << readFile(program.errPath);
    EXPECT_EQ(getpgid(program.pid), program.pid);
    for (pid_t pid : pids) {
      // The actors run in process groups of their own: a Ctrl-C reaches the root only.
      EXPECT_NE(getpgid(pid), program.pid) << pid;
    }
    auto sentAt = Clock::now();
    KJ_SYSCALL(kill(wholeGroup ? -program.pid : program.pid, SIGINT));
    auto status = awaitExit(program, milliseconds(10000));
    auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - sentAt);
    std::string stderrText = readFile(program.errPath);
    KJ_IF_MAYBE(s, status) {
      EXPECT_TRUE(WIFEXITED(*s) && WEXITSTATUS(*s) == 130)
          << describeStatus(*s) << "\n" << stderrText;
    } else {
      ADD_FAILURE() << "the root did not exit within 10 s of SIGINT\n" << stderrText;
    }
    EXPECT_LT(took.count(), 5000) << "the orderly cancel took " << took.count() << " ms";
    EXPECT_NE(stderrText.find("Interrupt: cancelling the actor tree"), std::string::npos)
        << stderrText;
    EXPECT_EQ(stderrText.find("ActorDied"), std::string::npos) << stderrText;

    // Every actor was cancelled by its parent (not killed, not orphaned), ended its stream by
    // cancellation, and exited.
    auto started = startedActors();
    EXPECT_EQ(started.size(), 6u);
    for (auto& [name, pid] : started) {
      EXPECT_NE(std::find(pids.begin(), pids.end(), pid), pids.end()) << name;
      auto events = eventsOf(name);
      EXPECT_TRUE(has(events, "cancel-actor received")) << name << joined(events);
      EXPECT_TRUE(has(events, "endless ended: cancelled")) << name << joined(events);
      EXPECT_TRUE(has(events, "exit")) << name << joined(events);
      EXPECT_LT(indexOf(events, "cancel-actor received"), indexOf(events, "exit"))
          << name << joined(events);
    }
  }
};

TEST_F(SignalTest, SigintToTheRootWhileChildrenStream) { interrupt(false); }

TEST_F(SignalTest, CtrlCToTheRootsProcessGroupWhileChildrenStream) { interrupt(true); }

// ---------------------------------------------------------------------------------------------
// Processes dying under the tree

// Child "a" (with two grandchildren) is killed with SIGKILL while a call to it is in progress:
// the caller gets ActorDied naming a, its pid and the signal (not the channel's EOF or reset),
// the nursery raises just that (from the caller and from a's supervisor), and the rest of the
// tree is torn down: sibling "b" by an orderly cancel, a's orphaned grandchildren by their
// PR_SET_PDEATHSIG.
TEST_F(SupervisionTest, KillMinus9OfAChildMidCall) {
  std::vector<int32_t> aTree, bTree;
  kj::Maybe<kj::Exception> callError;
  kj::Maybe<kj::TimePoint> killedAt;
  kj::Duration teardown = 0 * kj::SECONDS;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto a = co_await nursery.startActor<WorkerActor>("a", "worker");
      auto b = co_await nursery.startActor<WorkerActor>("b", "worker");
      uint32_t up = 0;
      auto allUp = kj::newPromiseAndFulfiller<void>();
      co_await openNursery([&](TaskNursery& calls) -> Co<void> {
        calls.startSoon([&]() -> Co<void> {
          try {
            co_await a.hold(1, 2, [&](auto&, Grown::Reader grown) -> Co<void> {
              for (auto pid : grown.getPids()) aTree.push_back(pid);
              if (++up == 2) allUp.fulfiller->fulfill();
              co_return;
            });
          } catch (...) {
            callError = currentException();
          }
          KJ_IF_MAYBE(e, callError) kj::throwFatalException(kj::cp(*e));
        });
        calls.startSoon([&]() -> Co<void> {
          co_await b.hold(0, 0, [&](auto&, Grown::Reader grown) -> Co<void> {
            for (auto pid : grown.getPids()) bTree.push_back(pid);
            if (++up == 2) allUp.fulfiller->fulfill();
            co_return;
          });
        });
        co_await kj::mv(allUp.promise);
        killedAt = root.timer().now();
        KJ_SYSCALL(kill(aTree[0], SIGKILL));  // a is mid-call: its hold has not returned
      });
    }, {LONG_GRACE});
    KJ_IF_MAYBE(at, killedAt) teardown = root.timer().now() - *at;
  });
  ASSERT_EQ(aTree.size(), 3u);
  ASSERT_EQ(bTree.size(), 1u);
  for (auto pid : aTree) known.insert(pid);
  for (auto pid : bTree) known.insert(pid);

  auto diedOfSigkill = [&](const kj::Exception& e) {
    return isActorDied(e) && contains(e, "actor 'a' (pid " + std::to_string(aTree[0]) + ")") &&
           contains(e, "killed by signal 9");
  };
  KJ_IF_MAYBE(e, callError) {
    EXPECT_TRUE(diedOfSigkill(*e)) << text(*e);
  } else {
    ADD_FAILURE() << "the call to the killed child did not fail";
  }
  KJ_IF_MAYBE(e, failure) {
    auto errors = errorsIn(*e);
    EXPECT_GE(errors.size(), 1u) << text(*e);
    for (auto& error : errors) {
      auto one = kj::Exception(kj::Exception::Type::FAILED, "", 0, kj::str(error));
      EXPECT_TRUE(diedOfSigkill(one)) << error.cStr();
    }
  } else {
    ADD_FAILURE() << "the nursery of a killed child raised nothing";
  }
  EXPECT_LT(teardown, LONG_GRACE) << "b had to be killed";

  // b: cancelled in order.
  auto events = eventsOf("b");
  EXPECT_TRUE(has(events, "cancel-actor received")) << joined(events);
  EXPECT_TRUE(has(events, "exit")) << joined(events);
  // a's grandchildren: orphaned, they die by PR_SET_PDEATHSIG, reparented to us to be reaped.
  std::vector<pid_t> orphans(aTree.begin() + 1, aTree.end());
  auto left = reapOrphans(orphans, milliseconds(2000));
  EXPECT_TRUE(left.empty()) << "a's subtree outlived it:" << lines(left);
}

// Grace periods nest (docs/PROTOCOL.md, "Cancelling an actor"): a -> a.0 -> a.0.0, and the leaf
// a.0.0 is stopped (SIGSTOP), so it cannot act on cancel-actor. Cancelling a kills the leaf first
// (at 3/4 of 3/4 of a's grace), and a.0 and a, though each waits for a stuck subtree, still run
// their own teardown (their exit callbacks) before their own grace runs out: nobody above the leaf
// is killed.
TEST_F(SupervisionTest, GracePeriodsNestAroundAStoppedLeaf) {
  constexpr kj::Duration GRACE = 4 * kj::SECONDS;  // a: 4 s, a.0: 3 s, a.0.0: 2.25 s
  std::vector<int32_t> tree;
  kj::Maybe<kj::TimePoint> cancelledAt;
  kj::Duration teardown = 0 * kj::SECONDS;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto a = co_await nursery.startActor<WorkerActor>("a", "worker");
      auto up = kj::newPromiseAndFulfiller<void>();
      co_await openNursery([&](TaskNursery& calls) -> Co<void> {
        calls.startSoon([&]() -> Co<void> {
          kj::Maybe<kj::Exception> error;
          try {
            co_await a.hold(2, 1, [&](auto&, Grown::Reader grown) -> Co<void> {
              for (auto pid : grown.getPids()) tree.push_back(pid);
              up.fulfiller->fulfill();
              co_return;
            });
          } catch (...) {
            error = currentException();  // a was cancelled under the call: expected
          }
        });
        co_await kj::mv(up.promise);
        KJ_SYSCALL(kill(tree.back(), SIGSTOP));  // the leaf: pids come root-first
        cancelledAt = root.timer().now();
        nursery.cancel();
      });
    }, {GRACE});
    KJ_IF_MAYBE(at, cancelledAt) teardown = root.timer().now() - *at;
  });
  ASSERT_EQ(tree.size(), 3u);
  for (auto pid : tree) known.insert(pid);
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << "nobody should have failed: " << text(*e);
  EXPECT_LT(teardown, GRACE) << "a had to be killed";
  auto aEvents = eventsOf("a");
  auto midEvents = eventsOf("a.0");
  auto leafEvents = eventsOf("a.0.0");
  EXPECT_TRUE(has(aEvents, "exit")) << "a did not run its teardown: " << joined(aEvents);
  EXPECT_TRUE(has(midEvents, "exit")) << "a.0 did not run its teardown: " << joined(midEvents);
  EXPECT_FALSE(has(leafEvents, "exit")) << "the stopped leaf ran: " << joined(leafEvents);
}

// tree_program is killed with SIGKILL: it cannot cancel anything, so every actor below it must
// exit on its own (PR_SET_PDEATHSIG, level by level) within 1 s.
TEST_F(SupervisionTest, KillMinus9OfTheRootEveryChildExitsWithin1s) {
  std::vector<pid_t> pids;
  Program program = startTree(2, 2, pids);
  ASSERT_EQ(pids.size(), 6u) << "the tree did not get ready: " << readFile(program.errPath);
  // Every process below the root: the actors it reported, and whatever else the runtime runs
  // there (helper processes too must not outlive the root).
  auto below = descendantsOf(program.pid);
  for (pid_t pid : pids) {
    EXPECT_NE(std::find(below.begin(), below.end(), pid), below.end()) << pid;
  }
  for (pid_t pid : below) known.insert(pid);
  auto watched = watch(below);
  auto killedAt = Clock::now();
  KJ_SYSCALL(kill(program.pid, SIGKILL));
  auto status = awaitExit(program, milliseconds(5000));
  auto running = awaitTermination(kj::mv(watched), milliseconds(1000));
  auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - killedAt);
  EXPECT_TRUE(running.empty()) << running.size() << " of the " << below.size()
                                << " processes below the root still ran 1 s after its SIGKILL";
  EXPECT_LT(took.count(), 1000);
  KJ_IF_MAYBE(s, status) {
    EXPECT_TRUE(WIFSIGNALED(*s) && WTERMSIG(*s) == SIGKILL) << describeStatus(*s);
  }
  // They were orphaned to us: reap them.
  auto left = reapOrphans(below, milliseconds(2000));
  EXPECT_TRUE(left.empty()) << "left after the root's SIGKILL:" << lines(left);
}

}  // namespace
}  // namespace harrow

// ---------------------------------------------------------------------------------------------

namespace {


}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && kj::StringPtr(argv[1]) == "--harrow-child") {
    // Re-executed by a nursery: serve as a worker. The root body never runs here.
    return harrow::main(argc, argv, harrow::implementations(),
                        [](harrow::Actor&) -> kj::Promise<void> { return kj::READY_NOW; });
  }
  // Orphans of the trees we kill are reparented to us, to be awaited and reaped.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  // Before any thread exists: the tests' event loops reap children through SIGCHLD.
  kj::UnixEventPort::captureChildExit();
  harrow::testing::installWatchdog("supervision_test");
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (arg.startsWith("--tree-program=")) {
      char* path = realpath(arg.slice(15).cStr(), nullptr);
      if (path != nullptr) {
        harrow::treeProgram = path;
        free(path);
      }
    }
  }
  if (harrow::treeProgram.empty()) {
    fprintf(stderr, "supervision_test: --tree-program=PATH is required\n");
    return 2;
  }
  return RUN_ALL_TESTS();
}
