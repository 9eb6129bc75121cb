// What a typed harrow call between a parent and a child actor costs, next to what the same
// round trip costs over lower layers, in one binary and one run.
//
//   bazel run -c opt //bench:call_bench
//
// Every benchmark is a 16-byte round trip parent <-> child process over a Unix socketpair:
//  - Floor:       blocking write()/read() of 16 bytes with a fork()ed child echoing them.
//  - KjFramed:    one capnp message each way, capnp::writeMessage/readMessage over a
//                 kj::AsyncIoStream, a KJ event loop in each process.
//  - Channel:     the same messages through harrow::Channel at both ends (harrow's framing layer,
//                 without the protocol engine): tells the engine's cost from the transport's.
//  - LeanFramed:  a prototype of a leaner Channel transport (EPOLLIN-only registration, no
//                 speculative read); see its comment and bench/README.md. Not a harrow layer.
//  - CapnpRpc:    capnp's own two-party RPC (TwoPartyServer / TwoPartyClient), EchoRpc.ping.
//  - HarrowCall:  an Echo actor spawned with openActorNursery/startActor, the typed Echo.ping.
//  - HarrowCall100: 100 typed calls in flight at once; the time is per call.
// Each runs pinned (parent and child both on CPU 0, sched_setaffinity in both) and unpinned.
// Streams of 16-byte items: harrow's Echo.items against the same wire::Message `yield` frames
// written raw by a fork()ed child (capnp::writeMessageToFd, one writev each) and read with a
// buffered blocking reader; and Echo.items broadcast to 8 local subscribers (subscribe())
// against its plain consumer. A summary at the end prints the ratios and the idle child actor's
// resident memory.
//
// Latency benchmarks time every round trip and report its median (`p50_us`) and mean
// (`mean_us`). Each benchmark runs a fixed number of iterations and five repetitions, in random
// interleaved order (--benchmark_enable_random_interleaving, on by default here) so that load
// drifting during the run does not favour one benchmark; the summary uses the median of the
// repetitions. The whole binary runs in well under a minute.
//
// How the actor tree stays alive across iterations: this binary does not run its root through
// harrow::main (whose body runs inside the root's one `wait()`, where Google Benchmark's
// synchronous loop cannot run). Instead each harrow benchmark builds the root itself — its own
// kj::setupAsyncIo() and harrow::Actor — starts root.serve(openActorNursery(...)) as an eagerly
// evaluated promise whose body spawns the actor, hands the portal out through a fulfiller and
// then waits on a "done" promise. The timing loop then drives the event loop with
// `portal.ping(...).wait(waitScope)`: one spawn per benchmark run, not per iteration. At the end
// it fulfills "done" and waits for the nursery, which cancels and reaps the child. The event
// loop exists only while a harrow benchmark runs, so the fork()ed baselines never inherit one.
// Child mode (argv[1] == "--harrow-child") is handed to harrow::main before anything else.

#include "bench/bench.capnp.h"
#include "bench/bench.capnp.harrow.h"
#include <harrow/actor/busy_poll.h>
#include <harrow/co/nursery.h>
#include <harrow/spawn/actor_nursery.h>
#include <harrow/ipc/channel.h>
#include <harrow/main.h>
#include <harrow/engine/peer.h>

#include <benchmark/benchmark.h>
#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <capnp/serialize-async.h>
#include <capnp/serialize.h>
#include <harrow/wire.capnp.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/io.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using harrow::Co;
using Clock = std::chrono::steady_clock;

constexpr size_t kPayloadBytes = 16;
constexpr int kLatencyIterations = 2000;  // round trips per repetition
constexpr int kInFlight = 100;            // calls in flight in HarrowCall100
constexpr int kInFlightIterations = 100;  // batches of kInFlight per repetition
constexpr uint32_t kStreamItems = 20000;  // items per stream iteration
constexpr uint32_t kItemBytes = 16;
constexpr int kStreamIterations = 3;
constexpr int kSubscribers = 8;           // local subscribers in HarrowBroadcast
constexpr int kRepetitions = 5;
constexpr const char* kPinEnv = "HARROW_BENCH_PIN";

// ---- CPU affinity --------------------------------------------------------------------------------

cpu_set_t originalMask;

void pinToCpu0() {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  KJ_SYSCALL(sched_setaffinity(0, sizeof(one), &one));
}

// Pins this process (and, through inheritance and kPinEnv, every child it starts) to CPU 0, or
// restores the mask the program started with.
void setPinned(bool pinned) {
  if (pinned) {
    pinToCpu0();
    setenv(kPinEnv, "1", 1);  // the spawned harrow child pins itself too (see main)
  } else {
    KJ_SYSCALL(sched_setaffinity(0, sizeof(originalMask), &originalMask));
    unsetenv(kPinEnv);
  }
}

// ---- measurement helpers -----------------------------------------------------------------------

// Per-operation times of one benchmark run: the median and mean, as counters in microseconds.
class Samples {
public:
  explicit Samples(size_t expected) { ns.reserve(expected); }
  void add(Clock::duration d) {
    ns.push_back(std::chrono::duration<double, std::nano>(d).count());
  }
  // Each sample covered `opsPerSample` operations (e.g. 100 calls in flight).
  void report(benchmark::State& state, double opsPerSample = 1) {
    if (ns.empty()) return;
    std::vector<double> sorted = ns;
    std::sort(sorted.begin(), sorted.end());
    double sum = 0;
    for (double v : ns) sum += v;
    state.counters["p50_us"] = sorted[sorted.size() / 2] / opsPerSample / 1e3;
    state.counters["mean_us"] = sum / ns.size() / opsPerSample / 1e3;
  }

private:
  std::vector<double> ns;
};

kj::Array<kj::byte> makePayload(size_t n) {
  auto payload = kj::heapArray<kj::byte>(n);
  for (size_t i = 0; i < n; ++i) payload[i] = static_cast<kj::byte>(i * 7 + 1);
  return payload;
}

// ---- fork()ed children for the baselines -------------------------------------------------------

// Runs `body(fd)` in a fork()ed child holding the other end of a new socketpair; the child exits
// when body returns. Returns the child's pid; `parentFd` receives this side's end.
template <typename Body>
pid_t forkChild(bool pinned, kj::AutoCloseFd& parentFd, Body&& body) {
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  KJ_ASSERT(pid >= 0, "fork failed", strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the benchmark
    if (pinned) pinToCpu0();
    int status = 0;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { body(fds[1]); })) {
      fprintf(stderr, "call_bench child: %s\n", kj::str(*e).cStr());
      status = 1;
    }
    _exit(status);
  }
  close(fds[1]);
  parentFd = kj::AutoCloseFd(fds[0]);
  return pid;
}

