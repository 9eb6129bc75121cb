// Bulk streams between two processes on one host: harrow stream items of 1 KiB, 64 KiB and 1 MiB
// through shared memory (docs/PROTOCOL.md, "Large frames through shared memory") against the same
// items over the socket (shared memory off: PeerOptions::sharedMemoryThreshold = 0) and against the
// raw socket bandwidth (a blocking write()/read() loop of the same bytes over a socketpair), in one
// binary and one run. Then single large values (1, 16 and 64 MiB of Data) in a call's params and
// again in its results (an echo), the same three ways, with the peak memory (VmHWM) each process
// grew by.
//
//   bazel run -c opt //bench:bulk_bench [-- --reps=N] [--values] [--streams] [--pin]
//
// Each measurement forks a child actor (a Peer over a socketpair, the producer), streams
// `count` items from it to the parent (the consumer, which touches every item's size) and times
// from the start of the stream to its end; the child's setup and teardown are not timed.
// Repetitions interleave all rows (so load drifting during the run spreads over all of them);
// the table shows each row's median over repetitions, in MB/s (10^6 bytes), and the ratios.

#include "bench/bulk.capnp.h"
#include "bench/summary.h"
#include <harrow/actor/actor.h>
#include <harrow/co/nursery.h>
#include <harrow/typed/typed.h>

#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/main.h>

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace harrow {
namespace {

constexpr uint64_t BULK_ID = 0xb01c;
constexpr uint16_t ECHO = 1;

// Peak memory of a process: /proc/<pid>/status VmHWM and VmRSS, in bytes. A process resets its
// own VmHWM to its VmRSS by writing 5 to /proc/self/clear_refs.
size_t statusBytes(pid_t pid, const char* field) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/status")
                            : "/proc/" + std::to_string(pid) + "/status");
  std::string line;
  size_t length = strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, length, field) == 0 && line[length] == ':') {
      return strtoull(line.c_str() + length + 1, nullptr, 10) << 10;
    }
  }
  return 0;
}

void resetPeakMemory() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5" << std::flush;
}

class BulkServer final : public ActorServer {
public:
  uint64_t interfaceId() const override { return BULK_ID; }
  kj::StringPtr interfaceName() const override { return "Bulk"; }
  kj::Maybe<MethodKind> methodKind(uint16_t id) const override {
    if (id == 0) return MethodKind::STREAM;
    if (id == ECHO) return MethodKind::CALL;
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t id) const override { return id == ECHO ? "echo" : "chunks"; }
  Co<void> dispatch(uint16_t id, IncomingTask& task) override {
    if (id == ECHO) {
      // What a Store's get does with what its put was given: one Data value back.
      ServerCall<Chunk, Chunk> call(task);
      call.results().setData(call.params().getData());
      co_return;
    }
    ServerStream<BulkRequest, Chunk> call(task);
    uint32_t count = call.params().getCount();
    uint32_t bytes = call.params().getBytes();
    if (payload.size() != bytes) {
      payload = kj::heapArray<kj::byte>(bytes);
      for (size_t i = 0; i < bytes; i++) payload[i] = kj::byte(i * 7 + 1);
    }
    for (uint32_t i = 0; i < count; ++i) {
      co_await call.yield([&](Chunk::Builder chunk) { chunk.setData(payload); });
    }
  }

private:
  kj::Array<kj::byte> payload;
};

enum class Mode { SHARED, SOCKET, RAW };
const char* modeName(Mode mode) {
  switch (mode) {
    case Mode::SHARED: return "harrow, shared memory";
    case Mode::SOCKET: return "harrow, socket";
    case Mode::RAW: return "raw socket write/read";
  }
  return "";
}

PeerOptions optionsFor(Mode mode) {
  PeerOptions options;
  if (mode == Mode::SOCKET) options.sharedMemoryThreshold = 0;
  options.maxMessageBytes = 96u << 20;  // room for a 64 MiB value and its framing
  if (const char* ring = getenv("BULK_RING_BYTES")) options.sharedMemoryRingBytes = atol(ring);
  return options;
}

