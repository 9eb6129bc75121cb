// The main() of a test binary whose tests spawn actors: the same binary, re-executed by a test's
// actor nursery, serves as the child (harrow::main's child mode, with the implementations the
// test registered); otherwise it runs the tests as roots do, with children reaped through the
// event loop, a zygote under HARROW_SPAWN=forkserver, and the watchdog.

#pragma once

#include "tests/processes.h"

#include <harrow/main.h>
#include <harrow/spawn/forkserver.h>

#include <gtest/gtest.h>
#include <kj/async-unix.h>

namespace harrow::testing {

inline int multiProcessTestMain(int argc, char** argv, Implementations& implementations,
                                const char* name) {
  if (argc > 1 && kj::StringPtr(argv[1]) == "--harrow-child") {
    return harrow::main(argc, argv, implementations,
                        [](Actor&) -> kj::Promise<void> { return kj::READY_NOW; });
  }
  // Before any thread exists: the tests' event loops reap children through SIGCHLD.
  kj::UnixEventPort::captureChildExit();
  // Under HARROW_SPAWN=forkserver the tests' roots fork their children through a zygote.
  if (wantsForkServer(/*isRoot=*/false)) startForkServer(implementations);
  KJ_DEFER(stopForkServer());
  installWatchdog(name);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

}  // namespace harrow::testing
