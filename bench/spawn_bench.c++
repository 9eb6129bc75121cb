// What spawning and supervising actors costs, beside the bare process-creation baselines, in one
// binary and one run:
//
//   bazel run -c opt //bench:spawn_bench
//
//  - ForkExit:        fork() + _exit(0) in the child + waitpid(): the floor of any new process.
//  - ForkExecTrue:    fork() + execv("/bin/true") + waitpid(): exec of a small dynamic binary.
//  - ForkExecStatic:  the same with a statically linked C no-op (//bench:noop_static; no loader).
//  - ForkExecSelf:    the same with this very binary and `--noop` (returns first thing in main):
//                     exec + dynamic loading + relocation + static initialisation of a harrow
//                     program, i.e. what the exec backend pays before harrow runs at all.
//  - Spawn/mode:      openActorNursery + startActor + the first typed call (Spawnee.ping) on one
//                     new child; p50 of "up" (nursery opened -> first reply) and "down" (first
//                     reply -> nursery closed, child cancelled and reaped). Modes:
//                       0 exec: SpawnBackend::EXEC (children start no zygote of their own);
//                       1 forkserver: SpawnBackend::FORKSERVER, the root's zygote forks the child,
//                         which starts no zygote of its own (HARROW_SPAWN not forkserver);
//                       2 forkserver+zygote: the same with HARROW_SPAWN=forkserver everywhere, so
//                         every forked child forks a zygote of its own first (needed for nested
//                         trees to fork their grandchildren).
//  - Flat/mode/N:     one nursery, N (200, 1000) children spawned at once (each startActor + ping
//                     in a task of its own), then the nursery closes: start -> all up, and start
//                     -> all reaped.
//                     With --scale instead (an hour's machine, not a minute's): 10,000
//                     children, forkserver and exec (FlatStatic/0/10000: the exec'd child is
//                     //bench:spawnee_static, a Spawnee built fully static as harrow_cc_binary
//                     builds a user's program; spawn_bench's own PIE would need over 10 GB),
//                     and 1,110 children beside the 10x10x10 tree of the same backend.
//  - Tree/mode/W/D:   a width-W depth-D tree of Spawnee.grow (14x2: 14 + 196 = 210 actors; 10x3:
//                     10 + 100 + 1000 = 1110): each node spawns its children one after the other,
//                     then grows them all at once; start -> every process reaped.
//  - Cascade/mode/D:  a depth-D width-2 tree (D = 3: 2 + 4 + 8 = 14 actors; D = 5: 62, all
//                     holding) in which one leaf fails 200 ms after it was asked to grow; the time
//                     from the leaf's failure (its steady-clock time, carried in the error) to the
//                     root's nursery raising, every process reaped. The root is a child subreaper,
//                     and afterwards counts any process left with it as parent (counter `left`,
//                     must be 0).
//  - Teardown/S/W/D:  a real harrow::main root (this binary with --tree-root=W,D, exec backend)
//                     holding a width-W depth-D tree (14x2: 210 actors below the root); once every
//                     actor is up, signal S goes to the root: SIGINT (the graceful path: cancel,
//                     acknowledge, exit, bottom-up) or SIGKILL (the hard path: PR_SET_PDEATHSIG
//                     kills the rest). Time from the signal until the last process of the tree
//                     is reaped. With --teardown-scale instead: 1,000 actors in the root's one
//                     nursery (Teardown/S/1000/1) and the 10x10x10 tree (Teardown/S/10/3).
//  - --flat=N,M,...:  only FlatStatic/0/N at these sizes (the exec teardown's linearity probe),
//                     beside 1,000 x fork+exec /bin/true in the same run.
//
// The root is built by hand as in call_bench (see the comment there): its own kj::setupAsyncIo()
// and harrow::Actor with the same discovery settings harrow::main gives a root
// (DiscoveryOptions::forRoot, HARROW_REGISTRY=none so that no registry is hosted), one root per
// benchmark run, driven by `promise.wait(waitScope)`; each iteration runs one job inside the
// root's serve(). The zygote is started in main before any event loop exists, and restarted
// between benchmark runs when a mode needs a different HARROW_SPAWN in it (forked children see
// the environment the zygote was forked with).
//
// Every benchmark runs a fixed number of iterations, three repetitions (the 200-actor trees: one
// iteration, one repetition, to stay within a minute), interleaved in random order; the summary
// uses the median of the repetitions' medians.

#include "bench/spawn.capnp.h"
#include "bench/spawn.capnp.harrow.h"
#include "bench/summary.h"
#include <harrow/spawn/actor_nursery.h>
#include <harrow/spawn/forkserver.h>
#include <harrow/discovery/discovery.h>
#include <harrow/main.h>
#include <harrow/co/nursery.h>

#include <benchmark/benchmark.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using harrow::Co;
using Clock = std::chrono::steady_clock;

constexpr int kRepetitions = 3;
constexpr int kFailDelayMs = 200;

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

double us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// ---- the actor ---------------------------------------------------------------------------------

class SpawneeImpl final : public SpawneeActor::Server {
public:
  Co<void> ping(PingCall call) override {
    call.results().setPid(getpid());
    co_return;
  }