void writeAll(int fd, const kj::byte* from, size_t bytes) {
  for (size_t done = 0; done < bytes;) {
    ssize_t n = write(fd, from + done, bytes - done);
    if (n < 0 && errno == EINTR) continue;
    KJ_ASSERT(n > 0, strerror(errno));
    done += n;
  }
}

void readAll(int fd, kj::byte* into, size_t bytes) {
  for (size_t done = 0; done < bytes;) {
    ssize_t n = read(fd, into + done, bytes - done);
    if (n < 0 && errno == EINTR) continue;
    KJ_ASSERT(n > 0, strerror(errno));
    done += n;
  }
}

// The child: serves the Bulk stream and echo (harrow modes), or writes the bytes (raw; with
// `echo`, reads one value of `bytes` whole and writes it back), then exits.
[[noreturn]] void child(int fd, Mode mode, size_t count, size_t bytes, bool echo = false) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  resetPeakMemory();
  int status = 0;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    if (mode == Mode::RAW && echo) {
      kj::byte ready = 'r';
      writeAll(fd, &ready, 1);
      auto buffer = kj::heapArray<kj::byte>(bytes);
      readAll(fd, buffer.begin(), bytes);
      writeAll(fd, buffer.begin(), bytes);
      readAll(fd, &ready, 1);  // the parent has read our peak memory
      return;
    }
    if (mode == Mode::RAW) {
      auto buffer = kj::heapArray<kj::byte>(bytes);
      memset(buffer.begin(), 1, bytes);
      for (size_t i = 0; i < count; ++i) {
        for (size_t done = 0; done < bytes;) {
          ssize_t n = write(fd, buffer.begin() + done, bytes - done);
          if (n < 0 && errno == EINTR) continue;
          KJ_ASSERT(n > 0, strerror(errno));
          done += n;
        }
      }
      return;
    }
    auto io = kj::setupAsyncIo();
    Actor actor(io, ActorIdentity::random("producer"));
    actor.addServer(kj::heap<BulkServer>());
    actor.serve([&]() -> Co<void> {
      auto channel = kj::heap<Channel>(io.unixEventPort, kj::AutoCloseFd(fd));
      auto peer = co_await handshakeWithParent(kj::mv(channel), actor, optionsFor(mode));
      try {
        co_await peer->serve();
      } catch (...) {
      }
      co_await peer->whenDrained();
    }).wait(io.waitScope);
  })) {
    fprintf(stderr, "bulk_bench child: %s\n", kj::str(*e).cStr());
    status = 1;
  }
  _exit(status);
}

