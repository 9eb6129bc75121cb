// Deadlines across calls, between two actors of one process (docs/PROTOCOL.md, "Deadlines"): a call
// carries what remains of the caller's deadline, the handler runs under it, the calls the handler
// makes inherit the smaller of theirs and its own, and the callee's expiry reaches the caller as
// the caller's own deadline passing.

#include <harrow/actor/actor.h>
#include <harrow/co/nursery.h>
#include <harrow/typed/typed.h>
#include "tests/engine/probe.capnp.h"
#include "tests/event_log.h"

#include "tests/engine/serve_pair.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/timer.h>

#include <string>

namespace harrow {
namespace {

using probe::Count;
using probe::Empty;
using probe::Item;
using probe::Words;

constexpr uint64_t DEADLINE_ID = 0xdead1;
enum Method : uint16_t { REPORT, NESTED, HANG, ENDLESS, ECHO_ITEMS };

// "none", or what remained of the handler's deadline, in nanoseconds.
kj::String remainingText() {
  KJ_IF_MAYBE(deadline, currentDeadline()) {
    return kj::str(deadline->remaining() / kj::NANOSECONDS);
  }
  return kj::str("none");
}

class DeadlineServer final : public ActorServer {
public:
  explicit DeadlineServer(kj::Timer& timer) : timer(timer) {}

  testing::EventLog events;

  uint64_t interfaceId() const override { return DEADLINE_ID; }
  kj::StringPtr interfaceName() const override { return "Deadline"; }
  kj::Maybe<MethodKind> methodKind(uint16_t id) const override {
    switch (id) {
      case REPORT: case NESTED: case HANG: return MethodKind::CALL;
      case ENDLESS: return MethodKind::STREAM;
      case ECHO_ITEMS: return MethodKind::CONTEXT;
    }
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t id) const override { return "m"; }

  Co<void> dispatch(uint16_t id, IncomingTask& task) override {
    switch (id) {
      case REPORT: return report(ServerCall<Words, Words>(task));
      case NESTED: return nested(ServerCall<Count, Words>(task));
      case HANG: return hang(ServerCall<Empty, Empty>(task));
      case ENDLESS: return endless(ServerStream<Empty, Item>(task));
      case ECHO_ITEMS: return echoItems(ServerContext<Empty, Empty, Empty, Item, Item>(task));
    }
    KJ_UNREACHABLE;
  }

  // The deadline the handler runs under, as it sees it.
  Co<void> report(ServerCall<Words, Words> call) {
    call.results().setText(remainingText());
    co_return;
  }

  // Calls report back on the caller (a nested call), under a failAfter of its own of n ms (none
  // for 0), and returns what the nested handler saw.
  Co<void> nested(ServerCall<Count, Words> call) {
    uint32_t ms = call.params().getN();
    kj::String seen;
    auto ask = [&]() -> Co<void> {
      auto reply = co_await callMethod<Words, Words>(call.caller(), DEADLINE_ID, REPORT,
                                                     [](Words::Builder) {});
      seen = kj::str(reply->getText());
    };
    if (ms > 0) {
      co_await failAfter(timer, ms * kj::MILLISECONDS, ask);
    } else {
      co_await ask();
    }
    call.results().setText(seen);
  }

  Co<void> hang(ServerCall<Empty, Empty>) {
    events.add("hang started");
    try {
      co_await kj::Promise<void>(kj::NEVER_DONE);
    } catch (const kj::Exception& e) {
      events.add(isCancelled(e) ? "hang ended: cancelled" : "hang ended: failed");
      throw;
    }
  }

  Co<void> endless(ServerStream<Empty, Item> call) {
    events.add("endless started");
    try {
      for (uint32_t i = 0;; ++i) {
        co_await call.yield([&](Item::Builder item) { item.setI(i); });
      }
    } catch (const kj::Exception& e) {
      events.add(isCancelled(e) ? "endless ended: cancelled" : "endless ended: failed");
      throw;
    }
  }

  // A context that sends each item it receives back, until the caller stops.
  Co<void> echoItems(ServerContext<Empty, Empty, Empty, Item, Item> ctx) {
    co_await ctx.started([](Empty::Builder) {});
    co_await ctx.openStream([&](MsgStream<Item, Item>& stream) -> Co<void> {
      while (auto item = co_await stream.receive()) {
        uint32_t i = item->getI();
        co_await stream.send([&](Item::Builder b) { b.setI(i); });
      }
    });
  }

private:
  kj::Timer& timer;
};

class DeadlineTest : public testing::TwoActorTest<> {
protected:
  ~DeadlineTest() noexcept override {}