  Co<void> grow(GrowCall call) override {
    auto params = call.params();
    uint32_t depth = params.getDepth();
    uint32_t width = params.getWidth();
    kj::String failAt = kj::str(params.getFailAt());
    bool hold = params.getHold();
    kj::String self = kj::str(harrow::currentActor().identity().name);
    if (depth == 0 || width == 0) {
      if (self == failAt) {
        co_await harrow::currentActor().timer().afterDelay(kFailDelayMs * kj::MILLISECONDS);
        kj::throwFatalException(KJ_EXCEPTION(
            FAILED, kj::str("spawnbench.LeafFailed: ", self, " at_ns=", nowNs(), " ")));
      }
      if (hold) co_await kj::Promise<void>(kj::NEVER_DONE);
      call.results().setNodes(1);
      co_return;
    }
    uint32_t nodes = 1;
    co_await harrow::openActorNursery([&](harrow::ActorNursery& nursery) -> Co<void> {
      kj::Vector<SpawneeActor::Portal> children;
      for (uint32_t i = 0; i < width; ++i) {
        auto name = kj::str(self, ".", i);
        children.add(co_await nursery.startActor<SpawneeActor>(name, "spawnee"));
      }
      co_await harrow::openNursery([&](harrow::TaskNursery& calls) -> Co<void> {
        for (auto& each : children) {
          calls.startSoon([&, child = &each]() -> Co<void> {
            auto result = co_await child->grow([&](auto p) {
              p.setDepth(depth - 1);
              p.setWidth(width);
              p.setFailAt(failAt);
              p.setHold(hold);
            });
            nodes += result->getNodes();
          });
        }
        co_return;
      });
    });
    call.results().setNodes(nodes);
  }
};

harrow::Implementations& implementations() {
  static harrow::Implementations* impls = []() {
    auto* i = new harrow::Implementations;
    i->add<SpawneeImpl>("spawnee");
    return i;
  }();
  return *impls;
}

// ---- modes and the zygote ----------------------------------------------------------------------

enum Mode { EXEC = 0, FORKSERVER = 1, FORKSERVER_ZYGOTES = 2 };

const char* modeName(int mode) {
  switch (mode) {
    case EXEC: return "exec";
    case FORKSERVER: return "forkserver";
    default: return "forkserver+zygote";
  }
}

harrow::SpawnBackend backendOf(int mode) {
  return mode == EXEC ? harrow::SpawnBackend::EXEC : harrow::SpawnBackend::FORKSERVER;
}

pid_t forkServerPidOrZero() {
  KJ_IF_MAYBE(pid, harrow::forkServerPid()) return *pid;
  return 0;
}

std::string zygoteSpawnEnv;  // the HARROW_SPAWN our zygote was forked with

// Before the root of a benchmark run exists (no event loop, no thread): makes the zygote's
// environment fit `mode`, then sets HARROW_SPAWN for exec'd children and for the root itself.
void configure(int mode) {
  std::string want = mode == FORKSERVER_ZYGOTES ? "forkserver" : "exec";
  if (want != zygoteSpawnEnv || forkServerPidOrZero() == 0) {
    harrow::stopForkServer();
    setenv("HARROW_SPAWN", want.c_str(), 1);
    harrow::startForkServer(implementations());
    zygoteSpawnEnv = want;
  }
  // Exec'd children (mode EXEC) inherit this: no zygote of their own, exec for grandchildren.
  // In mode 2 the whole tree uses forkserver (forked children have it from the zygote).
  setenv("HARROW_SPAWN", mode == FORKSERVER_ZYGOTES ? "forkserver" : "exec", 1);
}

// ---- the root ----------------------------------------------------------------------------------

// A root actor serving from construction to finish(); run(job) runs `job` inside its serve().
class Root {
public:
  Root()
      : io(kj::setupAsyncIo()),
        actor(io, harrow::ActorIdentity::random("spawn_bench"), implementations()),
        current(actor),
        served(nullptr) {
    harrow::setDiscovery(actor, harrow::DiscoveryOptions::forRoot("spawn_bench"));
    auto first = kj::newPromiseAndFulfiller<Job*>();
    jobFulfiller = kj::mv(first.fulfiller);
    jobs.push_back(kj::mv(first.promise));
    served = actor.serve([this]() -> kj::Promise<void> { return loop(); }).fork();
  }
  ~Root() noexcept(false) {
    if (!finished) finish();
  }

  harrow::Actor& root() { return actor; }
  kj::WaitScope& waitScope() { return io.waitScope; }

  void run(kj::Function<kj::Promise<void>()> fn) {
    auto done = kj::newPromiseAndFulfiller<void>();
    Job job{kj::mv(fn), kj::mv(done.fulfiller)};
    auto fulfiller = kj::mv(jobFulfiller);
    auto next = kj::newPromiseAndFulfiller<Job*>();
    jobFulfiller = kj::mv(next.fulfiller);
    jobs.push_back(kj::mv(next.promise));
    fulfiller->fulfill(&job);
    done.promise.exclusiveJoin(served.addBranch().then([]() {
      KJ_FAIL_REQUIRE("the root stopped serving");
    })).wait(io.waitScope);
  }

  void finish() {
    finished = true;
    jobFulfiller->fulfill(nullptr);
    served.addBranch().wait(io.waitScope);
  }

private:
  struct Job {
    kj::Function<kj::Promise<void>()> fn;
    kj::Own<kj::PromiseFulfiller<void>> done;
  };

