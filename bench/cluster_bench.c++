// Children on other hosts (docs/CLUSTER.md): a typed call to a child behind a node's relay, and
// spawning one, beside the same for a local child. One row per run, a harrow::main program:
//
//   cluster_bench [--node=NAME | --host=NAME] [--calls=N] [--spawns=N] --harrow-nodes=...
//                 [--harrow-hosts=... --harrow-ssh-config=FILE]
//
// Without --node or --host: a local child (the socketpair, no relay): the baseline. With --host
// (a child through ssh or a Slurm step, runtime/spawn/ssh.h) the row also times the bare
// `ssh HOST /bin/true` (`srun /bin/true`) with the same options, in the same run: the floor a
// spawn there is measured against.
// bench/cluster_bench.sh runs every row (local; a node on loopback; a node across a veth pair,
// plain and TLS; ssh across the veth pair) in network namespaces (needs root) and prints the table
// bench/README.md quotes.

#include <harrow/harrow.h>
#include "bench/bench.capnp.harrow.h"

#include <algorithm>
#include <chrono>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

using harrow::Co;
using Clock = std::chrono::steady_clock;

class EchoImpl final : public EchoActor::Server {
public:
  Co<void> ping(PingCall call) override {
    call.results().setPayload(call.params().getPayload());
    co_return;
  }
  Co<void> items(ItemsCall call) override {
    for (uint32_t i = 0; i < call.params().getCount(); ++i) {
      co_await call.yield([&](EchoActor::Schema::Item::Builder item) {
        item.initData(call.params().getSize());
      });
    }
  }
  Co<void> pid(PidCall call) override {
    call.results().setPid(getpid());
    co_return;
  }
};

double micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// One `ssh HOST /bin/true` (for a slurm:// host: `srun ... /bin/true`, a step) with the options
// harrow's spawns use, in milliseconds. Run and
// reaped synchronously: the event loop does not turn meanwhile (spawnProcess's contract).
double bareTrue(kj::StringPtr hostName) {
  auto args = harrow::sshCommand(hostName, "/bin/true");
  auto argv = KJ_MAP(arg, args) -> kj::StringPtr { return arg; };
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  auto start = Clock::now();
  pid_t pid = harrow::spawnProcess(argv, -1, null);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  double ms = micros(Clock::now() - start) / 1000;
  close(null);
  KJ_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "ssh HOST /bin/true failed",
             hostName, status);
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  kj::StringPtr node = "";
  kj::StringPtr host = "";
  int calls = 2000;
  int spawns = 20;
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (arg.startsWith("--node=")) node = arg.slice(7);
    if (arg.startsWith("--host=")) host = arg.slice(7);
    if (arg.startsWith("--calls=")) calls = atoi(arg.slice(8).cStr());
    if (arg.startsWith("--spawns=")) spawns = atoi(arg.slice(9).cStr());
  }
  harrow::Implementations impls;
  impls.add<EchoImpl>("echo");
  return harrow::main(argc, argv, impls, [&](harrow::Actor& root) -> Co<void> {
    harrow::SpawnOptions options;
    options.node = node;
    options.host = host;
    options.backend = harrow::SpawnBackend::EXEC;
    kj::byte payload[16] = {};
    // Calls: one child, round trips one at a time, 16-byte payload (as call_bench's rows).
    std::vector<double> rtts;
    co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> Co<void> {
      auto echo = co_await an.startActor<EchoImpl>("echo", options);
      for (int i = 0; i < calls / 10; ++i) {  // warm-up
        co_await echo.ping(capnp::Data::Reader(payload, sizeof(payload)));
      }
      for (int i = 0; i < calls; ++i) {
        auto start = Clock::now();
        co_await echo.ping(capnp::Data::Reader(payload, sizeof(payload)));
        rtts.push_back(micros(Clock::now() - start));
      }
    });
    // Spawns: start, handshake, first call, cancel; one at a time. Through ssh, each beside a
    // bare `ssh HOST /bin/true` (interleaved, so that both see the same load).
    std::vector<double> starts;
    std::vector<double> floors;
    for (int i = 0; i < spawns; ++i) {
      if (host.size() > 0) floors.push_back(bareTrue(host));
      co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> Co<void> {
        auto start = Clock::now();
        auto echo = co_await an.startActor<EchoImpl>(kj::str("spawned-", i), options);
        co_await echo.pid();
        starts.push_back(micros(Clock::now() - start) / 1000);
      });
    }
    kj::StringPtr where = node.size() > 0 ? node : host.size() > 0 ? host : "(local)";
    printf("%s=%s call_median_us=%.1f spawn_median_ms=%.2f calls=%d spawns=%d",
           host.size() > 0 ? "host" : "node", where.cStr(), median(rtts), median(starts), calls,
           spawns);
    if (host.size() > 0) {
      printf(" bare_true_median_ms=%.2f spawn_vs_bare_true=%.2fx", median(floors),
             median(starts) / median(floors));
    }
    printf("\n");
    fflush(stdout);
  });
}
