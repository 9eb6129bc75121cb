// A supervisor keeping a flaky worker alive (Erlang/OTP's one_for_one; tractor has none).
//
//   bazel run //examples/supervisor -- --jobs=10
//
// The worker, an actor in its own process, crashes on every third call it gets. The root opens a
// supervisor (harrow::openActorSupervisor) with the worker as a permanent child and sends it
// jobs through the supervisor's current portal, sup.portal<FlakyActor>("worker"). When the
// worker crashes under a call, that call fails with harrow.ActorRestarted: the supervisor has
// started a new instance under the same name, and the root asks for the new portal. The root
// repeats the job there, as squaring a number is safe to do twice; harrow never repeats a call
// by itself (a crash can come after the call took effect).
//
// Restart intensity: OTP's default, 1 restart in 5 s, would give up at the second crash (these
// come milliseconds apart), so this supervisor allows 10 restarts in 5 s. Run with
// --intensity=1 to see it give up: the program then fails with harrow.RestartIntensity.
//
// Flags (all optional): --jobs=N (default 10), --intensity=N (default 10).

#include <harrow/harrow.h>
#include "examples/supervisor/flaky.capnp.harrow.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

namespace {

using harrow::Co;

constexpr uint32_t CRASH_EVERY = 3;

void say(kj::StringPtr who, kj::StringPtr what) {
  printf("[%s %d] %s\n", who.cStr(), getpid(), what.cStr());
  fflush(stdout);
}

// Runs in the child process; every instance counts its own calls.
class FlakyImpl final : public FlakyActor::Server {
public:
  Co<void> square(SquareCall call) override {
    if (++calls % CRASH_EVERY == 0) {
      say("worker", kj::str("call ", calls, ": crashing"));
      _exit(42);
    }
    int64_t n = call.params().getN();
    call.results().setSquare(n * n);
    call.results().setPid(getpid());
    co_return;
  }

private:
  uint32_t calls = 0;
};

uint32_t flag(int argc, char** argv, kj::StringPtr name, uint32_t otherwise) {
  auto prefix = kj::str("--", name, "=");
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (arg.startsWith(prefix)) return static_cast<uint32_t>(atoi(arg.slice(prefix.size()).cStr()));
  }
  return otherwise;
}

// Runs in the root process.
Co<void> run(harrow::Actor& root, uint32_t jobs, uint32_t intensity) {
  harrow::SupervisorOptions options{
      .strategy = harrow::Strategy::ONE_FOR_ONE, .intensity = intensity, .period = 5 * kj::SECONDS};
  co_await harrow::openActorSupervisor(root, [&](harrow::ActorSupervisor& sup) -> Co<void> {
    co_await sup.startChild<FlakyImpl>("worker", {.restart = harrow::Restart::PERMANENT});
    for (uint32_t job = 1; job <= jobs;) {
      auto worker = co_await sup.portal<FlakyActor>("worker");  // the current instance
      uint32_t generation = sup.generation("worker");
      int64_t square = 0;
      int32_t pid = 0;
      auto failure = co_await harrow::errorOf([&]() -> Co<void> {
        auto answer = co_await worker.square(job);
        square = answer->getSquare();
        pid = answer->getPid();
      });
      KJ_IF_MAYBE(e, failure) {
        // Anything else (the supervisor giving up cancels this body) is not ours to handle.
        if (!harrow::is(*e, harrow::ErrorKind::ACTOR_RESTARTED)) {
          kj::throwFatalException(kj::mv(*e));
        }
        say("root", kj::str("job ", job, " failed: ", e->getDescription()));
        say("root", kj::str("retrying job ", job, " on the new instance"));
        continue;
      }
      say("root", kj::str("job ", job, ": ", job, "^2 = ", square, " (worker pid ", pid,
                          ", generation ", generation, ")"));
      ++job;
    }
    say("root", kj::str("done: ", jobs, " jobs, ", sup.restartCount(), " restarts"));
  }, options);
  say("root", "supervisor closed: the worker cancelled and reaped");
}

}  // namespace

int main(int argc, char** argv) {
  harrow::Implementations impls;
  impls.add<FlakyImpl>("flaky");
  uint32_t jobs = flag(argc, argv, "jobs", 10);
  uint32_t intensity = flag(argc, argv, "intensity", 10);
  return harrow::main(argc, argv, impls, [&](harrow::Actor& root) -> kj::Promise<void> {
    return run(root, jobs, intensity);
  });
}