  Co<void> loop() {
    for (;;) {
      KJ_ASSERT(!jobs.empty());
      auto promise = kj::mv(jobs.front());
      jobs.pop_front();
      Job* job = co_await kj::mv(promise);
      if (job == nullptr) co_return;
      kj::Maybe<kj::Exception> failure;
      try {
        co_await job->fn();
      } catch (...) {
        failure = harrow::currentException();
      }
      KJ_IF_MAYBE(e, failure) {
        job->done->reject(kj::mv(*e));
      } else {
        job->done->fulfill();
      }
    }
  }

  kj::AsyncIoContext io;
  harrow::Actor actor;
  harrow::CurrentActorScope current;
  kj::Own<kj::PromiseFulfiller<Job*>> jobFulfiller;
  std::deque<kj::Promise<Job*>> jobs;  // the loop takes the front one (run() adds the next)
  kj::ForkedPromise<void> served;
  bool finished = false;
};

// ---- measurement helpers -----------------------------------------------------------------------

struct Samples {
  std::vector<double> v;
  void add(double x) { v.push_back(x); }
  double median() const {
    if (v.empty()) return 0;
    auto s = v;
    std::sort(s.begin(), s.end());
    return s[s.size() / 2];
  }
};

// Children of this process other than the zygote (running or zombie).
int leftoverChildren() {
  pid_t self = getpid();
  pid_t zygote = forkServerPidOrZero();
  int count = 0;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return -1;
  while (struct dirent* entry = readdir(dir)) {
    char* end;
    long pid = strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == zygote) continue;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE* f = fopen(path, "r");
    if (f == nullptr) continue;
    char buf[512];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char* close = strrchr(buf, ')');
    if (close == nullptr) continue;
    char state;
    int ppid;
    if (sscanf(close + 2, "%c %d", &state, &ppid) == 2 && ppid == self) ++count;
  }
  closedir(dir);
  return count;
}

// ---- baselines ---------------------------------------------------------------------------------

std::string selfExe;
std::string staticNoop;  // empty if it is missing
std::string spawneeStatic;  // //bench:spawnee_static; empty if it is missing
// --scale: 10,000 x fork + exec /bin/true + waitpid one after the other, ms, run first thing in
// main: a process that holds 10,000 children is large, and fork's cost grows with the parent's
// mappings (this run's BM_ForkExecTrue, interleaved with the scale rows, measured 23-46 ms).
double scaleTrueMs = 0;
// --flat=N,...: the sizes of the probe's rows, and fork+exec /bin/true's time per child, ms.
std::vector<int> probeSizes;
double probeTrueMs = 0;

void waitChild(pid_t pid) {
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    KJ_ASSERT(errno == EINTR, strerror(errno));
  }
  KJ_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "baseline child failed", status);
}

// `n` x fork + exec /bin/true + waitpid one after the other; ms in all.
double serialForkExecTrueMs(int n) {
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      execl("/bin/true", "/bin/true", static_cast<char*>(nullptr));
      _exit(127);
    }
    KJ_ASSERT(pid > 0);
    waitChild(pid);
  }
  return us(Clock::now() - t0) / 1e3;
}

void BM_ForkExit(benchmark::State& state) {
  Samples samples;
  for (auto _ : state) {
    auto t0 = Clock::now();
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    KJ_ASSERT(pid > 0);
    waitChild(pid);
    samples.add(us(Clock::now() - t0));
  }
  state.counters["p50_us"] = samples.median();
}

void forkExec(benchmark::State& state, const std::string& path, const char* arg) {
  if (path.empty()) {
    state.SkipWithError("binary not found");
    for (auto _ : state) {}
    return;
  }
  Samples samples;
  for (auto _ : state) {
    auto t0 = Clock::now();
    pid_t pid = fork();
    if (pid == 0) {
      char* argv[] = {const_cast<char*>(path.c_str()), const_cast<char*>(arg), nullptr};
      execv(path.c_str(), argv);
      _exit(127);
    }
    KJ_ASSERT(pid > 0);
    waitChild(pid);
    samples.add(us(Clock::now() - t0));
  }
  state.counters["p50_us"] = samples.median();
}

void BM_ForkExecTrue(benchmark::State& state) { forkExec(state, "/bin/true", nullptr); }
void BM_ForkExecStatic(benchmark::State& state) { forkExec(state, staticNoop, nullptr); }
void BM_ForkExecSelf(benchmark::State& state) { forkExec(state, selfExe, "--noop"); }

// ---- harrow ------------------------------------------------------------------------------------

void BM_Spawn(benchmark::State& state) {
  int mode = state.range(0);
  configure(mode);
  Root r;
  harrow::SpawnOptions options;
  options.backend = backendOf(mode);
  Samples up, down;
  int k = 0;
  for (auto _ : state) {
    Clock::time_point t0, t1;
    auto name = kj::str("s", k++);
    t0 = Clock::now();
    r.run([&]() -> kj::Promise<void> {
      return harrow::openActorNursery(r.root(), [&](harrow::ActorNursery& an) -> Co<void> {
        auto portal = co_await an.startActor<SpawneeActor>(name, "spawnee", options);
        auto reply = co_await portal.ping();
        KJ_ASSERT(reply->getPid() != 0);
        t1 = Clock::now();
      });
    });
    auto t2 = Clock::now();
    up.add(us(t1 - t0));
    down.add(us(t2 - t1));
  }
  r.finish();
  state.counters["up_p50_us"] = up.median();
  state.counters["down_p50_us"] = down.median();
  state.counters["left"] = leftoverChildren();
}