// Closes our end (the child sees EOF and exits) and reaps the child.
void finishChild(kj::AutoCloseFd& fd, pid_t pid) {
  fd = nullptr;
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno == EINTR) continue;
    // ECHILD: a KJ event port (captureChildExit) reaped it already.
    KJ_ASSERT(errno == ECHILD, strerror(errno));
    return;
  }
  KJ_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "baseline child failed", status);
}

void readFully(int fd, void* buffer, size_t n) {
  auto p = static_cast<char*>(buffer);
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    KJ_ASSERT(r > 0, "read", r, strerror(errno));
    p += r;
    n -= r;
  }
}

// False on EOF at the start.
bool tryReadFully(int fd, void* buffer, size_t n) {
  ssize_t r;
  do r = read(fd, buffer, n); while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  KJ_ASSERT(r > 0, "read", strerror(errno));
  if (static_cast<size_t>(r) < n) readFully(fd, static_cast<char*>(buffer) + r, n - r);
  return true;
}

void writeFully(int fd, const void* buffer, size_t n) {
  auto p = static_cast<const char*>(buffer);
  while (n > 0) {
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    KJ_ASSERT(r > 0, "write", strerror(errno));
    p += r;
    n -= r;
  }
}

// ---- (a) the floor: blocking 16-byte ping-pong -------------------------------------------------

void BM_Floor_Socket(benchmark::State& state) {
  bool pinned = state.range(0);
  setPinned(pinned);
  kj::AutoCloseFd fd;
  pid_t pid = forkChild(pinned, fd, [](int childFd) {
    char buffer[kPayloadBytes];
    while (tryReadFully(childFd, buffer, sizeof(buffer))) {
      writeFully(childFd, buffer, sizeof(buffer));
    }
  });
  auto payload = makePayload(kPayloadBytes);
  char reply[kPayloadBytes];
  Samples samples(state.max_iterations);
  for (auto _ : state) {
    auto t0 = Clock::now();
    writeFully(fd, payload.begin(), payload.size());
    readFully(fd, reply, sizeof(reply));
    samples.add(Clock::now() - t0);
  }
  finishChild(fd, pid);
  samples.report(state);
}

// ---- (b) KJ framed capnp messages --------------------------------------------------------------

void fillPing(capnp::MessageBuilder& message, kj::ArrayPtr<const kj::byte> payload) {
  message.initRoot<Echo::PingParams>().setPayload(payload);
}

void BM_KjFramed(benchmark::State& state) {
  bool pinned = state.range(0);
  setPinned(pinned);
  kj::AutoCloseFd fd;
  pid_t pid = forkChild(pinned, fd, [](int childFd) {
    auto io = kj::setupAsyncIo();
    auto stream = io.lowLevelProvider->wrapSocketFd(childFd);
    for (;;) {
      KJ_IF_MAYBE(in, capnp::tryReadMessage(*stream).wait(io.waitScope)) {
        capnp::MallocMessageBuilder out;
        fillPing(out, (*in)->getRoot<Echo::PingParams>().getPayload());
        capnp::writeMessage(*stream, out).wait(io.waitScope);
      } else {
        break;
      }
    }
  });
  {
    auto io = kj::setupAsyncIo();
    auto stream = io.lowLevelProvider->wrapSocketFd(fd.get());
    auto payload = makePayload(kPayloadBytes);
    Samples samples(state.max_iterations);
    for (auto _ : state) {
      auto t0 = Clock::now();
      capnp::MallocMessageBuilder out;
      fillPing(out, payload);
      auto reply = capnp::writeMessage(*stream, out)
                       .then([&]() { return capnp::readMessage(*stream); })
                       .wait(io.waitScope);
      benchmark::DoNotOptimize(reply->getRoot<Echo::PingParams>().getPayload().size());
      samples.add(Clock::now() - t0);
    }
    samples.report(state);
  }
  finishChild(fd, pid);
}

// ---- (b') harrow::Channel at both ends ---------------------------------------------------------

void BM_Channel(benchmark::State& state) {
  bool pinned = state.range(0);
  setPinned(pinned);
  kj::AutoCloseFd fd;
  pid_t pid = forkChild(pinned, fd, [](int childFd) {
    auto io = kj::setupAsyncIo();
    harrow::Channel channel(io.unixEventPort, kj::AutoCloseFd(childFd));
    for (;;) {
      KJ_IF_MAYBE(in, channel.receive().wait(io.waitScope)) {
        auto out = kj::heap<capnp::MallocMessageBuilder>();
        fillPing(*out, (*in)->getRoot<Echo::PingParams>().getPayload());
        channel.send(kj::mv(out));
      } else {
        break;
      }
    }
    channel.flush().wait(io.waitScope);
  });
  {
    auto io = kj::setupAsyncIo();
    harrow::Channel channel(io.unixEventPort, kj::mv(fd));
    auto payload = makePayload(kPayloadBytes);
    Samples samples(state.max_iterations);
    for (auto _ : state) {
      auto t0 = Clock::now();
      auto out = kj::heap<capnp::MallocMessageBuilder>();
      fillPing(*out, payload);
      channel.send(kj::mv(out));
      auto reply = channel.receive().wait(io.waitScope);
      benchmark::DoNotOptimize(
          KJ_ASSERT_NONNULL(reply)->getRoot<Echo::PingParams>().getPayload().size());
      samples.add(Clock::now() - t0);
    }
    samples.report(state);
  }
  finishChild(fd, pid);
}

// ---- (b'') a lean framed transport: what harrow::Channel could cost with its own fd I/O -------
//
// Not a baseline harrow must beat: a prototype of the fix suggested in bench/README.md. The same
// frames as KjFramed and Channel, but the socket is watched for EPOLLIN only (KJ's AsyncStreamFd
// registers EPOLLIN|EPOLLOUT edge-triggered, so every time the peer drains our last message the
// kernel signals write space and epoll_wait returns once for nothing), and a read that came back
// short arms the readiness wait at once instead of trying read() again first (the speculative
// read that returns EAGAIN). One write, one epoll_wait and one read per message and side.

