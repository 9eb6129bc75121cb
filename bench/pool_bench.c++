// A worker pool's throughput (runtime/spawn/worker_pool.h): a trivial map (n -> 2n + 1) over
// 1,000,000 small items with 2 workers, beside the same work over the plain stream path, in one
// binary and one run, pinned (every process on CPU 0) and unpinned.
//
//   bazel run -c opt //bench:pool_bench [-- --items=N --runs=R --in-flight=K]
//
// Rows, each the same items through the same worker code (harrow::serveItems over Mapper.work):
//  - plain stream: one context on one worker, opened through the generated portal; the caller
//    sends every item on its stream while a second task receives the results (what a user writes
//    by hand; the baseline the target is stated against).
//  - plain streams x2: the same on two workers, each given half the items (splitting by hand).
//  - pool, mapUnordered: openWorkerPool with 1 and with 2 workers, results as they come.
//  - pool, map, taken: results in input order, each taken as a value (map(inputs, fill, take)).
//  - pool, map, Received: results in input order, each a Received<Out> holding its message.
// Every row checks the sum of its results. Rounds interleave the rows (load drifting during the
// run spreads over all of them); the table gives each row's median over rounds, in k items/s,
// and its ratio to the plain stream.

#include <harrow/harrow.h>
#include "bench/pool.capnp.harrow.h"

#include <kj/debug.h>

#include <dirent.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace harrow {
namespace {

class MapperImpl final : public MapperActor::Server {
public:
  Co<void> work(WorkCall call) override {
    co_await serveItems(call, [](Mapper::In::Reader in, Mapper::Out::Builder out) {
      out.setN(2 * in.getN() + 1);
    });
  }
};

struct Flags {
  size_t items = 1000000;
  int runs = 5;
  uint32_t inFlight = WorkerPoolOptions{}.inFlight;
};

Flags parse(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (arg.startsWith("--items=")) flags.items = strtoull(arg.begin() + 8, nullptr, 10);
    if (arg.startsWith("--runs=")) flags.runs = atoi(arg.begin() + 7);
    if (arg.startsWith("--in-flight=")) flags.inFlight = strtoul(arg.begin() + 12, nullptr, 10);
  }
  return flags;
}

cpu_set_t originalMask;

// Every process started from now on inherits the mask (exec keeps it).
void setPinned(bool pinned) {
  if (pinned) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    KJ_SYSCALL(sched_setaffinity(0, sizeof(one), &one));
  } else {
    KJ_SYSCALL(sched_setaffinity(0, sizeof(originalMask), &originalMask));
  }
}

// CPU seconds used so far by this process and its live children (the workers), from /proc.
double cpuSeconds() {
  struct rusage self;
  KJ_SYSCALL(getrusage(RUSAGE_SELF, &self));
  double total = self.ru_utime.tv_sec + self.ru_utime.tv_usec / 1e6 + self.ru_stime.tv_sec +
                 self.ru_stime.tv_usec / 1e6;
  double tick = double(sysconf(_SC_CLK_TCK));
  DIR* proc = opendir("/proc");
  KJ_ASSERT(proc != nullptr);
  while (auto* entry = readdir(proc)) {
    int pid = atoi(entry->d_name);
    if (pid <= 0) continue;
    char path[64], buffer[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE* file = fopen(path, "r");
    if (file == nullptr) continue;
    size_t n = fread(buffer, 1, sizeof(buffer) - 1, file);
    fclose(file);
    buffer[n] = 0;
    // After "pid (comm) ": state ppid ... utime (14th field) stime (15th).
    const char* rest = strrchr(buffer, ')');
    if (rest == nullptr) continue;
    char state;
    long ppid;
    unsigned long utime, stime;
    if (sscanf(rest + 2, "%c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &state, &ppid,
               &utime, &stime) != 4) {
      continue;
    }
    if (ppid == getpid()) total += double(utime + stime) / tick;
  }
  closedir(proc);
  return total;
}

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// One context on `worker`: every item of `items` sent, every result summed.
Co<void> plainStream(MapperActor::Portal& worker, kj::ArrayPtr<const int64_t> items,
                     int64_t& sum) {
  co_await worker.work([&](MapperActor::Portal::WorkContext& context,
                           Mapper::Ready::Reader) -> Co<void> {
    co_await context.openStream([&](MsgStream<Mapper::In, Mapper::Out>& stream) -> Co<void> {
      co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
        tasks.startSoon([&]() -> Co<void> {
          while (auto out = co_await stream.receive()) sum += out->getN();
        });
        for (int64_t n : items) co_await stream.send(n);
        co_await stream.stop();
      });
    });
  });
}