// Flat/mode/N; `executable`: the program exec'd children run (empty: this one).
void flat(benchmark::State& state, const std::string& executable) {
  int mode = state.range(0);
  const int kFlat = state.range(1);
  configure(mode);
  Root r;
  harrow::SpawnOptions options;
  options.backend = backendOf(mode);
  options.executable = executable;
  Samples up, total;
  for (auto _ : state) {
    Clock::time_point t1;
    int answered = 0;
    auto t0 = Clock::now();
    r.run([&]() -> kj::Promise<void> {
      return harrow::openActorNursery(r.root(), [&](harrow::ActorNursery& an) -> Co<void> {
        co_await harrow::openNursery([&](harrow::TaskNursery& tasks) -> Co<void> {
          for (int i = 0; i < kFlat; ++i) {
            tasks.startSoon([&, i]() -> Co<void> {
              auto name = kj::str("f", i);
              auto portal = co_await an.startActor<SpawneeActor>(name, "spawnee", options);
              co_await portal.ping();
              ++answered;
            });
          }
          co_return;
        });
        t1 = Clock::now();
      });
    });
    auto t2 = Clock::now();
    KJ_ASSERT(answered == kFlat);
    up.add(us(t1 - t0) / 1e3);
    total.add(us(t2 - t0) / 1e3);
  }
  r.finish();
  state.counters["up_p50_ms"] = up.median();
  state.counters["total_p50_ms"] = total.median();
  state.counters["left"] = leftoverChildren();
}

void BM_Flat(benchmark::State& state) {
  flat(state, "");
}

void BM_FlatStatic(benchmark::State& state) {
  if (spawneeStatic.empty()) {
    state.SkipWithError("spawnee_static not found beside this binary");
    for (auto _ : state) {}
    return;
  }
  flat(state, spawneeStatic);
}

// Root-level: spawn `width` nodes, grow each (depth - 1 more levels) at once.
Co<uint32_t> growTree(harrow::Actor& root, uint32_t depth, uint32_t width, kj::StringPtr failAt,
                      bool hold, harrow::SpawnOptions options) {
  uint32_t nodes = 0;
  co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> Co<void> {
    kj::Vector<SpawneeActor::Portal> children;
    for (uint32_t i = 0; i < width; ++i) {
      auto name = kj::str("c", i);
      children.add(co_await an.startActor<SpawneeActor>(name, "spawnee", options));
    }
    co_await harrow::openNursery([&](harrow::TaskNursery& calls) -> Co<void> {
      for (auto& each : children) {
        calls.startSoon([&, child = &each]() -> Co<void> {
          auto result = co_await child->grow([&](auto p) {
            p.setDepth(depth - 1);
            p.setWidth(width);
            p.setFailAt(failAt);
            p.setHold(hold);
          });
          nodes += result->getNodes();
        });
      }
      co_return;
    });
  });
  co_return nodes;
}

void BM_Tree(benchmark::State& state) {
  int mode = state.range(0);
  uint32_t width = state.range(1), depth = state.range(2);
  configure(mode);
  Root r;
  harrow::SpawnOptions options;
  options.backend = backendOf(mode);
  Samples total;
  for (auto _ : state) {
    uint32_t nodes = 0;
    auto t0 = Clock::now();
    r.run([&]() -> kj::Promise<void> {
      return growTree(r.root(), depth, width, "", false, options)
          .then([&](uint32_t n) { nodes = n; });
    });
    total.add(us(Clock::now() - t0) / 1e3);
    uint32_t expected = 0;
    for (uint32_t level = 1, n = 1; level <= depth; ++level) expected += (n *= width);
    KJ_ASSERT(nodes == expected, nodes, expected);
  }
  r.finish();
  state.counters["total_p50_ms"] = total.median();
  state.counters["left"] = leftoverChildren();
}

void BM_Cascade(benchmark::State& state) {
  int mode = state.range(0);
  uint32_t depth = state.range(1);
  std::string failAt = "c0.1";
  for (uint32_t level = 3; level <= depth; ++level) failAt += ".0";
  configure(mode);
  Root r;
  harrow::SpawnOptions options;
  options.backend = backendOf(mode);
  Samples teardown;
  int left = 0;
  for (auto _ : state) {
    kj::Maybe<kj::Exception> error;
    r.run([&]() -> kj::Promise<void> {
      return growTree(r.root(), depth, 2, failAt.c_str(), true, options)
          .then([](uint32_t) {}, [&](kj::Exception&& e) { error = kj::mv(e); });
    });
    int64_t end = nowNs();
    auto& e = KJ_ASSERT_NONNULL(error, "the tree did not fail");
    auto text = kj::str(e.getDescription());
    const char* at = strstr(text.cStr(), "at_ns=");
    KJ_ASSERT(at != nullptr, "not the leaf's failure", text);
    int64_t failedAt = strtoll(at + 6, nullptr, 10);
    teardown.add((end - failedAt) / 1e6);
    left += leftoverChildren();
  }
  r.finish();
  state.counters["teardown_p50_ms"] = teardown.median();
  state.counters["left"] = left;
}