double cpuSeconds(int who) {
  struct rusage usage;
  KJ_SYSCALL(getrusage(who, &usage));
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

struct Figures {
  double seconds;     // wall clock, start of the stream to its end
  double cpuSeconds;  // ours over that time, plus the child's whole life (setup is ~1 ms)
};

// One measurement: moving `count` items of `bytes` from a fresh child to us.
Figures measure(Mode mode, size_t count, size_t bytes) {
  double childCpuBefore = cpuSeconds(RUSAGE_CHILDREN);
  double ownCpu = 0;
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  fflush(stdout);
  pid_t pid = fork();
  KJ_ASSERT(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    child(fds[1], mode, count, bytes);
  }
  close(fds[1]);
  double seconds = 0;
  if (mode == Mode::RAW) {
    auto buffer = kj::heapArray<kj::byte>(bytes);
    auto start = std::chrono::steady_clock::now();
    double cpuStart = cpuSeconds(RUSAGE_SELF);
    size_t total = count * bytes;
    size_t sum = 0;
    for (size_t done = 0; done < total;) {
      ssize_t n = read(fds[0], buffer.begin(), kj::min(bytes, total - done));
      if (n < 0 && errno == EINTR) continue;
      KJ_ASSERT(n > 0, strerror(errno));
      sum += buffer[0];
      done += n;
    }
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ownCpu = cpuSeconds(RUSAGE_SELF) - cpuStart;
    KJ_ASSERT(sum > 0);
    close(fds[0]);
  } else {
    auto io = kj::setupAsyncIo();
    Actor actor(io, ActorIdentity::random("consumer"));
    auto channel = kj::heap<Channel>(io.unixEventPort, kj::AutoCloseFd(fds[0]));
    auto peer = handshakeWithChild(kj::mv(channel), actor, optionsFor(mode)).wait(io.waitScope);
    actor.serve([&]() -> Co<void> {
      co_await openNursery([&](TaskNursery& n) -> Co<void> {
        n.startSoon([&]() -> Co<void> {
          try {
            co_await peer->serve();
          } catch (const kj::Exception& e) {
            if (!isCancelled(e)) throw;
          }
        });
        size_t received = 0;
        auto start = std::chrono::steady_clock::now();
        double cpuStart = cpuSeconds(RUSAGE_SELF);
        co_await streamMethod<BulkRequest, Chunk>(*peer, BULK_ID, 0,
            [&](BulkRequest::Builder p) {
              p.setCount(count);
              p.setBytes(bytes);
            },
            [&](ReceiveStream<Chunk>& items) -> Co<void> {
              while (auto item = co_await items.receive()) received += item->getData().size();
            });
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        ownCpu = cpuSeconds(RUSAGE_SELF) - cpuStart;
        KJ_ASSERT(received == count * bytes, received);
        bool viaShm = peer->channel().sharedMemoryCounts().framesReceived > 0;
        bool large = bytes > optionsFor(mode).sharedMemoryThreshold;
        KJ_ASSERT(viaShm == (mode == Mode::SHARED && large),
                  "the path taken is not the one measured");
        co_await peer->channel().shutdownWrite();
        n.cancel();
      });
    }).wait(io.waitScope);
    peer = nullptr;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0) KJ_ASSERT(errno == EINTR, strerror(errno));
  KJ_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed", status);
  return {seconds, ownCpu + cpuSeconds(RUSAGE_CHILDREN) - childCpuBefore};
}

// One large value: `bytes` of Data to a fresh child in a call's params and back in its results
// (raw: the same bytes written, read whole by the child, written back and read whole).
struct ValueFigures {
  double seconds;      // wall clock, from building the params to holding the result
  double parentGrowth; // VmHWM over VmRSS before the call, in units of `bytes`
  double childGrowth;  // the same for the child, from when it was ready to serve
};

ValueFigures measureValue(Mode mode, size_t bytes) {
  auto payload = kj::heapArray<kj::byte>(bytes);
  for (size_t i = 0; i < bytes; i += 4096) payload[i] = kj::byte(i / 4096 * 7 + 1);
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  fflush(stdout);
  pid_t pid = fork();
  KJ_ASSERT(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    payload = nullptr;
    child(fds[1], mode, 1, bytes, true);
  }
  close(fds[1]);
  ValueFigures figures{};
  size_t childBase = 0;
  size_t parentBase = 0;
  auto startMeasuring = [&]() {
    childBase = statusBytes(pid, "VmRSS");
    resetPeakMemory();
    parentBase = statusBytes(0, "VmRSS");
    return std::chrono::steady_clock::now();
  };
  auto stopMeasuring = [&](std::chrono::steady_clock::time_point start) {
    figures.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    figures.parentGrowth = double(statusBytes(0, "VmHWM") - parentBase) / bytes;
    figures.childGrowth = double(statusBytes(pid, "VmHWM") - childBase) / bytes;
  };
  if (mode == Mode::RAW) {
    kj::byte ready;
    readAll(fds[0], &ready, 1);
    auto start = startMeasuring();
    writeAll(fds[0], payload.begin(), bytes);
    auto back = kj::heapArray<kj::byte>(bytes);
    readAll(fds[0], back.begin(), bytes);
    KJ_ASSERT(back[bytes - 1] == payload[bytes - 1]);
    stopMeasuring(start);
    writeAll(fds[0], &ready, 1);
    close(fds[0]);
  } else {
    auto io = kj::setupAsyncIo();
    Actor actor(io, ActorIdentity::random("caller"));
    auto channel = kj::heap<Channel>(io.unixEventPort, kj::AutoCloseFd(fds[0]));
    auto peer = handshakeWithChild(kj::mv(channel), actor, optionsFor(mode)).wait(io.waitScope);
    actor.serve([&]() -> Co<void> {
      co_await openNursery([&](TaskNursery& n) -> Co<void> {
        n.startSoon([&]() -> Co<void> {
          try {
            co_await peer->serve();
          } catch (const kj::Exception& e) {
            if (!isCancelled(e)) throw;
          }
        });
        auto start = startMeasuring();
        {
          auto reply = co_await callMethod<Chunk, Chunk>(*peer, BULK_ID, ECHO,
              [&](Chunk::Builder p) { p.setData(payload); });
          auto data = reply->getData();  // once: each read counts against the traversal limit
          KJ_ASSERT(data.size() == bytes);
          KJ_ASSERT(data[bytes - 1] == payload[bytes - 1]);
          // Holding the result, as the raw row holds its buffer: freeing it is not timed there.
          stopMeasuring(start);
        }
        co_await peer->channel().shutdownWrite();
        n.cancel();
      });
    }).wait(io.waitScope);
    peer = nullptr;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0) KJ_ASSERT(errno == EINTR, strerror(errno));
  KJ_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed", status);
  return figures;
}

using bench::median;

// The large-value rows: medians over `reps`, all rows interleaved per repetition.
void runValues(int reps) {
  struct Size { size_t bytes; const char* name; };
  const Size sizes[] = {{1u << 20, "1 MiB"}, {16u << 20, "16 MiB"}, {64u << 20, "64 MiB"}};
  std::vector<double> ms[3][3], parentGrowth[3][3], childGrowth[3][3];
  for (int rep = 0; rep < reps; ++rep) {
    for (int s = 0; s < 3; ++s) {
      for (int m = 0; m < 3; ++m) {
        int mode = (m + rep) % 3;
        auto figures = measureValue(Mode(mode), sizes[s].bytes);
        ms[s][mode].push_back(figures.seconds * 1e3);
        parentGrowth[s][mode].push_back(figures.parentGrowth);
        childGrowth[s][mode].push_back(figures.childGrowth);
      }
    }
  }
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  cpu_set_t cpus;
  KJ_SYSCALL(sched_getaffinity(0, sizeof(cpus), &cpus));
  printf("One Data value in a call's params and again in its results (an echo), caller parent -> "
         "callee child over a socketpair; median of %d repetitions; %s; load average %.1f / %.1f "
         "/ %.1f on %ld CPUs\n\n", reps, CPU_COUNT(&cpus) == 1 ? "pinned to one CPU" : "unpinned",
         load[0], load[1], load[2], sysconf(_SC_NPROCESSORS_ONLN));
  printf("| value | %s, ms | %s, ms | %s, ms | shm / raw | socket / raw | peak growth "
         "caller / callee (x value): shm | socket | raw |\n",
         modeName(Mode::SHARED), modeName(Mode::SOCKET), modeName(Mode::RAW));
  printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int s = 0; s < 3; ++s) {
    double shared = median(ms[s][0]), socket = median(ms[s][1]), raw = median(ms[s][2]);
    printf("| %s | %.1f | %.1f | %.1f | %.2f | %.2f |", sizes[s].name, shared, socket, raw,
           shared / raw, socket / raw);
    for (int m = 0; m < 3; ++m) {
      printf(" %.2f / %.2f |", median(parentGrowth[s][m]), median(childGrowth[s][m]));
    }
    printf("\n");
  }
  printf("\nGrowth with size, 64 MiB / 16 MiB: shm %.2f, socket %.2f, raw %.2f\n\n",
         median(ms[2][0]) / median(ms[1][0]), median(ms[2][1]) / median(ms[1][1]),
         median(ms[2][2]) / median(ms[1][2]));
}

