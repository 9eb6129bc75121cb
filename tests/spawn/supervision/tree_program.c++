// A small harrow program the supervision tests run as a real root process (they signal it and
// kill it): the root spawns a tree of Worker actors that stream forever, and prints
//
//   ready <pid> <pid> ...
//
// (every actor of the tree below the root) once every one of them is streaming. Then it consumes
// the streams until it is interrupted: SIGINT/SIGTERM make harrow::main cancel the tree in order
// and exit 128 + signal.
//
//   tree_program [--depth=N] [--width=N]   (defaults: depth 2, width 2)

#include <harrow/spawn/actor_nursery.h>
#include <harrow/main.h>
#include "tests/spawn/supervision/worker.capnp.harrow.h"
#include "tests/spawn/supervision/worker.h"

#include <stdio.h>
#include <stdlib.h>

#include <string>
#include <vector>

using harrow::Co;

int main(int argc, char** argv) {
  harrow::Implementations implementations;
  sup::registerWorker(implementations);

  uint32_t depth = 2, width = 2;
  bool child = argc > 1 && kj::StringPtr(argv[1]) == "--harrow-child";
  for (int i = 1; !child && i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (arg.startsWith("--depth=")) depth = atoi(arg.slice(8).cStr());
    if (arg.startsWith("--width=")) width = atoi(arg.slice(8).cStr());
  }

  return harrow::main(argc, argv, implementations, [&](harrow::Actor& root) -> Co<void> {
    co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& nursery) -> Co<void> {
      kj::Vector<WorkerActor::Portal> children;
      for (uint32_t i = 0; i < width; ++i) {
        children.add(co_await nursery.startActor<WorkerActor>(kj::str("w", i), "worker"));
      }
      std::vector<int32_t> pids;
      uint32_t up = 0;
      co_await harrow::openNursery([&](harrow::TaskNursery& streams) -> Co<void> {
        for (auto& each : children) {
          streams.startSoon([&, child = &each]() -> Co<void> {
            co_await child->endless(depth - 1, width,
                [&](WorkerActor::Portal::EndlessStream& ticks) -> Co<void> {
                  bool first = true;
                  while (auto tick = co_await ticks.receive()) {
                    if (!first) continue;
                    first = false;
                    for (auto pid : tick->getPids()) pids.push_back(pid);
                    if (++up < width) continue;
                    std::string line = "ready";
                    for (auto pid : pids) line += " " + std::to_string(pid);
                    printf("%s\n", line.c_str());
                    fflush(stdout);
                  }
                });
          });
        }
        co_return;
      });
    });
  });
}