// `root` and the live processes below it (children, grandchildren, ...), from /proc.
std::vector<pid_t> treeOf(pid_t root) {
  std::map<pid_t, pid_t> parents;
  DIR* dir = opendir("/proc");
  KJ_ASSERT(dir != nullptr);
  while (struct dirent* entry = readdir(dir)) {
    char* end;
    long pid = strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE* f = fopen(path, "r");
    if (f == nullptr) continue;
    char buf[512];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char* close = strrchr(buf, ')');
    char state;
    int ppid;
    if (close != nullptr && sscanf(close + 2, "%c %d", &state, &ppid) == 2 && state != 'Z') {
      parents[pid] = ppid;
    }
  }
  closedir(dir);
  std::vector<pid_t> tree;
  for (auto [pid, ppid] : parents) {
    for (pid_t up = pid; up > 1;) {
      if (up == root) {
        tree.push_back(pid);
        break;
      }
      auto it = parents.find(up);
      if (it == parents.end()) break;
      up = it->second;
    }
  }
  return tree;
}

// Processes below `root` now.
int descendantsOf(pid_t root) {
  auto tree = treeOf(root);
  return int(tree.size()) - int(std::count(tree.begin(), tree.end(), root));
}

// CPU time `root` and the processes below it have used so far (user + system, all threads), from
// /proc/PID/schedstat: nanoseconds, exact (/proc/PID/stat's ticks round to 10 ms per process).
int64_t treeCpuNs(pid_t root) {
  int64_t total = 0;
  for (pid_t pid : treeOf(root)) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
    FILE* f = fopen(path, "r");
    if (f == nullptr) continue;
    long long ns = 0;
    if (fscanf(f, "%lld", &ns) == 1) total += ns;
    fclose(f);
  }
  return total;
}

// CPU time of this process's reaped descendants so far (getrusage's RUSAGE_CHILDREN: a process
// counts once it and every ancestor up to us were waited for), nanoseconds.
int64_t reapedCpuNs() {
  struct rusage usage;
  KJ_SYSCALL(getrusage(RUSAGE_CHILDREN, &usage));
  auto ns = [](const timeval& t) { return int64_t(t.tv_sec) * 1000000000 + t.tv_usec * 1000; };
  return ns(usage.ru_utime) + ns(usage.ru_stime);
}

struct TeardownFigures {
  double ms;        // signal -> the tree's last process reaped
  double cpuMsPer;  // CPU the tree used from the signal on (root included), per actor
};

// One teardown of a width x depth tree under a harrow::main root by `signal`.
TeardownFigures teardownOnce(int signal, uint32_t width, uint32_t depth) {
  uint32_t expected = 0;
  for (uint32_t level = 1, n = 1; level <= depth; ++level) expected += (n *= width);
  auto spec = kj::str("--tree-root=", width, ",", depth);
  fflush(stdout);
  int64_t reapedBefore = reapedCpuNs();
  pid_t root = fork();
  KJ_ASSERT(root >= 0);
  if (root == 0) {
    setenv("HARROW_SPAWN", "exec", 1);
    execl(selfExe.c_str(), selfExe.c_str(), spec.cStr(), nullptr);
    _exit(127);
  }
  // Up: every actor of the tree exists (leaves hold their grow call). A look at /proc costs
  // milliseconds of CPU with a thousand processes: less often for large trees.
  while (descendantsOf(root) < int(expected)) usleep(expected > 500 ? 200000 : 20000);
  usleep(expected > 500 ? 500000 : 100000);  // their last handshakes and calls settle
  // The tree's CPU until now, the root's included.
  int64_t cpuBefore = treeCpuNs(root);
  auto t0 = Clock::now();
  KJ_SYSCALL(kill(root, signal));
  // Reaped: the root always comes to us. A graceful root reaps its children, and they theirs;
  // on SIGKILL every other process is orphaned and comes to us (the subreaper) too, and so does
  // any process whose parent was killed at the end of a grace period. /proc is looked at only
  // once the root is reaped and no other child is waiting to be (it costs CPU: with a thousand
  // orphans dying, once per lull, and then the next exit is waited for, not polled).
  pid_t zygote = forkServerPidOrZero();
  for (bool rootReaped = false, block = true;;) {
    int status;
    pid_t pid = waitpid(-1, &status, block ? 0 : WNOHANG);
    if (pid < 0) {
      KJ_ASSERT(errno == EINTR, strerror(errno));
      continue;
    }
    if (pid > 0) {
      KJ_ASSERT(pid != zygote, "the zygote exited");
      rootReaped |= pid == root;
      block = !rootReaped;
      continue;
    }
    if (leftoverChildren() == 0) break;
    block = true;
  }
  double ms = us(Clock::now() - t0) / 1e3;
  KJ_ASSERT(leftoverChildren() == 0 && descendantsOf(root) <= 0, "the tree left processes");
  // Every process of the tree was reaped, by its parent or by us: its whole life is in
  // RUSAGE_CHILDREN now (the zygote stays up and is not counted).
  double cpuMs = (reapedCpuNs() - reapedBefore - cpuBefore) / 1e6;
  return {ms, cpuMs / (expected + 1)};
}

void BM_Teardown(benchmark::State& state) {
  int signal = state.range(0);
  uint32_t width = state.range(1), depth = state.range(2);
  configure(EXEC);
  Samples teardown, cpu;
  for (auto _ : state) {
    auto figures = teardownOnce(signal, width, depth);
    teardown.add(figures.ms);
    cpu.add(figures.cpuMsPer);
  }
  state.counters["teardown_p50_ms"] = teardown.median();
  state.counters["cpu_per_actor_ms"] = cpu.median();
  state.counters["left"] = leftoverChildren();
}

