// Shared by the unit tests: an event-loop fixture and helpers to observe teardown and errors.

#pragma once

#include <harrow/co/cancel_scope.h>

#include <gtest/gtest.h>
#include <kj/async.h>
#include <kj/debug.h>
#include <kj/function.h>
#include <kj/timer.h>

#include <string>

namespace harrow::testing {

class EventLoopTest : public ::testing::Test {
protected:
  ~EventLoopTest() noexcept override {}

  kj::EventLoop loop;
  kj::WaitScope waitScope{loop};
  // Time only moves when a test advances it: deadlines are tested without sleeping.
  kj::TimerImpl timer{kj::origin<kj::TimePoint>()};
  // As in an actor: the scopes' deadlines on `timer` share one timer entry.
  DeadlineQueue deadlines{timer};

  void advance(kj::Duration d) {
    timer.advanceTo(timer.now() + d);
    waitScope.poll();
  }
};

// Runs `fn` when destroyed: observes what cancellation tears down, and in which order.
struct OnDestroy {
  kj::Function<void()> fn;
  ~OnDestroy() noexcept(false) { fn(); }
};

// The description of the exception `fn` throws; fails the test if it throws none.
template <typename Fn>
std::string thrownBy(Fn&& fn) {
  try {
    fn();
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
  ADD_FAILURE() << "expected an exception";
  return "";
}

}  // namespace harrow::testing