class LeanEnd {
public:
  LeanEnd(kj::UnixEventPort& port, int fd)
      : fd(fd), observer(port, fd, kj::UnixEventPort::FdObserver::OBSERVE_READ),
        buffer(kj::heapArray<capnp::word>(8192)) {
    int flags = fcntl(fd, F_GETFL);
    KJ_SYSCALL(fcntl(fd, F_SETFL, flags | O_NONBLOCK));
  }

  void send(capnp::MessageBuilder& message) {
    auto words = capnp::messageToFlatArray(message);
    writeFully(fd, words.asBytes().begin(), words.asBytes().size());
  }

  // The next frame, or nullptr at EOF. The reader points into the buffer until the next call.
  kj::Maybe<kj::Own<capnp::FlatArrayMessageReader>> receive(kj::WaitScope& waitScope) {
    if (begin == end) begin = end = 0;
    for (;;) {
      auto have = buffer.slice(begin, end);
      if (have.size() > 0) {
        size_t need = capnp::expectedSizeInWordsFromPrefix(have);
        if (have.size() >= need) {
          begin += need;
          return kj::heap<capnp::FlatArrayMessageReader>(have.slice(0, need));
        }
      }
      KJ_IF_MAYBE(wait, readable) {
        wait->wait(waitScope);
        readable = nullptr;
      }
      auto space = buffer.slice(end, buffer.size()).asBytes();
      KJ_ASSERT(space.size() > 0, "frame too large for the lean prototype");
      ssize_t n = read(fd, space.begin(), space.size());
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        readable = observer.whenBecomesReadable();
        continue;
      }
      KJ_ASSERT(n >= 0, strerror(errno));
      if (n == 0) return nullptr;
      KJ_ASSERT(n % sizeof(capnp::word) == 0, "the prototype reads whole words only");
      end += n / sizeof(capnp::word);
      // Short read: the socket is drained. Arm the wait now, before the loop can see the edge.
      if (static_cast<size_t>(n) < space.size()) readable = observer.whenBecomesReadable();
    }
  }

private:
  int fd;
  kj::UnixEventPort::FdObserver observer;
  kj::Array<capnp::word> buffer;
  size_t begin = 0, end = 0;
  kj::Maybe<kj::Promise<void>> readable;
};

void BM_LeanFramed(benchmark::State& state) {
  bool pinned = state.range(0);
  setPinned(pinned);
  kj::AutoCloseFd fd;
  pid_t pid = forkChild(pinned, fd, [](int childFd) {
    auto io = kj::setupAsyncIo();
    LeanEnd end(io.unixEventPort, childFd);
    for (;;) {
      KJ_IF_MAYBE(in, end.receive(io.waitScope)) {
        capnp::MallocMessageBuilder out;
        fillPing(out, (*in)->getRoot<Echo::PingParams>().getPayload());
        end.send(out);
      } else {
        break;
      }
    }
  });
  {
    auto io = kj::setupAsyncIo();
    LeanEnd end(io.unixEventPort, fd.get());
    auto payload = makePayload(kPayloadBytes);
    Samples samples(state.max_iterations);
    for (auto _ : state) {
      auto t0 = Clock::now();
      capnp::MallocMessageBuilder out;
      fillPing(out, payload);
      end.send(out);
      auto reply = KJ_ASSERT_NONNULL(end.receive(io.waitScope));
      benchmark::DoNotOptimize(reply->getRoot<Echo::PingParams>().getPayload().size());
      samples.add(Clock::now() - t0);
    }
    samples.report(state);
  }
  finishChild(fd, pid);
}

// ---- (c) Cap'n Proto two-party RPC -------------------------------------------------------------

class EchoRpcImpl final : public EchoRpc::Server {
protected:
  kj::Promise<void> ping(PingContext context) override {
    context.getResults().setPayload(context.getParams().getPayload());
    return kj::READY_NOW;
  }
};

void BM_CapnpRpc(benchmark::State& state) {
  bool pinned = state.range(0);
  setPinned(pinned);
  kj::AutoCloseFd fd;
  pid_t pid = forkChild(pinned, fd, [](int childFd) {
    auto io = kj::setupAsyncIo();
    auto stream = io.lowLevelProvider->wrapSocketFd(childFd);
    capnp::TwoPartyServer server(kj::heap<EchoRpcImpl>());
    server.accept(*stream).wait(io.waitScope);  // until the parent disconnects
  });
  {
    auto io = kj::setupAsyncIo();
    auto stream = io.lowLevelProvider->wrapSocketFd(fd.get());
    capnp::TwoPartyClient client(*stream);
    EchoRpc::Client echo = client.bootstrap().castAs<EchoRpc>();
    auto payload = makePayload(kPayloadBytes);
    auto call = [&]() {
      auto request = echo.pingRequest();
      request.setPayload(payload);
      auto response = request.send().wait(io.waitScope);
      benchmark::DoNotOptimize(response.getPayload().size());
    };
    call();  // resolves the bootstrap capability outside the timing
    Samples samples(state.max_iterations);
    for (auto _ : state) {
      auto t0 = Clock::now();
      call();
      samples.add(Clock::now() - t0);
    }
    samples.report(state);
  }
  finishChild(fd, pid);
}

// ---- (d) harrow ----------------------------------------------------------------------------------

// The actor. Runs in the child, which harrow::main starts as "this binary --harrow-child ...".
class EchoImpl final : public EchoActor::Server {
public:
  Co<void> ping(PingCall call) override {
    call.results().setPayload(call.params().getPayload());
    co_return;
  }

  Co<void> items(ItemsCall call) override {
    uint32_t count = call.params().getCount();
    uint32_t size = call.params().getSize();
    for (uint32_t i = 0; i < count; ++i) {
      co_await call.yield([&](EchoActor::Schema::Item::Builder item) {
        memset(item.initData(size).begin(), static_cast<int>(i), size);
      });
    }
  }

  Co<void> pid(PidCall call) override {
    call.results().setPid(getpid());
    co_return;
  }
};

