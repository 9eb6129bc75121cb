// The fixture of the security tests that run examples/multi_program's daemon as a program of its
// own (flood_test, programs_test, relay_test):
//
//   class FloodTest : public harrow::testing::DaemonTest {
//   protected:
//     FloodTest() : DaemonTest("flood") {}
//   };
//   TEST_F(FloodTest, ...) {
//     run([&]() -> Co<void> {
//       Program daemon(io, {daemonPath, "--harrow-registry=tcp:127.0.0.1:0", ...});
//       std::string registry = co_await ready(daemon);
//       ...
//     });
//   }
//
// Guarantees: a test's body runs under a 60 s failure guard (GUARD) and a failure in it is a test
// failure, not a crash; every process the test records in `known` (the daemon and its greeter, via
// ready()) must be gone at the end (leftBehind(), tests/processes.h); `dir`, a fresh directory
// under /tmp, is removed with what the test put there. daemonTestMain() is such a test's main().

#pragma once

#include <harrow/co/cancel_scope.h>
#include "tests/processes.h"
#include "tests/program.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <initializer_list>
#include <set>
#include <string>

namespace harrow::testing {

class DaemonTest : public ::testing::Test {
protected:
  static constexpr kj::Duration GUARD = 60 * kj::SECONDS;

  // `dir` is /tmp/harrow-NAME-test-XXXXXX, with `mode` (0755 where a process of another user
  // must reach what is in it).
  explicit DaemonTest(const char* name, mode_t mode = 0700) : dir(makeDirectory(name, mode)) {}
  ~DaemonTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::set<pid_t> known;
  std::string dir;

  void TearDown() override {
    for (auto& line : leftBehind(known)) ADD_FAILURE() << line;
    std::string command = "rm -rf '" + dir + "'";
    (void)!system(command.c_str());
  }

  // Runs `body` on the test's event loop under GUARD; what it throws is a test failure.
  void run(kj::Function<kj::Promise<void>()> body) {
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   failAfter(io.provider->getTimer(), GUARD, kj::mv(body)).wait(io.waitScope);
                 })) {
      ADD_FAILURE() << kj::str(*e).cStr();
    }
  }

  // The registry address a ready daemon reports; the daemon and its greeter are `known`.
  Co<std::string> ready(Program& program) {
    known.insert(program.getPid());
    auto line = co_await program.waitForLine("ready ");
    known.insert(std::stoi(field(line, "greeter-pid")));
    co_return field(line, "registry");
  }

private:
  static std::string makeDirectory(const char* name, mode_t mode) {
    std::string path = std::string("/tmp/harrow-") + name + "-test-XXXXXX";
    KJ_ASSERT(mkdtemp(path.data()) != nullptr);
    chmod(path.c_str(), mode);
    return path;
  }
};

// The main() of such a test: the watchdog and gtest set up, then `paths` set, in order, from the
// arguments Bazel passes (the programs' locations: `usage` names them). 2 for a wrong count.
inline int daemonTestMain(int argc, char** argv, const char* name, const char* usage,
                          std::initializer_list<const char**> paths) {
  kj::UnixEventPort::captureChildExit();
  installWatchdog(name);
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != int(paths.size()) + 1) {
    fprintf(stderr, "usage: %s %s\n", name, usage);
    return 2;
  }
  int i = 1;
  for (const char** path : paths) *path = argv[i++];
  return RUN_ALL_TESTS();
}

}  // namespace harrow::testing
