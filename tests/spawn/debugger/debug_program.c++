// A tree for the debugger tests (debugger_test.py drives it through a terminal):
//
//   debug_program --mode=abort|error|pause|ok [--leaves=N] [--pause-root] [--harrow-debug]
//
// --pause-root: the root calls harrow::pause() (in rootPauses) before it starts "mid".
// The root starts one Patient "mid", which starts N leaves (default 2) and runs each with the
// mode. The root prints "tree ready" once it has started "mid", and "tree done: <total>" if the
// tree succeeded; a failure is printed by harrow::main (exit status 1).

#include <harrow/harrow.h>
#include "tests/spawn/debugger/patient.capnp.harrow.h"

#include <kj/debug.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

namespace {

using harrow::Co;

// The leaves' failures, each in a function of its own that a debugger's backtrace names.
[[gnu::noinline]] void patientAborts() {
  fprintf(stderr, "[%s] aborting\n", harrow::currentActor().identity().name.cStr());
  abort();
}

[[gnu::noinline]] void patientRaises() {
  KJ_FAIL_REQUIRE("patient.Failed: the leaf failed on purpose");
}

[[gnu::noinline]] int64_t patientPauses() {
  fprintf(stderr, "[%s] pausing\n", harrow::currentActor().identity().name.cStr());
  harrow::pause();
  fprintf(stderr, "[%s] resumed\n", harrow::currentActor().identity().name.cStr());
  return getpid();
}

[[gnu::noinline]] void rootPauses() {
  harrow::pause();
  printf("root resumed\n");
  fflush(stdout);
}

class PatientImpl final : public PatientActor::Server {
public:
  Co<void> run(RunCall call) override {
    auto mode = kj::str(call.params().getMode());
    uint32_t leaves = call.params().getLeaves();
    if (leaves == 0) {
      if (mode == "abort") patientAborts();
      if (mode == "error") patientRaises();
      call.results().setTotal(mode == "pause" ? patientPauses() : getpid());
      co_return;
    }
    kj::StringPtr self = harrow::currentActor().identity().name;
    int64_t total = 0;
    kj::Vector<kj::Exception> errors;
    co_await harrow::openActorNursery([&](harrow::ActorNursery& nursery) -> Co<void> {
      kj::Vector<PatientActor::Portal> children;
      for (uint32_t i = 0; i < leaves; ++i) {
        children.add(co_await nursery.startActor<PatientImpl>(kj::str(self, ".", i)));
      }
      co_await harrow::openNursery([&](harrow::TaskNursery& calls) -> Co<void> {
        for (auto& each : children) {
          calls.startSoon([&, child = &each]() -> Co<void> {
            kj::Maybe<kj::Exception> error;
            try {
              auto result = co_await child->run([&](auto params) {
                params.setMode(mode);
                params.setLeaves(0);
              });
              total += result->getTotal();
            } catch (...) {
              error = harrow::currentException();
            }
            KJ_IF_MAYBE(e, error) {
              if (harrow::isCancelled(*e)) kj::throwFatalException(kj::mv(*e));
              errors.add(kj::mv(*e));
            }
          });
        }
        co_return;
      });
    });
    if (errors.size() > 0) kj::throwFatalException(harrow::makeMultiError(errors.releaseAsArray()));
    call.results().setTotal(total);
  }
};

}  // namespace

int main(int argc, char** argv) {
  harrow::Implementations implementations;
  implementations.add<PatientImpl>("patient");
  kj::String mode = kj::str("ok");
  uint32_t leaves = 2;
  bool pauseRoot = false;
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (arg.startsWith("--mode=")) mode = kj::str(arg.slice(7));
    if (arg.startsWith("--leaves=")) leaves = atoi(arg.slice(9).cStr());
    if (arg == "--pause-root") pauseRoot = true;
  }
  return harrow::main(argc, argv, implementations, [&](harrow::Actor& root) -> Co<void> {
    if (pauseRoot) rootPauses();
    co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& nursery) -> Co<void> {
      auto mid = co_await nursery.startActor<PatientImpl>("mid");
      printf("tree ready\n");
      fflush(stdout);
      auto result = co_await mid.run([&](auto params) {
        params.setMode(mode);
        params.setLeaves(leaves);
      });
      printf("tree done: %lld\n", static_cast<long long>(result->getTotal()));
      fflush(stdout);
    });
  });
}