  DeadlineServer* server = nullptr;
  DeadlineServer* client = nullptr;  // the client serves too: nested calls come back to it

  DeadlineTest() {
    auto owned = kj::heap<DeadlineServer>(serverActor.timer());
    server = owned.get();
    serverActor.addServer(kj::mv(owned));
    auto own = kj::heap<DeadlineServer>(clientActor.timer());
    client = own.get();
    clientActor.addServer(kj::mv(own));
  }

  // `guard`: under a failAfter of 20 s (a failure guard only: every test ends long before).
  void run(kj::Function<kj::Promise<void>(Peer& peer)> body, bool guard = true) {
    auto peers = testing::handshakeOverPipe(io, clientActor, serverActor);
    serve(peers, [&](Peer& peer) -> kj::Promise<void> {
      if (!guard) return body(peer);
      return failAfter(clientActor.timer(), 20 * kj::SECONDS, [&]() { return body(peer); });
    });
  }

  kj::Timer& timer() { return clientActor.timer(); }
};

Co<kj::String> reportOf(Peer& peer) {
  auto reply = co_await callMethod<Words, Words>(peer, DEADLINE_ID, REPORT, [](Words::Builder) {});
  co_return kj::str(reply->getText());
}

int64_t nanos(kj::StringPtr text) { return text.parseAs<int64_t>(); }

constexpr int64_t MS = 1000000;  // nanoseconds

// The handler runs under what remained of the caller's deadline: at most the caller's budget,
// and not much less (the slack covers a loaded machine, not the protocol).
TEST_F(DeadlineTest, DeadlinePropagatesAsRemainingTime) {
  run([&](Peer& peer) -> Co<void> {
    kj::String seen;
    co_await moveOnAfter(timer(), 5 * kj::SECONDS, [&]() -> Co<void> {
      seen = co_await reportOf(peer);
    });
    EXPECT_NE(std::string(seen.cStr()), "none");
    EXPECT_LE(nanos(seen), 5000 * MS);
    EXPECT_GT(nanos(seen), 4000 * MS);
  });
}

// The guard of run() is itself a deadline: a call outside any scope of the test's own still
// carries it. A shield keeps the deadlines outside it out; nothing at all around: none.
TEST_F(DeadlineTest, NoDeadlineMeansNone) {
  run([&](Peer& peer) -> Co<void> {
    kj::String shieldedSeen;
    co_await shielded([&]() -> Co<void> { shieldedSeen = co_await reportOf(peer); });
    EXPECT_EQ(std::string(shieldedSeen.cStr()), "none");
    auto guarded = co_await reportOf(peer);
    EXPECT_LE(nanos(guarded), 20000 * MS);
  });
}

// A budget beyond what a callee accepts (2^62 ns, about 146 years) is no deadline there: the
// callee's clock arithmetic stays in range whatever a peer sends.
TEST_F(DeadlineTest, AnAbsurdBudgetIsNoDeadline) {
  run([&](Peer& peer) -> Co<void> {
    kj::String seen;
    co_await shielded([&]() -> Co<void> {
      co_await moveOnAfter(timer(), 200ll * 365 * 24 * 3600 * kj::SECONDS, [&]() -> Co<void> {
        seen = co_await reportOf(peer);
      });
    });
    EXPECT_EQ(std::string(seen.cStr()), "none");
  });
}

// Without any scope with a deadline around the call: no deadline reaches the handler.
TEST_F(DeadlineTest, NoScopeMeansNone) {
  kj::String bare;
  run([&](Peer& peer) -> Co<void> { bare = co_await reportOf(peer); }, /*guard=*/false);
  EXPECT_EQ(std::string(bare.cStr()), "none");
}

// A handler's own call carries the smaller of the deadline it was given and its own scope's.
TEST_F(DeadlineTest, NestedCallInheritsTheSmaller) {
  run([&](Peer& peer) -> Co<void> {
    auto nestedWith = [&](uint32_t ownMs) -> Co<kj::String> {
      auto reply = co_await callMethod<Count, Words>(peer, DEADLINE_ID, NESTED,
          [&](Count::Builder p) { p.setN(ownMs); });
      co_return kj::str(reply->getText());
    };
    kj::String inherited, own, onlyOwn;
    // The caller's 2 s is smaller than the handler's own 60 s: the nested call gets the 2 s.
    co_await moveOnAfter(timer(), 2 * kj::SECONDS, [&]() -> Co<void> {
      inherited = co_await nestedWith(60000);
    });
    // The handler's own 1 s is smaller than the caller's 10 s: the nested call gets the 1 s.
    co_await moveOnAfter(timer(), 10 * kj::SECONDS, [&]() -> Co<void> {
      own = co_await nestedWith(1000);
    });
    // Only the handler's own.
    co_await shielded([&]() -> Co<void> { onlyOwn = co_await nestedWith(1500); });
    EXPECT_LE(nanos(inherited), 2000 * MS);
    EXPECT_GT(nanos(inherited), 1000 * MS);
    EXPECT_LE(nanos(own), 1000 * MS);
    EXPECT_GT(nanos(own), 500 * MS);
    EXPECT_LE(nanos(onlyOwn), 1500 * MS);
    EXPECT_GT(nanos(onlyOwn), 1000 * MS);
  });
}

// The caller's failAfter raises DeadlineExceeded; the handler was cancelled, once.
TEST_F(DeadlineTest, ExpiryCancelsTheHandlerAndTheCallerGetsDeadlineExceeded) {
  run([&](Peer& peer) -> Co<void> {
    auto start = timer().now();
    kj::Maybe<kj::Exception> raised;
    try {
      co_await failAfter(timer(), 50 * kj::MILLISECONDS, [&]() -> Co<void> {
        co_await callMethod<Empty, Empty>(peer, DEADLINE_ID, HANG, [](Empty::Builder) {});
      });
    } catch (...) {
      raised = currentException();
    }
    auto& e = KJ_ASSERT_NONNULL(raised);
    EXPECT_TRUE(is(e, ErrorKind::DEADLINE_EXCEEDED)) << e.getDescription().cStr();
    EXPECT_LT(timer().now() - start, 2 * kj::SECONDS);
    co_await server->events.waitFor("hang ended");
    EXPECT_EQ(server->events.entries().size(), 2u);
    EXPECT_EQ(std::string(server->events.entries()[1].cStr()), "hang ended: cancelled");
    // moveOnAfter moves on, silently.
    bool cut = co_await moveOnAfter(timer(), 50 * kj::MILLISECONDS, [&]() -> Co<void> {
      co_await callMethod<Empty, Empty>(peer, DEADLINE_ID, HANG, [](Empty::Builder) {});
    });
    EXPECT_TRUE(cut);
  });
}

// The callee's expiry reported before the caller's own timer fires (here the caller's deadline
// is on a timer the test advances by hand) is not an error: the task waits for the caller's own
// deadline, which then ends it in the scope's cancellation, as failAfter and moveOnAfter expect.
// A callee cannot cut the caller's scope short. Calls and streams alike.
TEST_F(DeadlineTest, CalleesExpiryWaitsForTheCallersOwnDeadline) {
  run([&](Peer& peer) -> Co<void> {
    kj::TimerImpl callerClock(kj::origin<kj::TimePoint>());
    auto expect = [&](kj::StringPtr method, kj::Function<kj::Promise<void>()> body) -> Co<void> {
      CancelScope scope;
      scope.setDeadline(callerClock, callerClock.now() + 30 * kj::MILLISECONDS);
      bool ended = false;
      co_await openNursery([&](TaskNursery& n) -> Co<void> {
        n.startSoon([&]() -> Co<void> {
          co_await scope.run(kj::mv(body));
          ended = true;
        });
        // The callee's own 30 ms pass on the real clock; its handler is cancelled...
        auto entry = co_await server->events.waitFor(kj::str(method, " ended"));
        EXPECT_EQ(std::string(entry.cStr()), kj::str(method, " ended: cancelled").cStr());
        // ...and its deadlineExceeded has reached us: the channel is ordered, and the callee
        // sent it before it read this call's start.
        co_await reportOf(peer);
        EXPECT_FALSE(ended);
        EXPECT_FALSE(scope.cancelCalled()) << "the callee's clock ended the caller's scope";
        callerClock.advanceTo(callerClock.now() + 30 * kj::MILLISECONDS);  // the caller's own
      });
      EXPECT_TRUE(ended);
      EXPECT_TRUE(scope.cancelledCaught());
      EXPECT_TRUE(scope.deadlineExpired());
    };
    co_await expect("hang", [&]() -> Co<void> {
      co_await callMethod<Empty, Empty>(peer, DEADLINE_ID, HANG, [](Empty::Builder) {});
      ADD_FAILURE() << "the call returned";
    });
    uint32_t items = 0;
    co_await expect("endless", [&]() {
      return streamMethod<Empty, Item>(peer, DEADLINE_ID, ENDLESS, [](Empty::Builder) {},
          [&](ReceiveStream<Item>& stream) -> Co<void> {
            while (auto item = co_await stream.receive()) ++items;
            ADD_FAILURE() << "the stream ended";
          });
    });
    EXPECT_GT(items, 0u);
  });
}

// A deadline the callee reports that is no longer the caller's (the scope's deadline moved after
// the call started) is an ordinary remote error of kind deadlineExceeded.
TEST_F(DeadlineTest, AMovedDeadlineIsNotExpiredByTheCallee) {
  run([&](Peer& peer) -> Co<void> {
    kj::TimerImpl frozen(kj::origin<kj::TimePoint>());
    CancelScope scope;
    scope.setDeadline(frozen, frozen.now() + 30 * kj::MILLISECONDS);
    kj::Maybe<kj::Exception> raised;
    co_await scope.run([&]() -> Co<void> {
      auto call = callMethod<Empty, Empty>(peer, DEADLINE_ID, HANG, [](Empty::Builder) {});
      scope.setDeadline(frozen, frozen.now() + 60 * kj::SECONDS);
      try {
        co_await kj::mv(call);
      } catch (...) {
        raised = currentException();
      }
    });
    EXPECT_FALSE(scope.cancelledCaught());
    auto& e = KJ_ASSERT_NONNULL(raised);
    EXPECT_TRUE(isRemoteActorError(e)) << e.getDescription().cStr();
    auto info = KJ_ASSERT_NONNULL(remoteErrorInfo(e));
    EXPECT_EQ(info.kind, wire::ErrorKind::DEADLINE_EXCEEDED);
    EXPECT_EQ(std::string(info.type.cStr()), "harrow.DeadlineExceeded");
  });
}

// Deadlines from 0 to 3 ms in steps of 50 us on every kind of task (a call that never returns, a
// stream that never ends, a context streaming both ways): each expires at another point of the
// exchange (before the start leaves, in flight, while the handler waits, while items and credit
// cross, while the callee's report of its own expiry crosses the caller's cancel). Every one
// must end by the caller's deadline (run()'s guard fails the test otherwise), and leave the
// channel working.
TEST_F(DeadlineTest, ExpiryAtAnyPointEndsEveryKindOfTask) {
  run([&](Peer& peer) -> Co<void> {
    uint32_t runs = 0;
    for (int64_t us = 0; us <= 3000; us += 50) {
      auto budget = us * kj::MICROSECONDS;
      co_await moveOnAfter(timer(), budget, [&]() -> Co<void> {
        co_await callMethod<Empty, Empty>(peer, DEADLINE_ID, HANG, [](Empty::Builder) {});
      });
      co_await moveOnAfter(timer(), budget, [&]() -> Co<void> {
        co_await streamMethod<Empty, Item>(
            peer, DEADLINE_ID, ENDLESS, [](Empty::Builder) {},
            [](ReceiveStream<Item>& items) -> Co<void> {
              while (co_await items.receive()) {}
            });
      });
      co_await moveOnAfter(timer(), budget, [&]() -> Co<void> {
        co_await contextMethod<Empty, Empty, Empty, Item, Item>(
            peer, DEADLINE_ID, ECHO_ITEMS, [](Empty::Builder) {},
            [](CallerContext<Empty, Item, Item>& ctx, Empty::Reader) -> Co<void> {
              co_await ctx.openStream([](MsgStream<Item, Item>& stream) -> Co<void> {
                for (uint32_t i = 0;; ++i) {
                  co_await stream.send([&](Item::Builder b) { b.setI(i); });
                  if (!(co_await stream.receive())) break;
                }
              });
            });
      });
      ++runs;
    }
    EXPECT_EQ(runs, 61u);
    auto report = co_await reportOf(peer);  // the channel carries on (under run()'s guard)
    EXPECT_GT(nanos(report), 0);
  });
}

}  // namespace
}  // namespace harrow