enum Row { PLAIN, PLAIN_TWO, POOL_ONE, POOL_UNORDERED, POOL_TAKEN, POOL_ORDERED, ROWS };
const char* const ROW_NAMES[ROWS] = {
    "plain stream, 1 worker", "plain streams x2 (halves)", "pool mapUnordered, 1 worker",
    "pool mapUnordered, 2 workers", "pool map, taken, 2 workers", "pool map, Received, 2 w."};

using Pool = WorkerPool<MapperActor::Server::WorkCall>;

struct Rates {
  std::vector<double> wall;  // items/s, median per row
  std::vector<double> cpu;   // items per CPU-second (every process), median per row
};

double median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// One pass (pinned or not): the rows' median rates.
Co<Rates> pass(Actor& root, const Flags& flags, kj::ArrayPtr<const int64_t> items,
                             int64_t expected) {
  std::vector<std::vector<double>> rates(ROWS), cpuRates(ROWS);
  co_await openActorNursery(root, [&](ActorNursery& an) -> Co<void> {
    auto a = co_await an.startActor<MapperImpl>("plain-a");
    auto b = co_await an.startActor<MapperImpl>("plain-b");
    co_await openWorkerPool<MapperImpl>(root, 1, &MapperActor::Server::work,
                                        [&](Pool& single) -> Co<void> {
    co_await openWorkerPool<MapperImpl>(root, 2, &MapperActor::Server::work,
                                        [&](Pool& pool) -> Co<void> {
      for (int round = 0; round < flags.runs; ++round) {
        for (int row = 0; row < ROWS; ++row) {
          int64_t sum = 0;
          auto begun = std::chrono::steady_clock::now();
          double cpuBegun = cpuSeconds();
          switch (row) {
            case PLAIN:
              co_await plainStream(a, items, sum);
              break;
            case PLAIN_TWO: {
              size_t half = items.size() / 2;
              int64_t sumA = 0, sumB = 0;
              co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
                tasks.startSoon([&]() { return plainStream(a, items.slice(0, half), sumA); });
                co_await plainStream(b, items.slice(half, items.size()), sumB);
              });
              sum = sumA + sumB;
              break;
            }
            case POOL_ONE:
            case POOL_UNORDERED:
              co_await (row == POOL_ONE ? single : pool).mapUnordered(items,
                  [](Mapper::In::Builder in, int64_t n) { in.setN(n); },
                  [&](size_t, Mapper::Out::Reader out) { sum += out.getN(); });
              break;
            case POOL_TAKEN: {
              auto results = co_await pool.map(items,
                  [](Mapper::In::Builder in, int64_t n) { in.setN(n); },
                  [](Mapper::Out::Reader out) { return out.getN(); });
              for (int64_t n : results) sum += n;
              break;
            }
            case POOL_ORDERED: {
              auto results = co_await pool.map(items);
              for (auto& out : results) sum += out->getN();
              break;
            }
          }
          double elapsed = seconds(std::chrono::steady_clock::now() - begun);
          KJ_ASSERT(sum == expected, "a row's results are wrong", ROW_NAMES[row], sum, expected);
          rates[row].push_back(double(items.size()) / elapsed);
          cpuRates[row].push_back(double(items.size()) / (cpuSeconds() - cpuBegun));
        }
      }
    }, {.inFlight = flags.inFlight});
    }, {.inFlight = flags.inFlight, .name = "single"});
  });
  Rates result;
  for (int row = 0; row < ROWS; ++row) {
    result.wall.push_back(median(rates[row]));
    result.cpu.push_back(median(cpuRates[row]));
  }
  co_return result;
}

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  using namespace harrow;
  KJ_SYSCALL(sched_getaffinity(0, sizeof(originalMask), &originalMask));
  Implementations impls;
  impls.add<MapperImpl>("mapper");
  Flags flags = parse(argc, argv);
  return harrow::main(argc, argv, impls, [&](Actor& root) -> Co<void> {
    auto items = kj::heapArray<int64_t>(flags.items);
    int64_t expected = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      items[i] = int64_t(i);
      expected += 2 * int64_t(i) + 1;
    }
    printf("pool_bench: %zu items (n -> 2n + 1), inFlight %u, median of %d rounds; k items/s "
           "(wall) and k items per CPU-second (all processes), each with its ratio to the plain "
           "stream\n", flags.items, flags.inFlight, flags.runs);
    for (bool pinned : {true, false}) {
      setPinned(pinned);
      auto rates = co_await pass(root, flags, items, expected);
      printf("\n%s\n", pinned ? "pinned (every process on CPU 0)" : "unpinned");
      for (int row = 0; row < ROWS; ++row) {
        printf("  %-32s %8.1f k/s  %.2fx   %8.1f k/CPU-s  %.2fx\n", ROW_NAMES[row],
               rates.wall[row] / 1000, rates.wall[row] / rates.wall[PLAIN], rates.cpu[row] / 1000,
               rates.cpu[row] / rates.cpu[PLAIN]);
      }
      fflush(stdout);
    }
  });
}
