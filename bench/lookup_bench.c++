// What finding an actor by name costs: one round trip to the registry. Measured beside a plain
// call on the same registry channel, so the two differ only in what the registry does.
//
//   bazel run -c opt //bench:lookup_bench
//
// Three processes: this one (a root that joins the registry, as a client program would), a
// registry host (this binary re-executed with --registry-host: a harrow root hosting the
// registry on an abstract Unix socket, or TCP with --tcp) and the host's child actor "echo"
// (bench.capnp's Echo). Rows, each a round trip from this process:
//  - RegistryInfo:   Registry.info(), a plain call on the registry channel (the baseline)
//  - RegistryFind:   Registry.find("echo"), the raw lookup, same channel
//  - FindActor:      harrow::findActor<EchoActor>("echo"): the lookup plus the cached channel to
//                    the actor found (what a program calls)
//  - QueryActor:     harrow::queryActor("echo"): every entry, with its addresses
//  - EchoPing:       Echo.ping on the found actor's channel (a plain call to an actor)
// Each row reports the median (p50_us) and mean (mean_us) round trip; a summary at the end prints
// the lookup / plain-call ratios.

#include "bench/bench.capnp.harrow.h"
#include <harrow/spawn/actor_nursery.h>
#include <harrow/discovery/discovery.h>
#include <harrow/main.h>

#include <benchmark/benchmark.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace {

using harrow::Co;
using Clock = std::chrono::steady_clock;

constexpr int kIterations = 2000;
constexpr int kRepetitions = 5;

// ---- the registry host and its Echo actor ----------------------------------------------------

class EchoImpl final : public EchoActor::Server {
public:
  Co<void> ping(PingCall call) override {
    call.results().setPayload(call.params().getPayload());
    co_return;
  }
  Co<void> items(ItemsCall call) override {
    for (uint32_t i = 0; i < call.params().getCount(); ++i) {
      co_await call.yield([&](auto item) { item.initData(call.params().getSize()); });
    }
  }
  Co<void> pid(PidCall call) override {
    call.results().setPid(getpid());
    co_return;
  }
};

int runRegistryHost(int argc, char** argv) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the benchmark
  harrow::Implementations implementations;
  implementations.add<EchoImpl>("echo");
  return harrow::main(argc, argv, implementations, [](harrow::Actor& root) -> Co<void> {
    co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> Co<void> {
      auto echo = co_await an.startActor<EchoActor>("echo", "echo");
      co_await echo.pid();  // registered once it answers
      printf("ready %s\n", KJ_ASSERT_NONNULL(harrow::registryAddress(root)).cStr());
      fflush(stdout);
      co_await root.whenCancelled();
    });
  });
}

// ---- the client side -----------------------------------------------------------------------

struct Client {
  pid_t hostPid = 0;
  kj::AsyncIoContext io = kj::setupAsyncIo();
  harrow::Actor actor{io, harrow::ActorIdentity::random("lookup-bench")};
  kj::Own<kj::PromiseFulfiller<void>> done;
  kj::Maybe<kj::Promise<void>> serving;
  harrow::RegistryActor::Portal* registry = nullptr;
  EchoActor::Portal* echo = nullptr;
  kj::Maybe<harrow::RegistryActor::Portal> registryStorage;
  kj::Maybe<EchoActor::Portal> echoStorage;