// The root of an actor tree with one Echo child, alive from construction to finish(); see the
// comment at the top for why the benchmark drives the event loop itself.
class EchoTree {
public:
  EchoTree()
      : io(kj::setupAsyncIo()),
        root(io, harrow::ActorIdentity::random("call_bench")),
        done(kj::newPromiseAndFulfiller<void>()),
        tree(nullptr) {
    auto ready = kj::newPromiseAndFulfiller<EchoActor::Portal>();
    readyFulfiller = kj::mv(ready.fulfiller);
    tree = root.serve([this]() -> kj::Promise<void> {
                 return harrow::openActorNursery(
                     root, [this](harrow::ActorNursery& an) -> Co<void> {
                       auto echo = co_await an.startActor<EchoActor>("echo", "echo");
                       readyFulfiller->fulfill(kj::cp(echo));
                       co_await kj::mv(done.promise);
                     });
               })
               .fork();
    // Fails instead of hanging if the tree ends (e.g. the spawn failed) before the portal exists.
    portal = ready.promise
                 .exclusiveJoin(tree.addBranch().then([]() -> EchoActor::Portal {
                   KJ_FAIL_REQUIRE("the actor tree ended before the actor started");
                 }))
                 .wait(io.waitScope);
  }

  ~EchoTree() noexcept(false) {
    if (!finished) finish();
  }

  kj::WaitScope& waitScope() { return io.waitScope; }
  kj::AsyncIoContext& ioContext() { return io; }
  EchoActor::Portal& echo() { return KJ_ASSERT_NONNULL(portal); }
  kj::Timer& timer() { return root.timer(); }

  // Ends the nursery's body: the child is cancelled, exits and is reaped.
  void finish() {
    finished = true;
    done.fulfiller->fulfill();
    tree.addBranch().wait(io.waitScope);
  }

private:
  kj::AsyncIoContext io;
  harrow::Actor root;
  kj::PromiseFulfillerPair<void> done;
  kj::Own<kj::PromiseFulfiller<EchoActor::Portal>> readyFulfiller;
  kj::ForkedPromise<void> tree;
  kj::Maybe<EchoActor::Portal> portal;
  bool finished = false;
};

void harrowCall(benchmark::State& state, bool metrics, kj::Duration busyPoll = 0 * kj::SECONDS) {
  bool pinned = state.range(0);
  setPinned(pinned);
  // Busy polling (<harrow/actor/busy_poll.h>): the child's loop from HARROW_BUSY_POLL_US, which
  // it inherits; this root's loop through waitPolling() below.
  if (busyPoll > 0 * kj::SECONDS) {
    setenv("HARROW_BUSY_POLL_US", kj::str(busyPoll / kj::MICROSECONDS).cStr(), 1);
  } else {
    unsetenv("HARROW_BUSY_POLL_US");
  }
  KJ_DEFER(unsetenv("HARROW_BUSY_POLL_US"));
  // Metrics (<harrow/engine/metrics.h>) are on in an actor whose environment has HARROW_METRICS
  // when it starts: the root here and the child it spawns (which inherits it).
  if (metrics) {
    setenv("HARROW_METRICS", "call_bench", 1);
  } else {
    unsetenv("HARROW_METRICS");
  }
  KJ_DEFER(unsetenv("HARROW_METRICS"));
  EchoTree tree;
  auto& ws = tree.waitScope();
  auto payload = makePayload(kPayloadBytes);
  tree.echo().ping(payload).wait(ws);  // warm-up, outside the timing
  Samples samples(state.max_iterations);
  for (auto _ : state) {
    auto t0 = Clock::now();
    auto reply = harrow::waitPolling(tree.echo().ping(payload), tree.ioContext(), busyPoll);
    benchmark::DoNotOptimize(reply->getPayload().size());
    samples.add(Clock::now() - t0);
  }
  tree.finish();
  samples.report(state);
}

void BM_HarrowCall(benchmark::State& state) { harrowCall(state, false); }
// The same with busy polling in both actors (50 µs after the last read, then sleep).
void BM_HarrowCallBusyPoll(benchmark::State& state) {
  harrowCall(state, false, 50 * kj::MICROSECONDS);
}
// The same with metrics collected in both actors: every call counted and timed in the child.
void BM_HarrowCallMetrics(benchmark::State& state) { harrowCall(state, true); }

// The same call made from a coroutine inside a cancel scope, with a deadline (moveOnAfter, an
// hour: it never fires) and without (a plain scope): what a deadline costs, i.e. the caller's
// timer entry, the start's timeoutNanos and the callee's scope deadline. Each iteration opens its
// scope, as a program would. The third variant's deadline (200 years) is beyond what a callee
// accepts (docs/PROTOCOL.md, "Deadlines"), so only the caller has a timer: the difference between
// it and the full deadline is what carrying it to the callee costs.
enum class DeadlineKind { NONE, CALLER_ONLY, CARRIED };
void harrowCallInScope(benchmark::State& state, DeadlineKind deadline) {
  bool pinned = state.range(0);
  setPinned(pinned);
  EchoTree tree;
  auto& ws = tree.waitScope();
  auto payload = makePayload(kPayloadBytes);
  tree.echo().ping(payload).wait(ws);
  Samples samples(state.max_iterations);
  auto call = [&]() -> Co<void> {
    auto reply = co_await tree.echo().ping(payload);
    benchmark::DoNotOptimize(reply->getPayload().size());
  };
  for (auto _ : state) {
    auto t0 = Clock::now();
    if (deadline == DeadlineKind::CARRIED) {
      harrow::moveOnAfter(tree.timer(), 3600 * kj::SECONDS, call).wait(ws);
    } else if (deadline == DeadlineKind::CALLER_ONLY) {
      harrow::moveOnAfter(tree.timer(), 200ll * 365 * 24 * 3600 * kj::SECONDS, call).wait(ws);
    } else {
      harrow::CancelScope scope;
      scope.run(call).wait(ws);
    }
    samples.add(Clock::now() - t0);
  }
  tree.finish();
  samples.report(state);
}

void BM_HarrowCallScope(benchmark::State& state) { harrowCallInScope(state, DeadlineKind::NONE); }
void BM_HarrowCallLocalDeadline(benchmark::State& state) {
  harrowCallInScope(state, DeadlineKind::CALLER_ONLY);
}
void BM_HarrowCallDeadline(benchmark::State& state) {
  harrowCallInScope(state, DeadlineKind::CARRIED);
}

void BM_HarrowCall100(benchmark::State& state) {
  bool pinned = state.range(0);
  setPinned(pinned);
  EchoTree tree;
  auto& ws = tree.waitScope();
  auto payload = makePayload(kPayloadBytes);
  tree.echo().ping(payload).wait(ws);
  Samples samples(state.max_iterations);
  for (auto _ : state) {
    auto t0 = Clock::now();
    auto calls = kj::heapArrayBuilder<kj::Promise<void>>(kInFlight);
    for (int i = 0; i < kInFlight; ++i) {
      kj::Promise<harrow::Received<EchoActor::Schema::PingResults>> call =
          tree.echo().ping(payload);
      calls.add(call.ignoreResult());
    }
    kj::joinPromises(calls.finish()).wait(ws);
    samples.add(Clock::now() - t0);
  }
  tree.finish();
  samples.report(state, kInFlight);
}

