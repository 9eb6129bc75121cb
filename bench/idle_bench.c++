// An actor's footprint as a user's program has it, by how the program is linked. This binary is
// an ordinary harrow program (harrow::main; no test or benchmark library linked), built three ways
// by Bazel:
//
//   bazel run -c opt //bench:idle_bench          the default: a PIE, libc and libstdc++ shared
//   bazel run -c opt //bench:idle_bench_nopie    -no-pie (no load-time relocation of the binary)
//   bazel run -c opt //bench:idle_bench_static   fully static (-static: no shared library at all)
//
// Each prints, for its own link mode:
//  - spawn + handshake + first call (exec, the default spawn), median of 30, beside the floor of
//    this same binary: fork + exec of it doing nothing (--exit), median of 30;
//  - an idle Echo actor 200 ms after its first call: VmRSS, Pss and private memory from /proc,
//    and the resident kB of each mapped file (what the megabytes are).

#include <harrow/harrow.h>
#include "bench/bench.capnp.harrow.h"

#include <kj/debug.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <vector>
#include <sstream>
#include <string>

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using harrow::Co;

class EchoImpl final : public EchoActor::Server {
public:
  Co<void> ping(PingCall call) override {
    call.results().setPayload(call.params().getPayload());
    co_return;
  }
  Co<void> items(ItemsCall) override { co_return; }
  Co<void> pid(PidCall call) override {
    call.results().setPid(getpid());
    co_return;
  }
};

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// "VmRSS:   6300 kB" -> 6300; -1 if absent.
long field(const std::string& text, const std::string& name) {
  auto at = text.find(name);
  if (at == std::string::npos) return -1;
  return std::stol(text.substr(at + name.size()));
}

using Clock = std::chrono::steady_clock;
constexpr int kSpawns = 30;

double medianMs(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// fork + exec of this binary, which exits at once (--exit): what exec costs this link mode.
double execFloorMs(const char* self) {
  std::vector<double> ms;
  for (int i = 0; i < kSpawns; ++i) {
    auto t0 = Clock::now();
    pid_t pid = fork();
    if (pid == 0) {
      execl(self, self, "--exit", static_cast<char*>(nullptr));
      _exit(127);
    }
    int status;
    KJ_SYSCALL(waitpid(pid, &status, 0));
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return medianMs(ms);
}

void report(uint32_t pid) {
  std::string status = readFile("/proc/" + std::to_string(pid) + "/status");
  std::string rollup = readFile("/proc/" + std::to_string(pid) + "/smaps_rollup");
  printf("idle actor (pid %u): VmRSS %ld kB (RssAnon %ld, RssFile %ld), Pss %ld kB, private %ld kB\n",
         pid, field(status, "VmRSS:"), field(status, "RssAnon:"), field(status, "RssFile:"),
         field(rollup, "\nPss:"), field(rollup, "Private_Clean:") + field(rollup, "Private_Dirty:"));
  // Resident kB per mapped file (or [anon], [stack], ...), largest first.
  std::map<std::string, long> byFile;
  std::istringstream smaps(readFile("/proc/" + std::to_string(pid) + "/smaps"));
  std::string line, current;
  while (std::getline(smaps, line)) {
    if (line.empty()) continue;
    // A mapping's header ("55d0...-55d1... r-xp 0 fd:01 123 /path") or one of its fields
    // ("Rss:   123 kB"): only a header's first word is an address range.
    std::string first = line.substr(0, line.find(' '));
    if (first.find('-') != std::string::npos && first.back() != ':') {
      auto slash = line.find('/');
      auto bracket = line.find('[');
      current = slash != std::string::npos ? line.substr(slash)
              : bracket != std::string::npos ? line.substr(bracket) : "[anon]";
    } else if (line.rfind("Rss:", 0) == 0) {
      byFile[current] += std::stol(line.substr(4));
    }
  }
  std::multimap<long, std::string, std::greater<long>> largest;
  for (auto& [file, kb] : byFile) largest.emplace(kb, file);
  for (auto& [kb, file] : largest) {
    if (kb >= 16) printf("  %6ld kB  %s\n", kb, file.c_str());
  }
}

std::string readlinkSelf() {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  KJ_ASSERT(n > 0, "readlink /proc/self/exe");
  return std::string(path, n);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && kj::StringPtr(argv[1]) == "--exit") return 0;
  harrow::Implementations implementations;
  implementations.add<EchoImpl>("echo");
  std::string self = readlinkSelf();
  return harrow::main(argc, argv, implementations, [&](harrow::Actor& root) -> Co<void> {
    std::vector<double> spawns;
    for (int i = 0; i < kSpawns; ++i) {
      co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> Co<void> {
        auto t0 = Clock::now();
        EchoActor::Portal echo = co_await an.startActor<EchoImpl>(kj::str("echo-", i));
        co_await echo.pid();
        spawns.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      });
    }
    double spawn = medianMs(spawns), floor = execFloorMs(self.c_str());
    printf("spawn + handshake + first call (exec): %.2f ms; fork + exec of this binary doing "
           "nothing: %.2f ms; ratio %.2f\n", spawn, floor, spawn / floor);
    co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> Co<void> {
      EchoActor::Portal echo = co_await an.startActor<EchoImpl>("echo");
      auto reply = co_await echo.pid();
      uint32_t pid = reply->getPid();
      // A measurement's settling time (the child's startup work done), not synchronisation.
      co_await root.timer().afterDelay(200 * kj::MILLISECONDS);
      report(pid);
    });
  });
}
