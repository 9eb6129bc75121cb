// A deadline crossing two process boundaries: the root calls a child under failAfter(50 ms), the
// child's handler calls its own child (the root's grandchild), whose handler blocks. The root
// gets DeadlineExceeded promptly (not a RemoteActorError), the grandchild's handler saw the
// deadline arrive and was cancelled, and no process is left afterwards.
//
// This binary is a harrow program: run with --harrow-child it is a Relay actor (relay.capnp).

#include <harrow/spawn/actor_nursery.h>
#include <harrow/spawn/forkserver.h>
#include <harrow/main.h>
#include "tests/spawn/deadline/relay.capnp.harrow.h"
#include "tests/event_log.h"
#include "tests/root_test.h"
#include "tests/test_main.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <unistd.h>

#include <string>
#include <vector>

namespace harrow {
namespace {

using Grown = RelayActor::Schema::Grown;

kj::String how(const kj::Exception& e) {
  if (isCancelled(e)) return kj::str("cancelled");
  return kj::str("failed: ", e.getDescription());
}

// ---------------------------------------------------------------------------------------------
// The child side.

class RelayImpl final : public RelayActor::Server {
public:
  RelayImpl() : name(kj::str(currentActor().identity().name)) {}

  Co<void> grow(GrowCall call) override {
    uint32_t depth = call.params().getDepth();
    std::vector<int32_t> pids{getpid()};
    auto sendStarted = [&]() {
      return call.started([&](Grown::Builder grown) {
        auto list = grown.initPids(pids.size());
        for (size_t i = 0; i < pids.size(); ++i) list.set(i, pids[i]);
      });
    };
    if (depth == 0) {
      co_await sendStarted();
      co_await kj::Promise<void>(kj::NEVER_DONE);
    }
    co_await openActorNursery([&](ActorNursery& nursery) -> Co<void> {
      auto child = co_await nursery.startActor<RelayActor>(kj::str(name, "+"), "relay");
      below = child;
      co_await child.grow(depth - 1, [&](auto&, Grown::Reader grown) -> Co<void> {
        for (auto pid : grown.getPids()) pids.push_back(pid);
        co_await sendStarted();
        co_await kj::Promise<void>(kj::NEVER_DONE);
      });
    });
  }

  Co<void> block(BlockCall) override {
    KJ_IF_MAYBE(next, below) {
      events.add("relay started");
      try {
        co_await next->block();
      } catch (...) {
        events.add(kj::str("relay ended: ", how(currentException())));
        throw;
      }
      events.add("relay ended: returned");
      co_return;
    }
    kj::String left = kj::str("none");
    KJ_IF_MAYBE(deadline, currentDeadline()) {
      left = kj::str(deadline->remaining() / kj::NANOSECONDS);
    }
    events.add(kj::str("block started: deadline ", left));
    try {
      co_await kj::Promise<void>(kj::NEVER_DONE);
    } catch (...) {
      events.add(kj::str("block ended: ", how(currentException())));
      throw;
    }
  }

  Co<void> waitFor(WaitForCall call) override {
    uint32_t depth = call.params().getDepth();
    if (depth == 0) {
      call.results().setEntry(co_await events.waitFor(call.params().getPrefix()));
      co_return;
    }
    auto& next = KJ_REQUIRE_NONNULL(below, "no actor below", name);
    auto entry = co_await next.waitFor(call.params().getPrefix(), depth - 1);
    call.results().setEntry(entry->getEntry());
  }

private:
  kj::String name;
  kj::Maybe<RelayActor::Portal> below;
  testing::EventLog events;
};

Implementations& implementations() {
  static Implementations* impls = []() {
    auto* i = new Implementations;
    i->add<RelayImpl>("relay");
    return i;
  }();
  return *impls;
}

// ---------------------------------------------------------------------------------------------
// The root side.

constexpr kj::Duration GRACEFUL_EXIT = 10 * kj::SECONDS;

class DeadlineTreeTest : public testing::RootTest<> {
protected:
  DeadlineTreeTest()
      : RootTest("deadline-root", implementations(),
                 {.guard = 30 * kj::SECONDS, .watchdogSeconds = 90}) {}
};

TEST_F(DeadlineTreeTest, FailAfterAtTheRootCancelsTheGrandchildsHandler) {
  kj::Maybe<kj::Exception> raised;
  kj::Duration took = 0 * kj::NANOSECONDS;
  kj::String started, ended, relayed;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      auto child = co_await nursery.startActor<RelayActor>("relay", "relay");
      co_await child.grow(
          1, [&](RelayActor::Portal::GrowContext& context, Grown::Reader grown) -> Co<void> {
            for (auto pid : grown.getPids()) known.insert(pid);
            auto start = root.timer().now();
            try {
              co_await failAfter(root.timer(), 50 * kj::MILLISECONDS,
                                 [&]() -> Co<void> { co_await child.block(); });
            } catch (...) {
              raised = currentException();
            }
            took = root.timer().now() - start;
            started = kj::str((co_await child.waitFor("block started", 1))->getEntry());
            ended = kj::str((co_await child.waitFor("block ended", 1))->getEntry());
            relayed = kj::str((co_await child.waitFor("relay ended", 0))->getEntry());
            context.cancel();  // the chain is torn down: the grandchild first, by its parent
          });
    }, {GRACEFUL_EXIT});
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << kj::str(*e).cStr();
  EXPECT_EQ(known.size(), 2u);

  // The root's own deadline: DeadlineExceeded, promptly, and not a remote error.
  KJ_IF_MAYBE(e, raised) {
    EXPECT_TRUE(is(*e, ErrorKind::DEADLINE_EXCEEDED)) << kj::str(*e).cStr();
    EXPECT_FALSE(isRemoteActorError(*e)) << kj::str(*e).cStr();
  } else {
    ADD_FAILURE() << "the blocked call returned";
  }
  EXPECT_GE(took, 50 * kj::MILLISECONDS);
  EXPECT_LT(took, 1 * kj::SECONDS) << "DeadlineExceeded came late";

  // Two processes down, the handler ran under what remained of the root's 50 ms...
  std::string startedText = started.cStr();
  constexpr kj::StringPtr PREFIX = "block started: deadline "_kj;
  ASSERT_EQ(startedText.rfind(PREFIX.cStr(), 0), 0u) << startedText;
  std::string left = startedText.substr(PREFIX.size());
  ASSERT_NE(left, "none") << "no deadline reached the grandchild";
  EXPECT_GT(std::stoll(left), 0);
  EXPECT_LE(std::stoll(left), 50000000);
  // ...and was cancelled; its caller, the child's handler, too.
  EXPECT_EQ(std::string(ended.cStr()), "block ended: cancelled");
  EXPECT_EQ(std::string(relayed.cStr()), "relay ended: cancelled");
}

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  return harrow::testing::multiProcessTestMain(argc, argv, harrow::implementations(), "deadline_tree_test");
}