// ---- streams -----------------------------------------------------------------------------------

void reportItems(benchmark::State& state, Samples& samples) {
  samples.report(state, kStreamItems);  // p50_us / mean_us are per item
  state.counters["items_per_s"] = benchmark::Counter(
      static_cast<double>(kStreamItems), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_HarrowStream(benchmark::State& state) {
  bool pinned = state.range(0);
  setPinned(pinned);
  EchoTree tree;
  auto& ws = tree.waitScope();
  Samples samples(state.max_iterations);
  for (auto _ : state) {
    auto t0 = Clock::now();
    uint32_t received = 0;
    tree.echo()
        .items(kStreamItems, kItemBytes,
               [&](EchoActor::Portal::ItemsStream& items) -> Co<void> {
                 while (auto item = co_await items.receive()) {
                   received += item->getData().size() == kItemBytes;
                 }
               })
        .wait(ws);
    KJ_ASSERT(received == kStreamItems);
    samples.add(Clock::now() - t0);
  }
  tree.finish();
  reportItems(state, samples);
}

// The same stream, broadcast to kSubscribers local subscribers (MsgStream::subscribe), each a
// task of its own reading every item (BACKPRESSURE: none may lose one, so the slowest sets the
// pace). items/s counts stream items, each of which reaches all kSubscribers.
void BM_HarrowBroadcast(benchmark::State& state) {
  bool pinned = state.range(0);
  setPinned(pinned);
  EchoTree tree;
  auto& ws = tree.waitScope();
  Samples samples(state.max_iterations);
  for (auto _ : state) {
    auto t0 = Clock::now();
    uint32_t received = 0;
    tree.echo()
        .items(kStreamItems, kItemBytes,
               [&](EchoActor::Portal::ItemsStream& items) -> Co<void> {
                 co_await harrow::openNursery([&](harrow::TaskNursery& n) -> Co<void> {
                   for (int i = 0; i < kSubscribers; ++i) {
                     n.startSoon([&received, subscriber = items.subscribe(
                                      {.onLag = harrow::OnLag::BACKPRESSURE})]() mutable
                                 -> Co<void> {
                       while (auto item = co_await subscriber.receive()) {
                         received += item->getData().size() == kItemBytes;
                       }
                     });
                   }
                   co_return;
                 });
               })
        .wait(ws);
    KJ_ASSERT(received == kStreamItems * kSubscribers);
    samples.add(Clock::now() - t0);
  }
  tree.finish();
  reportItems(state, samples);
}

// The same wire::Message `yield` frames harrow's stream sends (callId, Payload{typeId, Item}),
// one MallocMessageBuilder and one writeMessageToFd (a writev) per item, no flow control but the
// socket buffer's. The parent asks for a batch with 4 bytes (the count) and reads the frames with
// a buffered blocking reader.
void BM_RawFramedStream(benchmark::State& state) {
  bool pinned = state.range(0);
  setPinned(pinned);
  kj::AutoCloseFd fd;
  pid_t pid = forkChild(pinned, fd, [](int childFd) {
    uint32_t count;
    while (tryReadFully(childFd, &count, sizeof(count))) {
      for (uint32_t i = 0; i < count; ++i) {
        capnp::MallocMessageBuilder message;
        auto root = message.initRoot<harrow::wire::Message>();
        root.setCallId(1);
        auto payload = root.initYield();
        payload.setTypeId(capnp::typeId<EchoActor::Schema::Item>());
        auto item = payload.getValue().initAs<EchoActor::Schema::Item>();
        memset(item.initData(kItemBytes).begin(), static_cast<int>(i), kItemBytes);
        capnp::writeMessageToFd(childFd, message);
      }
    }
  });
  {
    kj::FdInputStream raw(fd.get());
    kj::BufferedInputStreamWrapper in(raw);
    Samples samples(state.max_iterations);
    for (auto _ : state) {
      auto t0 = Clock::now();
      uint32_t count = kStreamItems;
      writeFully(fd, &count, sizeof(count));
      uint32_t received = 0;
      for (uint32_t i = 0; i < count; ++i) {
        capnp::InputStreamMessageReader reader(in);
        auto message = reader.getRoot<harrow::wire::Message>();
        auto item = message.getYield().getValue().getAs<EchoActor::Schema::Item>();
        received += item.getData().size() == kItemBytes;
      }
      KJ_ASSERT(received == kStreamItems);
      samples.add(Clock::now() - t0);
    }
    reportItems(state, samples);
  }
  finishChild(fd, pid);
}

// ---- (e) the same typed call and stream on channels an actor connects: TCP with frame tags,
// encrypted, and without (docs/PROTOCOL.md, "Frame protection"), beside a Unix socket -------------
//
// Two processes, one Echo server and one caller, on a connected pair of sockets made before the
// fork. "tcp, no tags" runs the parent-child hellos over TCP (trusted, so plain frames): the same
// engine path as before frames had tags, the baseline the tags are measured against.

enum class PeerTransport { TCP_PLAIN, TCP_TAGGED, TCP_ENCRYPTED, UNIX };

// A connected pair: over loopback TCP, or a Unix socketpair.
void connectedPair(PeerTransport transport, int fds[2]) {
  if (transport == PeerTransport::UNIX) {
    KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
    return;
  }
  int listener;
  KJ_SYSCALL(listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  KJ_DEFER(close(listener));
  struct sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  KJ_SYSCALL(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  KJ_SYSCALL(listen(listener, 1));
  KJ_SYSCALL(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length));
  KJ_SYSCALL(fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  KJ_SYSCALL(connect(fds[0], reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  KJ_SYSCALL(fds[1] = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  int one = 1;
  for (int i = 0; i < 2; ++i) setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

Co<kj::Own<harrow::Peer>> peerHandshake(kj::AsyncIoContext& io, harrow::Actor& actor, int fd,
                                        PeerTransport transport, bool opener) {
  auto channel = kj::heap<harrow::Channel>(io.unixEventPort, kj::AutoCloseFd(fd));
  if (transport == PeerTransport::TCP_PLAIN && opener) {
    co_return co_await harrow::handshakeWithChild(kj::mv(channel), actor);
  }
  if (transport == PeerTransport::TCP_PLAIN) {
    co_return co_await harrow::handshakeWithParent(kj::mv(channel), actor);
  }
  harrow::PeerOptions options;
  options.encrypt = transport == PeerTransport::TCP_ENCRYPTED;
  co_return co_await harrow::handshake(kj::mv(channel), actor, opener, options);
}

// Runs `body` with a Portal to an Echo actor in another process, over `transport`.
void withPeerEcho(bool pinned, PeerTransport transport,
                  kj::FunctionParam<void(EchoActor::Portal&, kj::WaitScope&)> body) {
  int fds[2];
  connectedPair(transport, fds);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  KJ_ASSERT(pid >= 0, "fork failed", strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (pinned) pinToCpu0();
    int status = 0;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      auto io = kj::setupAsyncIo();
      harrow::Actor actor(io, harrow::ActorIdentity::random("echo"));
      actor.addServer(kj::heap<EchoImpl>());
      actor.serve([&]() -> Co<void> {
        auto peer = co_await peerHandshake(io, actor, fds[1], transport, false);
        co_await peer->serve();  // until the caller shuts its side down
        co_await peer->whenDrained();
      }).wait(io.waitScope);
    })) {
      fprintf(stderr, "call_bench peer: %s\n", kj::str(*e).cStr());
      status = 1;
    }
    _exit(status);
  }
  close(fds[1]);
  {
    auto io = kj::setupAsyncIo();
    harrow::Actor root(io, harrow::ActorIdentity::random("caller"));
    kj::Own<harrow::Peer> peer;
    auto ready = kj::newPromiseAndFulfiller<void>();
    auto served = root.serve([&]() -> Co<void> {
                        peer = co_await peerHandshake(io, root, fds[0], transport, true);
                        ready.fulfiller->fulfill();
                        co_await peer->serve();
                        co_await peer->whenDrained();
                      })
                      .fork();
    ready.promise.exclusiveJoin(served.addBranch()).wait(io.waitScope);
    KJ_ASSERT(peer->channel().framesProtected() ==
              (transport == PeerTransport::TCP_TAGGED || transport == PeerTransport::TCP_ENCRYPTED));
    EchoActor::Portal echo(*peer);
    body(echo, io.waitScope);
    peer->channel().shutdownWrite().wait(io.waitScope);
    served.addBranch().wait(io.waitScope);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    KJ_ASSERT(errno == EINTR || errno == ECHILD, strerror(errno));
    if (errno == ECHILD) return;
  }
  KJ_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "echo peer failed", status);
}

void peerCall(benchmark::State& state, PeerTransport transport) {
  bool pinned = state.range(0);
  setPinned(pinned);
  withPeerEcho(pinned, transport, [&](EchoActor::Portal& echo, kj::WaitScope& ws) {
    auto payload = makePayload(kPayloadBytes);
    echo.ping(payload).wait(ws);  // warm-up, outside the timing
    Samples samples(state.max_iterations);
    for (auto _ : state) {
      auto t0 = Clock::now();
      auto reply = echo.ping(payload).wait(ws);
      benchmark::DoNotOptimize(reply->getPayload().size());
      samples.add(Clock::now() - t0);
    }
    samples.report(state);
  });
}

void peerStream(benchmark::State& state, PeerTransport transport) {
  bool pinned = state.range(0);
  setPinned(pinned);
  withPeerEcho(pinned, transport, [&](EchoActor::Portal& echo, kj::WaitScope& ws) {
    Samples samples(state.max_iterations);
    for (auto _ : state) {
      auto t0 = Clock::now();
      uint32_t received = 0;
      echo.items(kStreamItems, kItemBytes,
                 [&](EchoActor::Portal::ItemsStream& items) -> Co<void> {
                   while (auto item = co_await items.receive()) {
                     received += item->getData().size() == kItemBytes;
                   }
                 })
          .wait(ws);
      KJ_ASSERT(received == kStreamItems);
      samples.add(Clock::now() - t0);
    }
    reportItems(state, samples);
  });
}

void BM_PeerCall_TcpPlain(benchmark::State& s) { peerCall(s, PeerTransport::TCP_PLAIN); }
void BM_PeerCall_TcpTagged(benchmark::State& s) { peerCall(s, PeerTransport::TCP_TAGGED); }
void BM_PeerCall_TcpEncrypted(benchmark::State& s) { peerCall(s, PeerTransport::TCP_ENCRYPTED); }
void BM_PeerCall_Unix(benchmark::State& s) { peerCall(s, PeerTransport::UNIX); }
void BM_PeerStream_TcpPlain(benchmark::State& s) { peerStream(s, PeerTransport::TCP_PLAIN); }
void BM_PeerStream_TcpTagged(benchmark::State& s) { peerStream(s, PeerTransport::TCP_TAGGED); }
void BM_PeerStream_TcpEncrypted(benchmark::State& s) {
  peerStream(s, PeerTransport::TCP_ENCRYPTED);
}

// ---- registration ------------------------------------------------------------------------------

void latency(benchmark::internal::Benchmark* b, int iterations) {
  b->ArgName("pinned")->Arg(1)->Arg(0)->Iterations(iterations)->Repetitions(kRepetitions)
      ->UseRealTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_Floor_Socket)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_KjFramed)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_Channel)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_LeanFramed)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_CapnpRpc)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_HarrowCall)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_HarrowCallMetrics)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_HarrowCallBusyPoll)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_HarrowCallScope)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_HarrowCallLocalDeadline)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_HarrowCallDeadline)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_HarrowCall100)->Apply([](auto* b) { latency(b, kInFlightIterations); });