// ---- summary -----------------------------------------------------------------------------------

// Collects each benchmark's counters per repetition; prints medians and ratios at the end.
class SummaryReporter : public benchmark::ConsoleReporter {
public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (auto& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      for (auto& [key, counter] : run.counters) {
        values[run.run_name.function_name + "/" + run.run_name.args + ":" + key].push_back(
            counter.value);
      }
    }
  }

  double get(const std::string& name, const std::string& counter) {
    auto it = values.find(name + ":" + counter);
    return it == values.end() ? 0 : harrow::bench::median(it->second);
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    double forkExit = get("BM_ForkExit/", "p50_us");
    double execTrue = get("BM_ForkExecTrue/", "p50_us");
    double execStatic = get("BM_ForkExecStatic/", "p50_us");
    double execSelf = get("BM_ForkExecSelf/", "p50_us");
    printf("\nSummary (median over repetitions of each repetition's median)\n");
    printf("  baselines: fork+_exit %.0f us, fork+exec /bin/true %.0f us, static no-op %.0f us, "
           "this binary --noop %.0f us\n",
           forkExit, execTrue, execStatic, execSelf);
    for (int mode = 0; mode < 3; ++mode) {
      auto m = std::to_string(mode);
      double up = get("BM_Spawn/" + m, "up_p50_us");
      double down = get("BM_Spawn/" + m, "down_p50_us");
      if (up == 0) continue;
      printf("  spawn+handshake+first call, %-18s %7.0f us (%.1fx fork+exec /bin/true, %.1fx "
             "fork+exec self, %.1fx fork+_exit); teardown %.0f us; target %s: %s\n",
             modeName(mode), up, up / execTrue, up / execSelf, up / forkExit, down,
             mode == EXEC ? "< 2000 us" : "< 500 us",
             up < (mode == EXEC ? 2000 : 500) ? "met" : "NOT met");
    }
    for (int mode = 0; mode < 3; ++mode) {
      auto m = std::to_string(mode);
      for (auto [kind, flat] :
           {std::pair{"BM_Flat/", 200}, std::pair{"BM_Flat/", 1000}, std::pair{"BM_Flat/", 1110},
            std::pair{"BM_Flat/", 10000}, std::pair{"BM_FlatStatic/", 10000}}) {
        auto name = kind + m + "/" + std::to_string(flat);
        double up = get(name, "up_p50_ms");
        double total = get(name, "total_p50_ms");
        if (total == 0 || (!probeSizes.empty() && kind == std::string("BM_FlatStatic/"))) continue;
        double baseline = flat == 10000 && scaleTrueMs != 0 ? scaleTrueMs : flat * execTrue / 1e3;
        std::string verdict;
        if (flat == 1000) {
          verdict = total < (mode == EXEC ? 3000 : 1000) ? "; target met" : "; target NOT met";
        } else if (flat == 10000) {
          double target = mode == EXEC ? 2.0 : 1.0;
          char text[80];
          snprintf(text, sizeof(text), "; %.2fx (target <= %.1fx: %s)", total / baseline, target,
                   total <= target * baseline ? "met" : "NOT met");
          verdict = text;
        }
        printf(
            "  %5d children in one nursery, %-18s%s up %.0f ms, up+down %.0f ms (%.2f ms per "
            "actor; %d x fork+exec /bin/true %.0f ms; left %.0f)%s\n",
            flat, modeName(mode), kind == std::string("BM_FlatStatic/") ? " (static child)" : "",
            up, total, total / flat, flat, baseline, get(name, "left"), verdict.c_str());
      }
      for (auto [width, depth] : {std::pair{14, 2}, std::pair{10, 3}}) {
        double tree = get("BM_Tree/" + m + "/" + std::to_string(width) + "/" +
                          std::to_string(depth), "total_p50_ms");
        if (tree == 0) continue;
        int actors = 0;
        for (int level = 0, n = 1; level < depth; ++level) actors += (n *= width);
        printf("  %dx%d tree (%d actors), %-18s up+down %.0f ms%s\n", width, depth, actors,
               modeName(mode), tree,
               depth != 3 ? "" : tree < 2000 ? "; target (< 2 s) met" : "; target (< 2 s) NOT met");
        // The same backend's flat 1,110 (forkserver: the tree needs a zygote per inner node,
        // the flat nursery none).
        int flatMode = mode == FORKSERVER_ZYGOTES ? FORKSERVER : mode;
        double flat = get("BM_Flat/" + std::to_string(flatMode) + "/" + std::to_string(actors),
                          "total_p50_ms");
        if (flat != 0) {
          printf(
              "  %dx%d tree / %d children in one nursery (%s): %.0f / %.0f ms = %.2fx (target "
              "<= 1.5x: %s)\n",
              width, depth, actors, modeName(flatMode), tree, flat, tree / flat,
              tree <= 1.5 * flat ? "met" : "NOT met");
        }
      }
      double cascade = get("BM_Cascade/" + m + "/3", "teardown_p50_ms");
      double deep = get("BM_Cascade/" + m + "/5", "teardown_p50_ms");
      if (cascade != 0) {
        printf("  depth-3 cascade teardown,    %-18s %.1f ms (target < 100 ms: %s)\n",
               modeName(mode), cascade, cascade < 100 ? "met" : "NOT met");
      }
      if (cascade != 0 && deep != 0) {
        printf("  depth-5 cascade teardown,    %-18s %.1f ms = %.2fx depth 3 (target <= 1.5x: "
               "%s)\n", modeName(mode), deep, deep / cascade,
               deep <= 1.5 * cascade ? "met" : "NOT met");
      }
    }
    for (int n : probeSizes) {
      auto name = "BM_FlatStatic/0/" + std::to_string(n);
      double up = get(name, "up_p50_ms");
      double total = get(name, "total_p50_ms");
      if (total == 0) continue;
      printf(
          "  %5d children in one nursery, exec (static child): up %.0f ms, down %.0f ms, "
          "up+down %.0f ms = %.3f ms per child (up %.3f, down %.3f); %.2fx %d x fork+exec "
          "/bin/true (%.3f ms each); left %.0f\n",
          n, up, total - up, total, total / n, up / n, (total - up) / n, total / (n * probeTrueMs),
          n, probeTrueMs, get(name, "left"));
    }
    for (auto [width, depth] : {std::pair{14, 2}, std::pair{1000, 1}, std::pair{10, 3}}) {
      auto shape = "/" + std::to_string(width) + "/" + std::to_string(depth);
      double graceful = get("BM_Teardown/" + std::to_string(SIGINT) + shape, "teardown_p50_ms");
      double hard = get("BM_Teardown/" + std::to_string(SIGKILL) + shape, "teardown_p50_ms");
      if (graceful == 0 || hard == 0) continue;
      int actors = 0;
      for (int level = 0, n = 1; level < depth; ++level) actors += (n *= width);
      printf(
          "  %dx%d tree (%d actors) under harrow::main, exec: SIGINT teardown %.0f ms, kill -9 "
          "teardown %.0f ms: %.2fx (target <= 2x: %s); CPU per actor from the signal on: "
          "SIGINT %.3f ms, kill -9 %.3f ms\n",
          width, depth, actors, graceful, hard, graceful / hard,
          graceful <= 2 * hard ? "met" : "NOT met",
          get("BM_Teardown/" + std::to_string(SIGINT) + shape, "cpu_per_actor_ms"),
          get("BM_Teardown/" + std::to_string(SIGKILL) + shape, "cpu_per_actor_ms"));
    }
    fflush(stdout);
  }

