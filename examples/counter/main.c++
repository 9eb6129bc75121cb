// The flagship example: a Counter actor in a child process, exercised through each kind of
// method harrow has — a call, a stream and a context.
//
//   bazel run //examples/counter
//   bazel run //examples/counter -- --serve    # then keep counter-1 up for `harrow` (programs/harrow/)
//
// The program is its own child: harrow::main re-executes this binary to run the "counter"
// implementation, talks to it over a socketpair, and reaps it when the nursery ends.

#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

#include <kj/debug.h>

#include <stdio.h>
#include <unistd.h>

namespace {

using harrow::Co;
using Schema = CounterActor::Schema;

void say(kj::StringPtr who, kj::StringPtr what) {
  printf("[%s %d] %s\n", who.cStr(), getpid(), what.cStr());
  fflush(stdout);
}

// Runs in the child process.
class CounterImpl final : public CounterActor::Server {
public:
  Co<void> add(AddCall call) override {
    total += call.params().getN();
    call.results().setTotal(total);
    co_return;
  }

  Co<void> count(CountCall call) override {
    for (uint32_t i = 0; i < call.params().getUpTo(); ++i) {
      // Waits for the caller's credit: a slow reader slows this loop, nothing piles up.
      co_await call.yield(i);  // Tick has one field: its value will do
    }
  }

  Co<void> session(SessionCall call) override {
    say("counter", kj::str("session '", call.params().getLabel(), "' opened at ", total));
    co_await call.started(total);
    co_await call.openStream([&](auto& stream) -> Co<void> {
      while (auto delta = co_await stream.receive()) {  // ends when the caller stops sending
        total += delta->getBy();
        co_await stream.send(total);
      }
    });
    call.results().setTotal(total);
  }

private:
  int64_t total = 0;
};

// Runs in the root process. With `serve`, once the demo is done the tree stays up (counter-1
// serving) until the program is interrupted, so that the `harrow` command can look at it.
Co<void> run(harrow::Actor& root, bool serve) {
  co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> Co<void> {
    // By type: the portal's type follows from the implementation's (CounterActor::Portal).
    CounterActor::Portal counter = co_await an.startActor<CounterImpl>("counter-1");
    say("root", "spawned actor counter-1");

    // A call (tractor: Portal.run).
    auto added = co_await counter.add(5);
    say("root", kj::str("add(5) -> total ", added->getTotal()));

    // A stream (tractor: Portal.open_stream_from): the block ends when the actor stops.
    co_await counter.count(3, [&](CounterActor::Portal::CountStream& ticks) -> Co<void> {
      while (auto tick = co_await ticks.receive()) {
        say("root", kj::str("tick ", tick->getValue()));
      }
    });

    // A context (tractor: Portal.open_context): started value, a stream both ways, a result.
    auto result = co_await counter.session("demo",
        [&](CounterActor::Portal::SessionContext& ctx, Schema::Ready::Reader ready) -> Co<void> {
          say("root", kj::str("session started at ", ready.getStart()));
          co_await ctx.openStream([&](auto& stream) -> Co<void> {
            for (int64_t by : {2, 3, 4}) {
              co_await stream.send(by);  // or [&](Schema::Delta::Builder d) { d.setBy(by); }
              auto total = co_await stream.receive();
              say("root", kj::str("sent +", by, ", total now ", total->getValue()));
            }
          });
        });
    say("root", kj::str("session returned total ", result->getTotal()));

    if (serve) {
      say("root", "serving: counter-1 stays up until interrupted (try `harrow ps`)");
      co_await root.whenCancelled();
    }
  });
  say("root", "nursery closed: counter-1 cancelled and reaped");
}

}  // namespace

int main(int argc, char** argv) {
  harrow::Implementations implementations;
  implementations.add<CounterImpl>("counter");
  bool serve = false;
  for (int i = 1; i < argc; ++i) {
    if (kj::StringPtr(argv[i]) == "--serve") serve = true;
  }
  return harrow::main(argc, argv, implementations,
                      [serve](harrow::Actor& root) { return run(root, serve); });
}