BENCHMARK(BM_HarrowStream)->Apply([](auto* b) { latency(b, kStreamIterations); });
BENCHMARK(BM_RawFramedStream)->Apply([](auto* b) { latency(b, kStreamIterations); });
BENCHMARK(BM_HarrowBroadcast)->Apply([](auto* b) { latency(b, kStreamIterations); });
BENCHMARK(BM_PeerCall_TcpPlain)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_PeerCall_TcpTagged)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_PeerCall_TcpEncrypted)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_PeerCall_Unix)->Apply([](auto* b) { latency(b, kLatencyIterations); });
BENCHMARK(BM_PeerStream_TcpPlain)->Apply([](auto* b) { latency(b, kStreamIterations); });
BENCHMARK(BM_PeerStream_TcpTagged)->Apply([](auto* b) { latency(b, kStreamIterations); });
BENCHMARK(BM_PeerStream_TcpEncrypted)->Apply([](auto* b) { latency(b, kStreamIterations); });

// ---- idle actor memory -------------------------------------------------------------------------

struct Memory {
  long vmRssKb = -1;    // /proc/<pid>/status
  long rssAnonKb = -1;
  long rssFileKb = -1;
  long pssKb = -1;      // /proc/<pid>/smaps_rollup: shared pages divided among their users
  long privateKb = -1;  // Private_Clean + Private_Dirty: what this actor alone costs
};
Memory idleChild;