private:
  std::map<std::string, std::vector<double>> values;
};

}  // namespace

BENCHMARK(BM_ForkExit)->Iterations(300)->Repetitions(kRepetitions)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ForkExecTrue)
    ->Iterations(200)
    ->Repetitions(kRepetitions)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ForkExecStatic)
    ->Iterations(200)
    ->Repetitions(kRepetitions)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ForkExecSelf)
    ->Iterations(50)
    ->Repetitions(kRepetitions)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Spawn)
    ->Arg(EXEC)
    ->Arg(FORKSERVER)
    ->Arg(FORKSERVER_ZYGOTES)
    ->Iterations(50)
    ->Repetitions(kRepetitions)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Flat)
    ->Args({EXEC, 200})
    ->Args({FORKSERVER, 200})
    ->Args({EXEC, 1000})
    ->Args({FORKSERVER, 1000})
    ->Iterations(1)
    ->Repetitions(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Tree)
    ->Args({EXEC, 14, 2})
    ->Args({FORKSERVER_ZYGOTES, 14, 2})
    ->Args({EXEC, 10, 3})
    ->Args({FORKSERVER_ZYGOTES, 10, 3})
    ->Iterations(1)
    ->Repetitions(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Cascade)
    ->Args({EXEC, 3})
    ->Args({FORKSERVER_ZYGOTES, 3})
    ->Args({EXEC, 5})
    ->Args({FORKSERVER_ZYGOTES, 5})
    ->Iterations(2)
    ->Repetitions(kRepetitions)
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_Teardown)
    ->Args({SIGINT, 14, 2})
    ->Args({SIGKILL, 14, 2})
    ->Iterations(3)
    ->Repetitions(1)
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  if (argc > 1 && kj::StringPtr(argv[1]) == "--noop") return 0;  // the exec baseline
  // Benchmark roots host no registry (children get none either).
  setenv("HARROW_REGISTRY", "none", 1);
  if (argc > 1 && kj::StringPtr(argv[1]).startsWith("--tree-root=")) {
    // BM_Teardown's root: grows a holding tree and keeps it until a signal ends it.
    uint32_t width = 0, depth = 0;
    KJ_ASSERT(sscanf(argv[1] + 12, "%u,%u", &width, &depth) == 2);
    // A coroutine awaiting growTree, not growTree(...).ignoreResult(): SIGINT cancels a harrow
    // coroutine cooperatively (its nurseries cancel and reap their children), while a plain
    // kj::Promise the root awaits is dropped, and an actor nursery dropped with live children
    // kills them (the rows measured that before, as "graceful").
    return harrow::main(argc, argv, implementations(), [=](harrow::Actor& root) -> Co<void> {
      harrow::SpawnOptions options;
      options.backend = harrow::SpawnBackend::EXEC;
      co_await growTree(root, depth, width, "", true, options);
    });
  }
  if (argc > 1 && kj::StringPtr(argv[1]) == "--harrow-child") {
    return harrow::main(argc, argv, implementations(),
                        [](harrow::Actor&) -> kj::Promise<void> { return kj::READY_NOW; });
  }

  // What harrow::main does for a root: children are reaped through the event loop.
  kj::UnixEventPort::captureChildExit();
  // Orphans (a grandchild whose parent was killed) come to us, so the leftover check sees them.
  prctl(PR_SET_CHILD_SUBREAPER, 1);

  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  KJ_ASSERT(n > 0);
  exe[n] = '\0';
  selfExe = exe;
  std::string dir = selfExe.substr(0, selfExe.rfind('/'));
  if (access((dir + "/noop_static").c_str(), X_OK) == 0) staticNoop = dir + "/noop_static";
  if (access((dir + "/spawnee_static").c_str(), X_OK) == 0) {
    spawneeStatic = dir + "/spawnee_static";
  }

  // As harrow::main does: each child costs the root a descriptor (10,000 with --scale).
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }

  configure(EXEC);

  std::vector<char*> args(argv, argv + argc);
  bool interleavingGiven = false;
  bool scale = false;
  std::vector<int> flatSizes;  // --flat=N,M,...: only FlatStatic/0/N (exec) rows of these sizes
  bool teardownScale = false;  // --teardown-scale: only the 1,000-actor teardown rows
  for (char* arg : args) {
    interleavingGiven |= kj::StringPtr(arg).startsWith("--benchmark_enable_random_interleaving");
    scale |= kj::StringPtr(arg) == "--scale";
    teardownScale |= kj::StringPtr(arg) == "--teardown-scale";
    if (kj::StringPtr(arg).startsWith("--flat=")) {
      for (char* p = arg + 7; *p != '\0';) {
        flatSizes.push_back(strtol(p, &p, 10));
        if (*p == ',') ++p;
      }
    }
  }
  if (teardownScale) {
    // SIGINT against kill -9 of the same tree, 1,000 actors flat (one nursery) and 10x10x10
    // (1,110), interleaved; a minute or two, and about 1.5 GB while a tree is up.
    args.erase(std::remove_if(args.begin(), args.end(),
                              [](char* a) { return kj::StringPtr(a) == "--teardown-scale"; }),
               args.end());
    benchmark::ClearRegisteredBenchmarks();
    benchmark::RegisterBenchmark("BM_Teardown", BM_Teardown)
        ->Args({SIGINT, 1000, 1})
        ->Args({SIGKILL, 1000, 1})
        ->Args({SIGINT, 10, 3})
        ->Args({SIGKILL, 10, 3})
        ->Iterations(3)
        ->Repetitions(1)
        ->Unit(benchmark::kMillisecond);
  }
  if (!flatSizes.empty()) {
    // The linearity probe of the exec teardown (bench/README.md, "10,000 actors"): the same
    // static child as --scale's 10,000 row, at the sizes given, in order, one run each, beside
    // 1,000 x fork+exec /bin/true one after the other first (the baseline, per child).
    probeSizes = flatSizes;
    probeTrueMs = serialForkExecTrueMs(1000) / 1000;
    printf("1,000 x fork+exec /bin/true, one after the other, before any row: %.3f ms each\n",
           probeTrueMs);
    args.erase(std::remove_if(args.begin(), args.end(),
                              [](char* a) { return kj::StringPtr(a).startsWith("--flat="); }),
               args.end());
    benchmark::ClearRegisteredBenchmarks();
    auto* rows = benchmark::RegisterBenchmark("BM_FlatStatic", BM_FlatStatic);
    for (int n : flatSizes) rows->Args({EXEC, n});
    rows->Iterations(1)->Repetitions(1)->Unit(benchmark::kMillisecond);
    interleavingGiven = true;
  }
  if (scale) {
    scaleTrueMs = serialForkExecTrueMs(10000);
    printf("10,000 x fork+exec /bin/true, one after the other, before any row: %.0f ms\n",
           scaleTrueMs);
    // Only the scale rows and the baselines they are divided by.
    args.erase(std::remove_if(args.begin(), args.end(),
                              [](char* a) { return kj::StringPtr(a) == "--scale"; }),
               args.end());
    benchmark::ClearRegisteredBenchmarks();
    benchmark::RegisterBenchmark("BM_ForkExecTrue", BM_ForkExecTrue)
        ->Iterations(200)
        ->Repetitions(kRepetitions)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("BM_Flat", BM_Flat)
        ->Args({FORKSERVER, 10000})
        ->Args({EXEC, 1110})
        ->Args({FORKSERVER, 1110})
        ->Iterations(1)
        ->Repetitions(1)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("BM_FlatStatic", BM_FlatStatic)
        ->Args({EXEC, 10000})
        ->Iterations(1)
        ->Repetitions(1)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("BM_Tree", BM_Tree)
        ->Args({EXEC, 10, 3})
        ->Args({FORKSERVER_ZYGOTES, 10, 3})
        ->Iterations(1)
        ->Repetitions(1)
        ->Unit(benchmark::kMillisecond);
  }
  char interleave[] = "--benchmark_enable_random_interleaving=true";
  if (!interleavingGiven) args.insert(args.begin() + 1, interleave);
  int benchArgc = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&benchArgc, args.data());
  if (benchmark::ReportUnrecognizedArguments(benchArgc, args.data())) return 1;
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  harrow::stopForkServer();
  return 0;
}