  explicit Client(const char* self, bool tcp) {
    // The registry host: this binary, its stdout on a pipe for the "ready" line.
    int fds[2];
    KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
    std::string registryFlag = tcp ? "--harrow-registry=tcp:127.0.0.1:0"
                                   : "--harrow-registry=unix:@harrow-lookup-bench-" +
                                         std::to_string(getpid());
    std::string transportFlag = tcp ? "--harrow-transport=tcp" : "--harrow-transport=unix-abstract";
    const char* argv[] = {self, "--registry-host", registryFlag.c_str(), transportFlag.c_str(),
                          nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    int error = posix_spawn(&hostPid, self, &actions, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    KJ_REQUIRE(error == 0, "posix_spawn", strerror(error));
    std::string line;
    char c;
    while (read(fds[0], &c, 1) == 1 && c != '\n') line += c;
    close(fds[0]);
    KJ_REQUIRE(line.rfind("ready ", 0) == 0, "the registry host did not start", line);
    std::string address = line.substr(6);

    harrow::DiscoveryOptions options;
    options.isRoot = true;
    options.registryAddress = kj::str(address.c_str());
    options.mayHostRegistry = true;  // it probes, and joins the host's registry
    options.childTransport = tcp ? harrow::TransportKind::TCP : harrow::TransportKind::UNIX_ABSTRACT;
    harrow::setDiscovery(actor, kj::mv(options));

    auto ready = kj::newPromiseAndFulfiller<void>();
    auto finished = kj::newPromiseAndFulfiller<void>();
    done = kj::mv(finished.fulfiller);
    serving = actor
        .serve([this, readyFulfiller = kj::mv(ready.fulfiller),
                finishedPromise = kj::mv(finished.promise)]() mutable -> kj::Promise<void> {
          return body(kj::mv(readyFulfiller), kj::mv(finishedPromise));
        })
        .eagerlyEvaluate(nullptr);
    ready.promise.wait(io.waitScope);
    KJ_REQUIRE(!harrow::hostsRegistry(actor), "the benchmark must join the host's registry");
  }

  Co<void> body(kj::Own<kj::PromiseFulfiller<void>> ready, kj::Promise<void> finished) {
    registryStorage = co_await harrow::registryPortal(actor);
    registry = &KJ_ASSERT_NONNULL(registryStorage);
    echoStorage = co_await harrow::findActor<EchoActor>(actor, "echo");
    echo = &KJ_ASSERT_NONNULL(echoStorage);
    ready->fulfill();
    co_await kj::mv(finished);
  }

  ~Client() noexcept(false) {
    done->fulfill();
    KJ_IF_MAYBE(s, serving) s->wait(io.waitScope);
    kill(hostPid, SIGTERM);
    int status;
    while (waitpid(hostPid, &status, 0) < 0 && errno == EINTR) {}
  }
};

kj::Maybe<kj::Own<Client>> client;

// Per-operation times of one benchmark run: median and mean, as counters in microseconds.
std::map<std::string, std::vector<double>> medians;  // per row, one per repetition

template <typename Op>
void measure(benchmark::State& state, const char* row, Op&& op) {
  Client& c = *KJ_ASSERT_NONNULL(client);
  std::vector<double> ns;
  ns.reserve(kIterations);
  for (auto _ : state) {
    auto start = Clock::now();
    op(c).wait(c.io.waitScope);
    ns.push_back(std::chrono::duration<double, std::nano>(Clock::now() - start).count());
  }
  std::vector<double> sorted = ns;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (double v : ns) sum += v;
  double p50 = sorted[sorted.size() / 2] / 1e3;
  state.counters["p50_us"] = p50;
  state.counters["mean_us"] = sum / ns.size() / 1e3;
  medians[row].push_back(p50);
}

void RegistryInfo(benchmark::State& state) {
  measure(state, "RegistryInfo", [](Client& c) { return c.registry->info().ignoreResult(); });
}
void RegistryFind(benchmark::State& state) {
  measure(state, "RegistryFind", [](Client& c) {
    return c.registry->find("echo").then([](auto found) { KJ_ASSERT(found->getFound()); });
  });
}
void FindActor(benchmark::State& state) {
  measure(state, "FindActor", [](Client& c) {
    return harrow::findActor<EchoActor>(c.actor, "echo").then([](auto found) {
      KJ_ASSERT(found != nullptr);
    });
  });
}
void QueryActor(benchmark::State& state) {
  measure(state, "QueryActor", [](Client& c) {
    return harrow::queryActor(c.actor, "echo").then([](auto all) { KJ_ASSERT(all.size() == 1); });
  });
}
void EchoPing(benchmark::State& state) {
  measure(state, "EchoPing", [](Client& c) {
    static const kj::byte payload[16] = {};
    return c.echo->ping(kj::arrayPtr(payload, sizeof(payload))).ignoreResult();
  });
}

double medianOf(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void summary() {
  double info = medianOf(medians["RegistryInfo"]);
  printf("\nlookup_bench summary (median of repetitions, µs per round trip):\n");
  for (const char* row : {"RegistryInfo", "RegistryFind", "FindActor", "QueryActor", "EchoPing"}) {
    double v = medianOf(medians[row]);
    printf("  %-13s %8.1f  (%.2f× the plain registry call)\n", row, v, info > 0 ? v / info : 0);
  }
}

}  // namespace

BENCHMARK(RegistryInfo)->Iterations(kIterations)->Repetitions(kRepetitions)->ReportAggregatesOnly(true);
BENCHMARK(RegistryFind)->Iterations(kIterations)->Repetitions(kRepetitions)->ReportAggregatesOnly(true);
BENCHMARK(FindActor)->Iterations(kIterations)->Repetitions(kRepetitions)->ReportAggregatesOnly(true);
BENCHMARK(QueryActor)->Iterations(kIterations)->Repetitions(kRepetitions)->ReportAggregatesOnly(true);
BENCHMARK(EchoPing)->Iterations(kIterations)->Repetitions(kRepetitions)->ReportAggregatesOnly(true);

int main(int argc, char** argv) {
  if (argc > 1 && kj::StringPtr(argv[1]) == "--harrow-child") {
    harrow::Implementations implementations;
    implementations.add<EchoImpl>("echo");
    return harrow::main(argc, argv, implementations,
                        [](harrow::Actor&) -> kj::Promise<void> { return kj::READY_NOW; });
  }
  if (argc > 1 && kj::StringPtr(argv[1]) == "--registry-host") {
    std::vector<char*> args(argv, argv + argc);
    args.erase(args.begin() + 1);
    return runRegistryHost(static_cast<int>(args.size()), args.data());
  }
  bool tcp = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (kj::StringPtr(argv[i]) == "--tcp") {
      tcp = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  char interleave[] = "--benchmark_enable_random_interleaving=true";
  args.insert(args.begin() + 1, interleave);
  int benchArgc = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&benchArgc, args.data());
  if (benchmark::ReportUnrecognizedArguments(benchArgc, args.data())) return 1;
  printf("registry over %s\n", tcp ? "TCP loopback" : "an abstract Unix socket");
  client = kj::heap<Client>("/proc/self/exe", tcp);
  benchmark::RunSpecifiedBenchmarks();
  summary();
  fflush(stdout);
  benchmark::Shutdown();
  client = nullptr;
  return 0;
}
