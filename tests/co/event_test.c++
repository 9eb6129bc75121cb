// Event: trio's Event over KJ promises.

#include <harrow/co/event.h>
#include <harrow/co/nursery.h>

#include "tests/test_util.h"

#include <string>
#include <vector>

namespace harrow {
namespace {

using EventTest = testing::EventLoopTest;

TEST_F(EventTest, SetWakesEveryWaiterAndLaterWaitsPassAtOnce) {
  Event event;
  std::vector<std::string> log;
  auto block = openNursery([&](TaskNursery& n) -> Co<void> {
    for (auto name : {"a", "b"}) {
      n.startSoon([&, name]() -> Co<void> {
        co_await event.wait();
        log.push_back(name);
      });
    }
    co_return;
  });
  waitScope.poll();
  EXPECT_TRUE(log.empty()) << "nobody may pass before set()";
  EXPECT_FALSE(event.isSet());
  event.set();
  event.set();  // idempotent
  block.wait(waitScope);
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(event.isSet());
  event.wait().wait(waitScope);  // set: passes at once
}

TEST_F(EventTest, AWaitIsACheckpointForACancelledScope) {
  Event event;
  bool passed = false;
  auto block = openNursery([&](TaskNursery& n) -> Co<void> {
    n.startSoon([&]() -> Co<void> {
      co_await event.wait();
      passed = true;
    });
    n.cancel();
    co_return;
  });
  block.wait(waitScope);
  EXPECT_FALSE(passed);
  event.set();  // nobody is left waiting: harmless
}

}  // namespace
}  // namespace harrow
