// harrow::main: the entry point of a harrow program. The same binary is both the root of the
// actor tree and, re-executed by its parent, every child actor.
//
//   int main(int argc, char** argv) {
//     harrow::Implementations impls;
//     impls.add<CounterImpl>("counter");
//     return harrow::main(argc, argv, impls, [&](harrow::Actor& root) -> harrow::Co<void> {
//       co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> harrow::Co<void> {
//         ...
//       });
//     });
//   }
//
// The root reads the --harrow-* flags of <harrow/flags.h>'s table (and removes nothing: the
// program may parse its own): each becomes the HARROW_* variable beside it, which every child
// inherits. `--harrow-help` prints the table and runs nothing; docs/REFERENCE.md says what each
// does. A setting that is refused (an unknown log format, say) ends the root at once, with 1.
// Opening a second root in one process is an error.
//
// In the root, `body` runs inside the root actor (tractor: open_root_actor) and main returns 0
// when it succeeds, 1 (after printing the error) when it fails. In a child, main serves the
// implementation the parent asked for until it is cancelled or its parent goes away; `body`
// does not run.

#pragma once

#include <harrow/actor/actor.h>
#include <harrow/spawn/forkserver.h>

namespace harrow {

int main(int argc, char** argv, Implementations& implementations,
         kj::Function<kj::Promise<void>(Actor& root)> body);

// Starts this process's zygote (<harrow/spawn/forkserver.h>) for a program that serves its children
// with `implementations` in harrow::main's child mode. harrow::main calls it itself; programs
// that spawn actors without harrow::main (tests, benchmarks) call it before any thread exists.
void startForkServer(Implementations& implementations);

}  // namespace harrow
