// What a harrow coroutine costs next to the equivalent hand-written .then() chain.
//
//   bazel run -c opt //bench:co_bench
//
// Each benchmark runs kOps awaits (or continuations) per iteration on a fresh kj::EventLoop and
// reports `ns_per_op` (CPU time per await). A summary at the end prints coroutine/then ratios.
//  - ready:     awaiting a promise that is already fulfilled (kj::Promise<int>(value)).
//  - not_ready: awaiting a promise fulfilled later by another event through its fulfiller.
//  - nursery:   openNursery() starting N trivial tasks (one ready await each) and joining them,
//               beside kj::joinPromises() of the same N coroutines (no nursery).

#include <harrow/co/nursery.h>

#include <benchmark/benchmark.h>
#include <kj/async.h>

#include <cstdio>
#include <map>
#include <string>

#include <unistd.h>

namespace harrow {
namespace {

constexpr int kOps = 1000;  // awaits per benchmark iteration

void setOpCounter(benchmark::State& state, int64_t opsPerIteration) {
  state.counters["ns_per_op"] = benchmark::Counter(
      static_cast<double>(opsPerIteration),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---- ready promise -----------------------------------------------------------------------------

Co<int> coReady(int n) {
  int sum = 0;
  for (int i = 0; i < n; ++i) sum += co_await kj::Promise<int>(i);
  co_return sum;
}

kj::Promise<int> thenReady(int i, int n, int sum) {
  if (i == n) return sum;
  return kj::Promise<int>(i).then([i, n, sum](int v) { return thenReady(i + 1, n, sum + v); });
}

void BM_Ready_CoAwait(benchmark::State& state) {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  for (auto _ : state) benchmark::DoNotOptimize(coReady(kOps).wait(waitScope));
  setOpCounter(state, kOps);
}

void BM_Ready_Then(benchmark::State& state) {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  for (auto _ : state) benchmark::DoNotOptimize(thenReady(0, kOps, 0).wait(waitScope));
  setOpCounter(state, kOps);
}

// ---- not-ready promise, fulfilled by another event ---------------------------------------------

// The same "other side" for both variants: an event on the loop that fulfills the promise.
kj::Promise<void> fulfillLater(kj::Own<kj::PromiseFulfiller<int>> fulfiller, int value) {
  return kj::evalLater([f = kj::mv(fulfiller), value]() mutable { f->fulfill(kj::cp(value)); })
      .eagerlyEvaluate(nullptr);
}

Co<int> coNotReady(int n) {
  int sum = 0;
  for (int i = 0; i < n; ++i) {
    auto paf = kj::newPromiseAndFulfiller<int>();
    auto producer = fulfillLater(kj::mv(paf.fulfiller), i);
    sum += co_await kj::mv(paf.promise);
  }
  co_return sum;
}

kj::Promise<int> thenNotReady(int i, int n, int sum) {
  if (i == n) return sum;
  auto paf = kj::newPromiseAndFulfiller<int>();
  auto producer = fulfillLater(kj::mv(paf.fulfiller), i);
  return paf.promise.attach(kj::mv(producer)).then([i, n, sum](int v) {
    return thenNotReady(i + 1, n, sum + v);
  });
}

void BM_NotReady_CoAwait(benchmark::State& state) {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  for (auto _ : state) benchmark::DoNotOptimize(coNotReady(kOps).wait(waitScope));
  setOpCounter(state, kOps);
}

void BM_NotReady_Then(benchmark::State& state) {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  for (auto _ : state) benchmark::DoNotOptimize(thenNotReady(0, kOps, 0).wait(waitScope));
  setOpCounter(state, kOps);
}

// ---- nursery start + join ----------------------------------------------------------------------

Co<void> trivialTask(int& counter) {
  co_await kj::Promise<void>(kj::READY_NOW);
  ++counter;
}

void BM_Nursery_StartJoin(benchmark::State& state) {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  const int n = static_cast<int>(state.range(0));
  int counter = 0;
  for (auto _ : state) {
    openNursery([&](TaskNursery& nursery) -> kj::Promise<void> {
      for (int i = 0; i < n; ++i) nursery.startSoon([&counter]() { return trivialTask(counter); });
      return kj::READY_NOW;
    }).wait(waitScope);
  }
  if (counter != n * state.iterations()) state.SkipWithError("tasks did not all run");
  setOpCounter(state, n);
}

void BM_JoinPromises_Baseline(benchmark::State& state) {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  const int n = static_cast<int>(state.range(0));
  int counter = 0;
  for (auto _ : state) {
    auto builder = kj::heapArrayBuilder<kj::Promise<void>>(n);
    for (int i = 0; i < n; ++i) builder.add(trivialTask(counter));
    kj::joinPromises(builder.finish()).wait(waitScope);
  }
  if (counter != n * state.iterations()) state.SkipWithError("tasks did not all run");
  setOpCounter(state, n);
}

BENCHMARK(BM_Ready_CoAwait)->MinTime(0.3);
BENCHMARK(BM_Ready_Then)->MinTime(0.3);
BENCHMARK(BM_NotReady_CoAwait)->MinTime(0.3);
BENCHMARK(BM_NotReady_Then)->MinTime(0.3);
BENCHMARK(BM_Nursery_StartJoin)->Arg(10)->Arg(1000)->MinTime(0.3);
BENCHMARK(BM_JoinPromises_Baseline)->Arg(10)->Arg(1000)->MinTime(0.3);

// Prints the usual table, then the coroutine/baseline ratios from each run's ns_per_op.
class RatioReporter : public benchmark::ConsoleReporter {
public:
  RatioReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      auto it = run.counters.find("ns_per_op");
      if (run.error_occurred || it == run.counters.end()) continue;
      std::string name = run.benchmark_name();
      name = name.substr(0, name.find("/min_time:"));
      nsPerOp[name] = it->second.value * 1e9;  // the counter is in seconds
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    printf("\nSummary (ns per await / per task, CPU time):\n");
    ratio("ready co_await", "BM_Ready_CoAwait", "BM_Ready_Then");
    ratio("not-ready co_await", "BM_NotReady_CoAwait", "BM_NotReady_Then");
    ratio("nursery, 10 tasks", "BM_Nursery_StartJoin/10", "BM_JoinPromises_Baseline/10");
    ratio("nursery, 1000 tasks", "BM_Nursery_StartJoin/1000", "BM_JoinPromises_Baseline/1000");
    fflush(stdout);
  }

private:
  std::map<std::string, double> nsPerOp;

  void ratio(const char* what, const std::string& mine, const std::string& baseline) {
    auto a = nsPerOp.find(mine), b = nsPerOp.find(baseline);
    if (a == nsPerOp.end() || b == nsPerOp.end()) return;  // filtered out
    printf("  %-20s %8.1f ns  vs baseline %8.1f ns  ratio %.2f\n", what, a->second, b->second,
           a->second / b->second);
  }
};

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  harrow::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
