// The tree tests/metrics/prometheus_test runs: the root, two children and a grandchild, each
// having served a known number of calls, then holding still until SIGTERM.
//
//   root ── counter-1   5 × Counter.add
//       └── middle      1 × Counter.session (open while the tree holds)
//             └── leaf  7 × Counter.add
//
// Prints "ready metrics=HOST:PORT" once every call has been made (the metrics endpoint's real
// address: the test starts it with --harrow-metrics=127.0.0.1:0), then waits for SIGTERM.

#include <harrow/harrow.h>
#include <harrow/actor/metrics_endpoint.h>
#include "examples/counter/counter.capnp.harrow.h"

#include <kj/debug.h>

#include <stdio.h>
#include <unistd.h>

namespace {

using harrow::Co;
using Schema = CounterActor::Schema;

constexpr int ROOT_CALLS = 5;
constexpr int MIDDLE_CALLS = 7;

class CounterImpl final : public CounterActor::Server {
public:
  Co<void> add(AddCall call) override {
    total += call.params().getN();
    call.results().setTotal(total);
    co_return;
  }
  Co<void> count(CountCall) override { co_return; }
  Co<void> session(SessionCall call) override {
    co_await call.started([&](Schema::Ready::Builder ready) { ready.setStart(total); });
    co_await kj::Promise<void>(kj::NEVER_DONE);  // held until its actor is cancelled
  }

private:
  int64_t total = 0;
};

// middle: its session spawns leaf, calls it, and holds both until cancelled.
class MiddleImpl final : public CounterActor::Server {
public:
  Co<void> add(AddCall) override { co_return; }
  Co<void> count(CountCall) override { co_return; }
  Co<void> session(SessionCall call) override {
    KJ_LOG(WARNING, "session opened", call.params().getLabel());  // a log line, for json mode
    co_await harrow::openActorNursery([&](harrow::ActorNursery& an) -> Co<void> {
      auto leaf = co_await an.startActor<CounterImpl>("leaf");
      for (int i = 0; i < MIDDLE_CALLS; ++i) co_await leaf.add(1);
      co_await call.started([&](Schema::Ready::Builder ready) { ready.setStart(MIDDLE_CALLS); });
      co_await kj::Promise<void>(kj::NEVER_DONE);
    });
  }
};

Co<void> run(harrow::Actor& root) {
  co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> Co<void> {
    auto counter = co_await an.startActor<CounterImpl>("counter-1");
    for (int i = 0; i < ROOT_CALLS; ++i) co_await counter.add(1);
    auto middle = co_await an.startActor<MiddleImpl>("middle");
    co_await middle.session("hold",
        [&](CounterActor::Portal::SessionContext&, Schema::Ready::Reader) -> Co<void> {
          auto& endpoint = KJ_ASSERT_NONNULL(root.attachment<harrow::MetricsEndpoint>());
          printf("[root %d] ready metrics=%s\n", getpid(), endpoint.address().cStr());
          fflush(stdout);
          co_await root.whenCancelled();  // SIGTERM
        });
  });
}

}  // namespace

int main(int argc, char** argv) {
  harrow::Implementations implementations;
  implementations.add<CounterImpl>("counter");
  implementations.add<MiddleImpl>("middle");
  return harrow::main(argc, argv, implementations, run);
}
