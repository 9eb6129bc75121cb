// A tree across machines: the root starts one worker on each node it is given (harrow-node on
// another host, docs/CLUSTER.md), calls it and streams from it.
//
//   harrow-node --listen=tcp:10.0.0.2:7000 --allow=/path/to/cluster     # on host b
//   cluster --workers=b --harrow-nodes=b=tcp:10.0.0.2:7000              # on host a
//
// Without --workers it starts one local worker. run.sh does it all on one machine, with network
// namespaces as hosts (as root).

#include <harrow/harrow.h>
#include "examples/cluster/cluster.capnp.harrow.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

namespace {

using harrow::Co;

kj::String hostName() {
  // On one machine the "hosts" are network namespaces: name the namespace too.
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  char ns[64] = {};
  ssize_t n = readlink("/proc/self/ns/net", ns, sizeof(ns) - 1);
  return kj::str(name, " ", n > 0 ? ns : "");
}

class WorkerImpl final : public WorkerActor::Server {
public:
  Co<void> where(WhereCall call) override {
    call.results().setHost(hostName());
    call.results().setPid(getpid());
    co_return;
  }

  Co<void> squares(SquaresCall call) override {
    for (uint64_t i = 0; i < call.params().getUpTo(); ++i) {
      co_await call.yield([&](WorkerActor::Schema::Square::Builder s) { s.setValue(i * i); });
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  kj::Vector<kj::String> workers;  // node names, from --workers=b,c
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (!arg.startsWith("--workers=")) continue;
    kj::StringPtr rest = arg.slice(10);
    while (rest.size() > 0) {
      size_t end = rest.size();
      KJ_IF_MAYBE(comma, rest.findFirst(',')) end = *comma;
      workers.add(kj::heapString(rest.begin(), end));
      rest = end < rest.size() ? rest.slice(end + 1) : kj::StringPtr("");
    }
  }
  if (workers.size() == 0) workers.add(kj::str());  // one local worker

  harrow::Implementations impls;
  impls.add<WorkerImpl>("worker");
  return harrow::main(argc, argv, impls, [&](harrow::Actor& root) -> Co<void> {
    printf("root on %s pid %d\n", hostName().cStr(), getpid());
    co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> Co<void> {
      for (auto& node : workers) {
        harrow::SpawnOptions options;
        // A worker's name that --harrow-hosts lists goes through ssh; otherwise to that
        // harrow-node ("": this host).
        const char* hosts = getenv("HARROW_HOSTS");
        bool viaSsh = harrow::namedEntry(hosts != nullptr ? hosts : "", node) != nullptr;
        if (viaSsh) {
          options.host = node;
        } else {
          options.node = node;
        }
        auto worker = co_await an.startActor<WorkerImpl>(
            kj::str("worker-", node.size() > 0 ? node.asPtr() : "local"), options);
        auto where = co_await worker.where();
        uint64_t sum = 0;
        co_await worker.squares(10, [&](WorkerActor::Portal::SquaresStream& squares) -> Co<void> {
          while (auto square = co_await squares.receive()) sum += square->getValue();
        });
        printf("worker on %s '%s': %s pid %d; sum of squares below 10: %llu\n",
               viaSsh ? "host" : "node", node.size() > 0 ? node.cStr() : "(local)",
               where->getHost().cStr(), where->getPid(), (unsigned long long)sum);
        fflush(stdout);
      }
    });
  });
}