std::string readFile(const char* path) {
  std::string text;
  if (FILE* f = fopen(path, "r")) {
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), f)) > 0) text.append(buffer, n);
    fclose(f);
  }
  return text;
}

long statusField(const std::string& status, const char* field) {
  size_t at = status.find(field);
  if (at == std::string::npos) return -1;
  return strtol(status.c_str() + at + strlen(field), nullptr, 10);
}

// Spawns an Echo actor, makes one call, lets it sit idle for 200 ms, then reads its
// /proc/<pid>/status.
void measureIdleChild() {
  setPinned(false);
  EchoTree tree;
  auto& ws = tree.waitScope();
  tree.echo().ping(makePayload(kPayloadBytes)).wait(ws);
  uint32_t pid = tree.echo().pid().wait(ws)->getPid();
  tree.timer().afterDelay(200 * kj::MILLISECONDS).wait(ws);
  std::string status = readFile(kj::str("/proc/", pid, "/status").cStr());
  idleChild.vmRssKb = statusField(status, "VmRSS:");
  idleChild.rssAnonKb = statusField(status, "RssAnon:");
  idleChild.rssFileKb = statusField(status, "RssFile:");
  std::string rollup = readFile(kj::str("/proc/", pid, "/smaps_rollup").cStr());
  idleChild.pssKb = statusField(rollup, "\nPss:");
  long clean = statusField(rollup, "Private_Clean:"), dirty = statusField(rollup, "Private_Dirty:");
  if (clean >= 0 && dirty >= 0) idleChild.privateKb = clean + dirty;
  tree.finish();
}

// ---- reporting ---------------------------------------------------------------------------------

// Prints the usual table, then a summary with the ratios. A benchmark's figure is the median over
// its repetitions of each repetition's median round trip (p50_us), or of its items/s.
class RatioReporter : public benchmark::ConsoleReporter {
public:
  RatioReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      bool aggregate = run.run_type == Run::RT_Aggregate;
      if (aggregate && run.aggregate_name != "median") continue;
      // "BM_HarrowCall/pinned:1", without iterations, repeats, time type or aggregate.
      std::string name = run.benchmark_name();
      name = name.substr(0, name.find("/iterations:"));
      // A median aggregate replaces the single-repetition figure; without repetitions the
      // plain run is the figure.
      if (!aggregate && medians.count(name)) continue;
      for (const auto& [counter, value] : run.counters) {
        figures[name][counter] = value.value;
      }
      if (aggregate) medians[name] = true;
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    printf("\nSummary: 16-byte round trip parent <-> child over a socketpair, median us per call\n");
    printf("  %-46s %10s %10s\n", "", "pinned", "unpinned");
    row("(a) floor: blocking read/write", "BM_Floor_Socket");
    row("(b) KJ framed: writeMessage/readMessage", "BM_KjFramed");
    row("(b') harrow::Channel framed", "BM_Channel");
    row("(b'') lean framed prototype (see README)", "BM_LeanFramed");
    row("(c) capnp two-party RPC", "BM_CapnpRpc");
    row("(d) harrow typed call", "BM_HarrowCall");
    row("(d') harrow typed call, metrics on", "BM_HarrowCallMetrics");
    row("(d) harrow, 100 calls in flight (per call)", "BM_HarrowCall100");
    row("(d) harrow call in a cancel scope", "BM_HarrowCallScope");
    row("(d) harrow call, deadline at the caller only", "BM_HarrowCallLocalDeadline");
    row("(d) harrow call under a deadline", "BM_HarrowCallDeadline");

    printf("\nRatios (pinned / unpinned):\n");
    ratio("harrow call / KJ framed", "BM_HarrowCall", "BM_KjFramed", "p50_us", "<= 1.2",
          [](double r) { return r <= 1.2; });
    ratio("harrow call / capnp RPC", "BM_HarrowCall", "BM_CapnpRpc", "p50_us", "<= 0.5",
          [](double r) { return r <= 0.5; });
    ratio("harrow call, metrics on / off", "BM_HarrowCallMetrics", "BM_HarrowCall", "p50_us",
          "<= 1.05", [](double r) { return r <= 1.05; });
    ratio("harrow call / harrow::Channel", "BM_HarrowCall", "BM_Channel", "p50_us", "(info)",
          nullptr);
    ratio("harrow call / floor", "BM_HarrowCall", "BM_Floor_Socket", "p50_us", "(info)",
          nullptr);
    ratio("call with a deadline / without", "BM_HarrowCallDeadline", "BM_HarrowCallScope",
          "p50_us", "<= 1.02", [](double r) { return r <= 1.02; });
    ratio("deadline carried / at the caller only", "BM_HarrowCallDeadline",
          "BM_HarrowCallLocalDeadline", "p50_us", "(info)", nullptr);

    printf("\nStream of %u-byte items, items/s:\n", kItemBytes);
    printf("  %-46s %10s %10s\n", "", "pinned", "unpinned");
    row("harrow stream (Echo.items)", "BM_HarrowStream", "items_per_s", 0);
    row("raw framed writes (same frames)", "BM_RawFramedStream", "items_per_s", 0);
    ratio("harrow stream / raw framed (throughput)", "BM_HarrowStream", "BM_RawFramedStream",
          "items_per_s", ">= 0.5", [](double r) { return r >= 0.5; });
    printf("\nOne stream broadcast to %d local subscribers (each gets every item), stream items/s:\n",
           kSubscribers);
    printf("  %-46s %10s %10s\n", "", "pinned", "unpinned");
    row("harrow broadcast (8 BACKPRESSURE subscribers)", "BM_HarrowBroadcast", "items_per_s", 0);
    row("harrow stream, one plain consumer", "BM_HarrowStream", "items_per_s", 0);
    ratio("broadcast x8 / plain consumer (throughput)", "BM_HarrowBroadcast", "BM_HarrowStream",
          "items_per_s", "(info)", nullptr);

