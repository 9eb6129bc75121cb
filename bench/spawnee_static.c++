// The child spawn_bench's 10,000-actor rows exec (SpawnOptions::executable): a Spawnee built as
// a user's program is by default (harrow_cc_binary: fully static), so that 10,000 idle children
// cost about 0.2 MB of private memory each instead of the 1 MB or more of spawn_bench's own PIE
// (bench/README.md, idle_bench). It answers ping; grow is spawn_bench's own (trees use it).
//
//   bazel build -c opt //bench:spawnee_static   (a data dependency of //bench:spawn_bench)

#include "bench/spawn.capnp.harrow.h"
#include <harrow/main.h>

#include <kj/debug.h>

#include <unistd.h>

namespace {

class SpawneeImpl final : public SpawneeActor::Server {
public:
  harrow::Co<void> ping(PingCall call) override {
    call.results().setPid(getpid());
    co_return;
  }
  harrow::Co<void> grow(GrowCall) override {
    KJ_FAIL_REQUIRE("spawnee_static answers ping only: trees run spawn_bench's own Spawnee");
  }
};

}  // namespace

int main(int argc, char** argv) {
  harrow::Implementations implementations;
  implementations.add<SpawneeImpl>("spawnee");
  return harrow::main(argc, argv, implementations,
                      [](harrow::Actor&) -> kj::Promise<void> { return kj::READY_NOW; });
}