int run(int argc, char** argv) {
  // Large blocks go back to the kernel when freed: a child forked for the next measurement then
  // inherits no resident memory of the last one, so its VmHWM grows by what it allocates itself.
  mallopt(M_MMAP_THRESHOLD, 64 << 10);
  int reps = 5;
  bool streams = true;
  bool values = true;
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--reps=", 7) == 0) reps = atoi(argv[i] + 7);
    if (strcmp(argv[i], "--values") == 0) streams = false;
    if (strcmp(argv[i], "--streams") == 0) values = false;
    if (strcmp(argv[i], "--pin") == 0) {
      // This process and its children on CPU 0.
      cpu_set_t cpus;
      CPU_ZERO(&cpus);
      CPU_SET(0, &cpus);
      KJ_SYSCALL(sched_setaffinity(0, sizeof(cpus), &cpus));
    }
    if (strncmp(argv[i], "--value=", 8) == 0) {
      // --value=BYTES,MODE (0 shm, 1 socket, 2 raw): one large-value echo, for profiling.
      size_t bytes = 0;
      int mode = 0;
      KJ_ASSERT(sscanf(argv[i] + 8, "%zu,%d", &bytes, &mode) == 2);
      auto figures = measureValue(Mode(mode), bytes);
      printf("%.1f ms; peak memory grew by %.2fx the value (caller), %.2fx (callee)\n",
             figures.seconds * 1e3, figures.parentGrowth, figures.childGrowth);
      return 0;
    }
    if (strncmp(argv[i], "--one=", 6) == 0) {
      // --one=BYTES,COUNT,MODE (0 shm, 1 socket, 2 raw): one measurement, for profiling.
      size_t bytes = 0, count = 0;
      int mode = 0;
      KJ_ASSERT(sscanf(argv[i] + 6, "%zu,%zu,%d", &bytes, &count, &mode) == 3);
      auto figures = measure(Mode(mode), count, bytes);
      printf("%.0f MB/s, %.0f MB per CPU-second\n", double(count * bytes) / figures.seconds / 1e6,
             double(count * bytes) / figures.cpuSeconds / 1e6);
      return 0;
    }
  }
  double load[3] = {0, 0, 0};
  if (values) runValues(reps);
  if (!streams) return 0;
  struct Size { size_t bytes; size_t count; const char* name; };
  const Size sizes[] = {{1u << 10, 65536, "1 KiB"}, {64u << 10, 2048, "64 KiB"},
                        {1u << 20, 128, "1 MiB"}};
  const Mode modes[] = {Mode::SHARED, Mode::SOCKET, Mode::RAW};
  std::vector<double> mbps[3][3];
  std::vector<double> perCpu[3][3];
  for (int rep = 0; rep < reps; ++rep) {
    for (int s = 0; s < 3; ++s) {
      for (int m = 0; m < 3; ++m) {
        // Rotate the order of modes per repetition so that none always runs first.
        int mode = (m + rep) % 3;
        auto figures = measure(modes[mode], sizes[s].count, sizes[s].bytes);
        double megabytes = double(sizes[s].count * sizes[s].bytes) / 1e6;
        mbps[s][mode].push_back(megabytes / figures.seconds);
        perCpu[s][mode].push_back(megabytes / figures.cpuSeconds);
      }
    }
  }
  getloadavg(load, 3);
  auto table = [&](std::vector<double> (&figures)[3][3], const char* what) {
    printf("\n%s\n\n", what);
    printf("| items | %s | %s | %s | shm / socket | shm / raw | socket / raw |\n",
           modeName(Mode::SHARED), modeName(Mode::SOCKET), modeName(Mode::RAW));
    printf("|---|---|---|---|---|---|---|\n");
    for (int s = 0; s < 3; ++s) {
      double shared = median(figures[s][0]), socket = median(figures[s][1]);
      double raw = median(figures[s][2]);
      printf("| %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f |\n", sizes[s].name, shared, socket,
             raw, shared / socket, shared / raw, socket / raw);
    }
  };
  printf("Bulk stream, producer child -> consumer parent over a socketpair; median of %d "
         "repetitions; load average %.1f / %.1f / %.1f on %ld CPUs\n", reps, load[0], load[1],
         load[2], sysconf(_SC_NPROCESSORS_ONLN));
  table(mbps, "Throughput, MB/s (wall clock)");
  table(perCpu, "Efficiency, MB moved per CPU-second (both processes; robust under load)");
  return 0;
}

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) { return harrow::run(argc, argv); }