    printf(
        "\nFrame protection (docs/PROTOCOL.md): the same typed call between two processes "
        "on a channel they set up themselves, median us per call:\n");
    printf("  %-46s %10s %10s\n", "", "pinned", "unpinned");
    row("(e) TCP, no tags (parent-child hellos)", "BM_PeerCall_TcpPlain");
    row("(e) TCP, every frame tagged (default)", "BM_PeerCall_TcpTagged");
    row("(e) TCP, encrypted (--harrow-encrypt)", "BM_PeerCall_TcpEncrypted");
    row("(e) Unix socket, one user (no tags)", "BM_PeerCall_Unix");
    ratio("tagged / no tags (TCP)", "BM_PeerCall_TcpTagged", "BM_PeerCall_TcpPlain", "p50_us",
          "<= 1.10", [](double r) { return r <= 1.10; });
    ratio("encrypted / no tags (TCP)", "BM_PeerCall_TcpEncrypted", "BM_PeerCall_TcpPlain",
          "p50_us", "<= 1.25", [](double r) { return r <= 1.25; });
    ratio("Unix socket / TCP tagged", "BM_PeerCall_Unix", "BM_PeerCall_TcpTagged", "p50_us",
          "(info)", nullptr);
    printf("  stream of %u-byte items over TCP, items/s:\n", kItemBytes);
    row("(e) TCP stream, no tags", "BM_PeerStream_TcpPlain", "items_per_s", 0);
    row("(e) TCP stream, tagged", "BM_PeerStream_TcpTagged", "items_per_s", 0);
    row("(e) TCP stream, encrypted", "BM_PeerStream_TcpEncrypted", "items_per_s", 0);
    ratio("stream tagged / no tags (throughput)", "BM_PeerStream_TcpTagged",
          "BM_PeerStream_TcpPlain", "items_per_s", ">= 0.8", [](double r) { return r >= 0.8; });
    ratio("stream encrypted / no tags (throughput)", "BM_PeerStream_TcpEncrypted",
          "BM_PeerStream_TcpPlain", "items_per_s", "(info)", nullptr);

    if (idleChild.vmRssKb >= 0) {
      printf("\nIdle child actor, resident memory (target < 5 MB):\n");
      printf("  VmRSS   %6.1f MB  (RssAnon %.1f MB, RssFile %.1f MB: mostly shared library text)"
             "   %s\n",
             idleChild.vmRssKb / 1024.0, idleChild.rssAnonKb / 1024.0,
             idleChild.rssFileKb / 1024.0, idleChild.vmRssKb < 5 * 1024 ? "MET" : "NOT MET");
      if (idleChild.pssKb >= 0 && idleChild.privateKb >= 0) {
        printf("  Pss     %6.1f MB  (shared pages divided among the processes mapping them)\n",
               idleChild.pssKb / 1024.0);
        printf("  Private %6.1f MB  (what one more actor costs)   %s\n",
               idleChild.privateKb / 1024.0, idleChild.privateKb < 5 * 1024 ? "MET" : "NOT MET");
      }
    }
    fflush(stdout);
  }

private:
  std::map<std::string, std::map<std::string, double>> figures;
  std::map<std::string, bool> medians;

  double get(const std::string& bench, bool pinned, const std::string& counter) {
    auto it = figures.find(bench + (pinned ? "/pinned:1" : "/pinned:0"));
    if (it == figures.end()) return -1;
    auto c = it->second.find(counter);
    return c == it->second.end() ? -1 : c->second;
  }

  void row(const char* what, const std::string& bench, const std::string& counter = "p50_us",
           int decimals = 1) {
    double p = get(bench, true, counter), u = get(bench, false, counter);
    if (p < 0 && u < 0) return;  // filtered out
    printf("  %-46s %10.*f %10.*f\n", what, decimals, p, decimals, u);
  }

  template <typename Check>
  void ratio(const char* what, const std::string& mine, const std::string& baseline,
             const std::string& counter, const char* target, Check check) {
    double r[2];
    bool any = false;
    for (int pinned = 1; pinned >= 0; --pinned) {
      double a = get(mine, pinned, counter), b = get(baseline, pinned, counter);
      r[1 - pinned] = (a > 0 && b > 0) ? a / b : -1;
      any = any || r[1 - pinned] > 0;
    }
    if (!any) return;
    printf("  %-46s %10.2f %10.2f   target %-7s", what, r[0], r[1], target);
    if constexpr (!std::is_same_v<Check, std::nullptr_t>) {
      printf("   pinned %s, unpinned %s", r[0] > 0 && check(r[0]) ? "MET" : "NOT MET",
             r[1] > 0 && check(r[1]) ? "MET" : "NOT MET");
    }
    printf("\n");
  }
};

}  // namespace

int main(int argc, char** argv) {
  // Child mode first: this binary re-executed by a harrow parent serves the Echo actor.
  if (argc > 1 && kj::StringPtr(argv[1]) == "--harrow-child") {
    if (getenv(kPinEnv) != nullptr) pinToCpu0();
    harrow::Implementations implementations;
    implementations.add<EchoImpl>("echo");
    return harrow::main(argc, argv, implementations,
                        [](harrow::Actor&) -> kj::Promise<void> { return kj::READY_NOW; });
  }

  // What harrow::main does for a root: children are reaped through the event loop.
  kj::UnixEventPort::captureChildExit();
  KJ_SYSCALL(sched_getaffinity(0, sizeof(originalMask), &originalMask));

  // Repetitions of different benchmarks run in random order, so that load drifting during the run
  // (other processes on a 2-core machine) spreads over all of them instead of skewing the ratios.
  std::vector<char*> args(argv, argv + argc);
  bool interleavingGiven = false;
  for (char* arg : args) {
    interleavingGiven |= kj::StringPtr(arg).startsWith("--benchmark_enable_random_interleaving");
  }
  char interleave[] = "--benchmark_enable_random_interleaving=true";
  if (!interleavingGiven) args.insert(args.begin() + 1, interleave);
  int benchArgc = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&benchArgc, args.data());
  if (benchmark::ReportUnrecognizedArguments(benchArgc, args.data())) return 1;
  measureIdleChild();
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  setPinned(false);
  return 0;
}
