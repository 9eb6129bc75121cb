// The fixture of a test whose body runs in a root actor that starts processes:
//
//   class PoolTest : public harrow::testing::RootTest<> {
//   protected:
//     PoolTest() : RootTest("pool-test", implementations()) {}
//   };
//   TEST_F(PoolTest, ...) {
//     auto failure = runRoot([&]() -> Co<void> { ... known.insert(childPid); ... });
//     EXPECT_EQ(failure, nullptr);
//   }
//
// What every such test needs, written once: a root actor (current on this thread) on the test's
// own event loop; runRoot(), the body under a failure guard (an error ends it, typed, instead of
// a hang); the alarm() watchdog, armed for each test, for a hang past every guard; and afterwards
// the check that nothing is left: no child of this process (running or zombie) but the
// forkserver's zygote, which lives as long as the test process, and none of the processes the
// test learnt of in `known` (orphans of a grandchild, say). `Base` is ::testing::Test or a
// ::testing::TestWithParam<T>.

#pragma once

#include <harrow/actor/actor.h>
#include <harrow/co/cancel_scope.h>
#include <harrow/spawn/forkserver.h>

#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <set>

#include "tests/processes.h"

namespace harrow::testing {

template <typename Base = ::testing::Test>
class RootTest : public Base {
protected:
  struct Guards {
    kj::Duration guard = 60 * kj::SECONDS;  // runRoot's body ends with a timeout error then
    unsigned watchdogSeconds = 150;         // if even the guard does not end it (SIGALRM)
  };

  RootTest(kj::StringPtr name, kj::Maybe<Implementations&> implementations = nullptr,
           Guards guards = {})
      : root(io, ActorIdentity::random(name), implementations), guards(guards) {}
  ~RootTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  Actor root;
  CurrentActorScope current{root};
  std::set<pid_t> known;  // every process the test learnt of: none may outlive it

  void SetUp() override { alarm(guards.watchdogSeconds); }

  void TearDown() override {
    alarm(0);
    for (auto& line : leftBehind(known, 0, forkServerPid())) ADD_FAILURE() << line;
  }

  // Runs `body` as the root actor's body under the failure guard; returns what it raised.
  kj::Maybe<kj::Exception> runRoot(kj::Function<kj::Promise<void>()> body) {
    return kj::runCatchingExceptions([&]() {
      root.serve([&]() { return failAfter(root.timer(), guards.guard, kj::mv(body)); })
          .wait(io.waitScope);
    });
  }

private:
  Guards guards;
};

}  // namespace harrow::testing
