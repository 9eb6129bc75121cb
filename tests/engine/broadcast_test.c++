// Broadcast streams (runtime/typed/broadcast.h, MsgStream::subscribe): many local subscribers of
// one received stream, each with its own bounded buffer and its own answer to falling behind,
// over the real engine between two in-process actors (its credit is what BACKPRESSURE holds).

#include <harrow/actor/actor.h>
#include <harrow/co/event.h>
#include <harrow/co/nursery.h>
#include <harrow/typed/typed.h>
#include "tests/engine/probe.capnp.h"

#include "tests/engine/serve_pair.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <string>
#include <vector>

namespace harrow {
namespace {

using probe::Count;
using probe::Empty;
using probe::Item;
using probe::Words;

constexpr uint64_t PROBE_ID = 0x4242;
enum Method : uint16_t { ECHO, COUNT, ENDLESS, BROKEN, SESSION, RELAY };

// Served by both actors: the client's copy is the upstream the server's RELAY re-broadcasts.
class Source final : public ActorServer {
public:
  uint32_t endlessSent = 0;

  uint64_t interfaceId() const override { return PROBE_ID; }
  kj::StringPtr interfaceName() const override { return "Source"; }
  kj::Maybe<MethodKind> methodKind(uint16_t id) const override {
    switch (id) {
      case ECHO: return MethodKind::CALL;
      case COUNT: case ENDLESS: case BROKEN: case RELAY: return MethodKind::STREAM;
      case SESSION: return MethodKind::CONTEXT;
    }
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t) const override { return "m"; }

  Co<void> dispatch(uint16_t id, IncomingTask& task) override {
    switch (id) {
      case ECHO: return echo(ServerCall<Words, Words>(task));
      case COUNT: return count(ServerStream<Count, Item>(task));
      case ENDLESS: return endless(ServerStream<Empty, Item>(task));
      case BROKEN: return broken(ServerStream<Count, Item>(task));
      case SESSION: return session(ServerContext<Count, Count, Count, Item, Item>(task));
      case RELAY: return relay(ServerStream<Count, Item>(task));
    }
    KJ_UNREACHABLE;
  }

  Co<void> echo(ServerCall<Words, Words> call) {
    call.results().setText(call.params().getText());
    co_return;
  }
  Co<void> count(ServerStream<Count, Item> call) {
    for (uint32_t i = 0; i < call.params().getN(); ++i) {
      co_await call.yield([&](Item::Builder item) { item.setI(i); });
    }
  }
  Co<void> endless(ServerStream<Empty, Item> call) {
    for (;;) {
      co_await call.yield([&](Item::Builder item) { item.setI(endlessSent); });
      ++endlessSent;
    }
  }
  Co<void> broken(ServerStream<Count, Item> call) {
    for (uint32_t i = 0; i < call.params().getN(); ++i) {
      co_await call.yield([&](Item::Builder item) { item.setI(i); });
    }
    KJ_FAIL_REQUIRE("the source broke");
  }
  // Answers each item with the running sum.
  Co<void> session(ServerContext<Count, Count, Count, Item, Item> ctx) {
    uint32_t sum = ctx.params().getN();
    co_await ctx.started([&](Count::Builder b) { b.setN(sum); });
    co_await ctx.openStream([&](MsgStream<Item, Item>& stream) -> Co<void> {
      while (auto item = co_await stream.receive()) {
        sum += item->getI();
        co_await stream.send([&](Item::Builder b) { b.setI(sum); });
      }
    });
    ctx.results().setN(sum);
  }

  // Fan-out to remote consumers: the first RELAY caller makes this actor open COUNT(n) on the
  // caller's actor; every RELAY caller (that one included) gets a subscriber of that one upstream
  // stream and is sent its items. The upstream is read once, however many callers there are.
  // Two callers are expected: the upstream is read once both have subscribed.
  Co<void> relay(ServerStream<Count, Item> call) {
    if (!opening) {
      opening = true;
      co_await streamMethod<Count, Item>(call.caller(), PROBE_ID, COUNT,
          [&](Count::Builder p) { p.setN(call.params().getN()); },
          [&](ReceiveStream<Item>& up) -> Co<void> {
            auto mine = up.subscribe({.capacity = 4, .onLag = OnLag::BACKPRESSURE});
            upstream = up;
            upstreamOpen.set();
            co_await allFollowing.wait();
            co_await forward(mine, call);
          });
      upstream = nullptr;
    } else {
      co_await upstreamOpen.wait();
      auto mine = KJ_ASSERT_NONNULL(upstream).subscribe(
          {.capacity = 4, .onLag = OnLag::BACKPRESSURE});
      allFollowing.set();
      co_await forward(mine, call);
    }
  }

private:
  bool opening = false;
  kj::Maybe<ReceiveStream<Item>&> upstream;
  Event upstreamOpen;
  Event allFollowing;

  static Co<void> forward(Subscriber<Item>& from, ServerStream<Count, Item>& to) {
    while (auto item = co_await from.receive()) {
      uint32_t i = item->getI();
      co_await to.yield([&](Item::Builder b) { b.setI(i); });
    }
  }
};

class BroadcastTest : public testing::TwoActorTest<> {
protected:
  ~BroadcastTest() noexcept override {}

  Source* server = nullptr;

  BroadcastTest() {
    auto owned = kj::heap<Source>();
    server = owned.get();
    serverActor.addServer(kj::mv(owned));
    clientActor.addServer(kj::heap<Source>());
  }
};

// `n` calls there and back on the same channel: everything the peers had to say to each other
// before them (items, credit) has been said and handled by the time they return.
Co<void> roundTrips(Peer& peer, int n) {
  for (int i = 0; i < n; ++i) {
    co_await callMethod<Words, Words>(peer, PROBE_ID, ECHO, [](Words::Builder p) { p.setText(""); });
  }
}

std::vector<uint32_t> range(uint32_t from, uint32_t to) {
  std::vector<uint32_t> v;
  for (uint32_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

Co<std::vector<uint32_t>> drain(Subscriber<Item>& subscriber) {
  std::vector<uint32_t> got;
  while (auto item = co_await subscriber.receive()) got.push_back(item->getI());
  co_return got;
}

TEST_F(BroadcastTest, RaiseGivesLaggedWithTheCountMissedThenContinues) {
  run([&](Peer& peer) -> Co<void> {
    co_await streamMethod<Count, Item>(peer, PROBE_ID, COUNT, [](Count::Builder p) { p.setN(1000); },
        [&](ReceiveStream<Item>& items) -> Co<void> {
          auto reader = items.subscribe({.capacity = 8});
          auto idle = items.subscribe({.capacity = 16, .onLag = OnLag::RAISE});
          // The idle subscriber does not slow the reader: it gets every item.
          EXPECT_EQ(co_await drain(reader), range(0, 1000));
          EXPECT_EQ(idle.buffered(), 16u);
          auto failure = co_await errorOf([&]() -> Co<void> { (void)co_await idle.receive(); });
          auto& e = KJ_ASSERT_NONNULL(failure);
          EXPECT_TRUE(is(e, ErrorKind::LAGGED)) << e.getDescription().cStr();
          EXPECT_EQ(KJ_ASSERT_NONNULL(laggedBy(e)), 984u) << e.getDescription().cStr();
          EXPECT_EQ(laggedBy(KJ_EXCEPTION(FAILED, "harrow.Lagged: but not really")), nullptr);
          // Then it carries on with the newest 16, and the end; Lagged is raised once.
          EXPECT_EQ(co_await drain(idle), range(984, 1000));
          EXPECT_EQ(idle.missed(), 984u);
          EXPECT_TRUE(items.peerStopped());
        });
  });
}

// A RAISE subscriber slower than the stream (it lets the reader beside it take 8 items for each
// step it makes, a Lagged included) is told of each gap once and then handed the oldest item it
// still held, in order: Lagged(n), item, Lagged(m), item, ... (tokio's broadcast). Items dropped
// while the Lagged is on its way to the handler are the next Lagged's, not a reason to raise
// again before handing anything out.
TEST_F(BroadcastTest, ASlowRaiseSubscriberGetsOneLaggedPerGapThenTheOldestItemsItHolds) {
  constexpr uint32_t N = 2000;
  run([&](Peer& peer) -> Co<void> {
    for (size_t capacity : {4, 1}) {
      SCOPED_TRACE(capacity);
      co_await streamMethod<Count, Item>(peer, PROBE_ID, COUNT, [](Count::Builder p) { p.setN(N); },
          [&](ReceiveStream<Item>& items) -> Co<void> {
            auto fast = items.subscribe({.capacity = 8});
            auto slow = items.subscribe({.capacity = capacity, .onLag = OnLag::RAISE});
            uint32_t fastGot = 0;
            bool fastDone = false;
            uint32_t wakeAt = 0;
            kj::Maybe<kj::Own<Event>> woken;
            // The slow subscriber's pace: it goes on once the reader has taken k more items.
            auto readerTakes = [&](uint32_t k) -> kj::Promise<void> {
              if (fastDone) return kj::READY_NOW;
              wakeAt = fastGot + k;
              auto& event = *woken.emplace(kj::heap<Event>());
              return event.wait();
            };
            // What the slow subscriber saw: an item's value, or a Lagged's n (as -n - 1).
            std::vector<int64_t> seen;
            co_await openNursery([&](TaskNursery& n) -> Co<void> {
              n.startSoon([&]() -> Co<void> {
                while (auto item = co_await fast.receive()) {
                  EXPECT_EQ(item->getI(), fastGot);
                  if (++fastGot == wakeAt) KJ_IF_MAYBE(w, woken) (*w)->set();
                }
                fastDone = true;
                KJ_IF_MAYBE(w, woken) (*w)->set();
              });
              n.startSoon([&]() -> Co<void> {
                for (bool ended = false; !ended;) {
                  auto failure = co_await errorOf([&]() -> Co<void> {
                    auto item = co_await slow.receive();
                    if (item) {
                      seen.push_back(item->getI());
                    } else {
                      ended = true;
                    }
                  });
                  KJ_IF_MAYBE(e, failure) {
                    seen.push_back(-int64_t(KJ_ASSERT_NONNULL(laggedBy(*e))) - 1);
                  }
                  if (!ended) co_await readerTakes(8);
                }
              });
              co_return;
            });
            EXPECT_EQ(fastGot, N);
            // Every gap is reported once, just before the item after it, and says exactly how many
            // were missed; nothing is handed out twice or out of order.
            int64_t next = 0;  // the item expected after what was seen so far
            size_t lagged = 0, received = 0, laggedTwice = 0;
            bool lastWasLagged = false;
            for (int64_t x : seen) {
              if (x < 0) {
                if (lastWasLagged) ++laggedTwice;
                next += -x - 1;
                ++lagged;
                lastWasLagged = true;
              } else {
                EXPECT_EQ(x, next);
                next = x + 1;
                ++received;
                lastWasLagged = false;
              }
            }
            EXPECT_EQ(laggedTwice, 0u)
                << "of " << lagged << " Lagged, with " << received << " items";
            EXPECT_EQ(next, int64_t(N));
            EXPECT_FALSE(lastWasLagged);
            EXPECT_GT(lagged, 0u);
            // A step per 8 items taken, a Lagged and an item each: about one item in 16.
            EXPECT_GE(received, N / 32) << "lagged " << lagged << " times";
            EXPECT_EQ(slow.missed(), N - received);
          });
    }
  });
}

TEST_F(BroadcastTest, SkipDropsTheOldestSilently) {
  run([&](Peer& peer) -> Co<void> {
    co_await streamMethod<Count, Item>(peer, PROBE_ID, COUNT, [](Count::Builder p) { p.setN(500); },
        [&](ReceiveStream<Item>& items) -> Co<void> {
          auto reader = items.subscribe();
          auto skipper = items.subscribe({.capacity = 10, .onLag = OnLag::SKIP});
          EXPECT_EQ(co_await drain(reader), range(0, 500));
          EXPECT_EQ(co_await drain(skipper), range(490, 500));
          EXPECT_EQ(skipper.missed(), 490u);
          EXPECT_EQ(reader.missed(), 0u);
        });
  });
}

// With a window of 8 and a BACKPRESSURE subscriber of capacity 4 that does not read, a reader
// gets 4 items and the producer stops within a window of them; each item the slow one takes lets
// one more through; dropping it (unsubscribing) releases the producer.
TEST_F(BroadcastTest, BackpressureHoldsTheProducerAndUnsubscribingReleasesIt) {
  PeerOptions options;
  options.window = 8;
  options.maxWindow = 8;  // a fixed window, so that what the producer may send is known
  run([&](Peer& peer) -> Co<void> {
    co_await streamMethod<Empty, Item>(peer, PROBE_ID, ENDLESS, [](Empty::Builder) {},
        [&](ReceiveStream<Item>& items) -> Co<void> {
          auto fast = items.subscribe({.capacity = 4});
          auto slow = kj::heap(items.subscribe({.capacity = 4, .onLag = OnLag::BACKPRESSURE}));
          uint32_t fastGot = 0;
          co_await openNursery([&](TaskNursery& n) -> Co<void> {
            n.startSoon([&]() -> Co<void> {
              while (fastGot < 300) {
                auto item = co_await fast.receive();
                EXPECT_EQ(item->getI(), fastGot);
                ++fastGot;
              }
            });
            co_await roundTrips(peer, 30);
            EXPECT_EQ(fastGot, 4u);
            EXPECT_EQ(slow->buffered(), 4u);
            EXPECT_LE(server->endlessSent, 4u + 8u);  // held: what was taken, plus one window
            for (uint32_t k = 0; k < 3; ++k) {
              auto item = co_await slow->receive();
              EXPECT_EQ(item->getI(), k);
            }
            co_await roundTrips(peer, 30);
            EXPECT_EQ(fastGot, 7u);
            EXPECT_LE(server->endlessSent, 7u + 8u);
            EXPECT_EQ(fast.missed() + slow->missed(), 0u);
            slow = nullptr;  // unsubscribes: the reader goes on alone
          });
          EXPECT_EQ(fastGot, 300u);
          EXPECT_GE(server->endlessSent, 300u);
        });
  }, options);
}

TEST_F(BroadcastTest, ALateSubscriberSeesItemsFromWhenItSubscribed) {
  run([&](Peer& peer) -> Co<void> {
    co_await streamMethod<Count, Item>(peer, PROBE_ID, COUNT, [](Count::Builder p) { p.setN(100); },
        [&](ReceiveStream<Item>& items) -> Co<void> {
          auto first = items.subscribe({.onLag = OnLag::BACKPRESSURE});
          std::vector<uint32_t> got;
          for (int i = 0; i < 10; ++i) got.push_back((co_await first.receive())->getI());
          auto late = first.subscribe({.onLag = OnLag::BACKPRESSURE});
          std::vector<uint32_t> lateGot;
          co_await openNursery([&](TaskNursery& n) -> Co<void> {
            n.startSoon([&]() -> Co<void> {
              auto rest = co_await drain(first);
              got.insert(got.end(), rest.begin(), rest.end());
            });
            n.startSoon([&]() -> Co<void> { lateGot = co_await drain(late); });
            co_return;
          });
          EXPECT_EQ(got, range(0, 100));
          EXPECT_EQ(lateGot, range(10, 100));
        });
  });
}

// Every subscriber reads the one received message: the same bytes, not a copy each.
TEST_F(BroadcastTest, ItemsAreSharedNotCopied) {
  run([&](Peer& peer) -> Co<void> {
    co_await streamMethod<Count, Item>(peer, PROBE_ID, COUNT, [](Count::Builder p) { p.setN(3); },
        [&](ReceiveStream<Item>& items) -> Co<void> {
          auto a = items.subscribe();
          auto b = items.subscribe({.onLag = OnLag::SKIP});
          auto c = b.subscribe({.onLag = OnLag::BACKPRESSURE});
          for (uint32_t i = 0; i < 3; ++i) {
            auto x = co_await a.receive();
            auto y = co_await b.receive();
            auto z = co_await c.receive();
            auto bytes = [](const Received<Item>& r) {
              return capnp::AnyStruct::Reader(r.get()).getDataSection().begin();
            };
            EXPECT_EQ(x->getI(), i);
            EXPECT_EQ(bytes(x), bytes(y));
            EXPECT_EQ(bytes(x), bytes(z));
          }
        });
  });
}

TEST_F(BroadcastTest, TheEndReachesEverySubscriber) {
  run([&](Peer& peer) -> Co<void> {
    co_await streamMethod<Count, Item>(peer, PROBE_ID, COUNT, [](Count::Builder p) { p.setN(50); },
        [&](ReceiveStream<Item>& items) -> Co<void> {
          std::vector<std::vector<uint32_t>> got(3);
          auto a = items.subscribe({.onLag = OnLag::RAISE});
          auto b = items.subscribe({.onLag = OnLag::SKIP});
          auto c = items.subscribe({.onLag = OnLag::BACKPRESSURE});
          co_await openNursery([&](TaskNursery& n) -> Co<void> {
            n.startSoon([&]() -> Co<void> { got[0] = co_await drain(a); });
            n.startSoon([&]() -> Co<void> { got[1] = co_await drain(b); });
            n.startSoon([&]() -> Co<void> { got[2] = co_await drain(c); });
            co_return;
          });
          for (auto& g : got) EXPECT_EQ(g, range(0, 50));
          EXPECT_TRUE(items.peerStopped());
          // After the end, more receives and new subscribers see the end at once.
          EXPECT_FALSE(co_await a.receive());
          auto after = items.subscribe();
          EXPECT_FALSE(co_await after.receive());
        });
  });
}

TEST_F(BroadcastTest, AnErrorReachesEverySubscriberAfterTheItemsBeforeIt) {
  run([&](Peer& peer) -> Co<void> {
    std::vector<std::vector<uint32_t>> got(3);
    std::vector<kj::Maybe<kj::Exception>> errors(3);
    auto streamFailure = co_await errorOf([&]() {
      return streamMethod<Count, Item>(peer, PROBE_ID, BROKEN,
          [](Count::Builder p) { p.setN(5); },
          [&](ReceiveStream<Item>& items) -> Co<void> {
            kj::Vector<Subscriber<Item>> subscribers;
            subscribers.add(items.subscribe({.onLag = OnLag::RAISE}));
            subscribers.add(items.subscribe({.onLag = OnLag::SKIP}));
            subscribers.add(items.subscribe({.onLag = OnLag::BACKPRESSURE}));
            co_await openNursery([&](TaskNursery& n) -> Co<void> {
              for (size_t i = 0; i < 3; ++i) {
                n.startSoon([&, i]() -> Co<void> {
                  errors[i] = co_await errorOf([&]() -> Co<void> {
                    for (;;) got[i].push_back((co_await subscribers[i].receive())->getI());
                  });
                });
              }
              co_return;
            });
            EXPECT_FALSE(items.peerStopped());
          });
    });
    EXPECT_TRUE(isRemoteActorError(KJ_ASSERT_NONNULL(streamFailure)));
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(got[i], range(0, 5));
      auto& e = KJ_ASSERT_NONNULL(errors[i]);
      EXPECT_TRUE(isRemoteActorError(e)) << e.getDescription().cStr();
      EXPECT_NE(std::string(e.getDescription().cStr()).find("the source broke"),
                std::string::npos);
      EXPECT_EQ(e.getDescription(), KJ_ASSERT_NONNULL(errors[0]).getDescription());
    }
  });
}

// An item that is not of the stream's type is checked once, when taken, and fails every
// subscriber with the same protocol violation (as it fails a single consumer).
TEST_F(BroadcastTest, AnItemOfTheWrongTypeFailsEverySubscriber) {
  run([&](Peer& peer) -> Co<void> {
    std::vector<kj::Maybe<kj::Exception>> errors(2);
    co_await errorOf([&]() {
      // COUNT yields Items; this side expects Words.
      return streamMethod<Count, Words>(peer, PROBE_ID, COUNT, [](Count::Builder p) { p.setN(3); },
          [&](ReceiveStream<Words>& items) -> Co<void> {
            auto a = items.subscribe();
            auto b = items.subscribe({.onLag = OnLag::BACKPRESSURE});
            errors[0] = co_await errorOf([&]() -> Co<void> { (void)co_await a.receive(); });
            errors[1] = co_await errorOf([&]() -> Co<void> { (void)co_await b.receive(); });
          });
    });
    for (auto& error : errors) {
      auto& e = KJ_ASSERT_NONNULL(error);
      EXPECT_TRUE(isProtocolViolation(e)) << e.getDescription().cStr();
      EXPECT_EQ(e.getDescription(), KJ_ASSERT_NONNULL(errors[0]).getDescription());
    }
  });
}

// A subscriber that never reads holds at most its capacity, however long the stream runs, and
// the reader beside it is never held up.
TEST_F(BroadcastTest, AnIdleSubscriberNeverHoldsMoreThanItsCapacity) {
  PeerOptions options;
  options.window = 8;
  run([&](Peer& peer) -> Co<void> {
    co_await streamMethod<Empty, Item>(peer, PROBE_ID, ENDLESS, [](Empty::Builder) {},
        [&](ReceiveStream<Item>& items) -> Co<void> {
          auto reader = items.subscribe({.capacity = 2});
          auto idleRaise = items.subscribe({.capacity = 16});
          auto idleSkip = items.subscribe({.capacity = 3, .onLag = OnLag::SKIP});
          size_t mostRaise = 0, mostSkip = 0;
          for (uint32_t i = 0; i < 5000; ++i) {
            auto item = co_await reader.receive();
            EXPECT_EQ(item->getI(), i);
            mostRaise = kj::max(mostRaise, idleRaise.buffered());
            mostSkip = kj::max(mostSkip, idleSkip.buffered());
          }
          EXPECT_EQ(mostRaise, 16u);
          EXPECT_EQ(mostSkip, 3u);
          EXPECT_EQ(idleRaise.missed(), 5000u - 16u);
          EXPECT_EQ(idleSkip.missed(), 5000u - 3u);
        });
  }, options);
}

// Cancelling a subscriber's wait while the stream's next item is on its way loses nothing: the
// item goes to every subscriber, that one included. (A context's receive side: nothing arrives
// before this side sends, so the wait is cancelled while the stream is still empty.)
TEST_F(BroadcastTest, CancellingAWaitingSubscriberLosesNoItem) {
  run([&](Peer& peer) -> Co<void> {
    co_await contextMethod<Count, Count, Count, Item, Item>(
        peer, PROBE_ID, SESSION, [](Count::Builder p) { p.setN(0); },
        [&](CallerContext<Count, Item, Item>& ctx, Count::Reader) -> Co<void> {
          co_await ctx.openStream([&](MsgStream<Item, Item>& stream) -> Co<void> {
            auto a = stream.subscribe();
            auto b = stream.subscribe();
            CancelScope scope;
            co_await scope.run([&]() -> Co<void> {
              co_await openNursery([&](TaskNursery& n) -> Co<void> {
                n.startSoon([&]() -> Co<void> { (void)co_await a.receive(); });
                co_await roundTrips(peer, 1);  // a is waiting, and so is the stream's take
                scope.cancel();
              });
            });
            EXPECT_TRUE(scope.cancelledCaught());
            co_await stream.send([&](Item::Builder item) { item.setI(7); });
            EXPECT_EQ((co_await b.receive())->getI(), 7u);
            EXPECT_EQ((co_await a.receive())->getI(), 7u);
          });
        });
  });
}

// A subscriber kept after its stream's block has ended keeps the items it holds; then it sees
// the end if the end had arrived, and an error saying the stream is closed if not.
TEST_F(BroadcastTest, ASubscriberOutlivingItsStreamKeepsWhatItHolds) {
  run([&](Peer& peer) -> Co<void> {
    kj::Maybe<Subscriber<Item>> ended, cut;
    co_await streamMethod<Count, Item>(peer, PROBE_ID, COUNT, [](Count::Builder p) { p.setN(5); },
        [&](ReceiveStream<Item>& items) -> Co<void> {
          auto reader = items.subscribe();
          ended = items.subscribe();
          EXPECT_EQ(co_await drain(reader), range(0, 5));
        });
    auto& afterEnd = KJ_ASSERT_NONNULL(ended);
    EXPECT_EQ(co_await drain(afterEnd), range(0, 5));

    co_await streamMethod<Empty, Item>(peer, PROBE_ID, ENDLESS, [](Empty::Builder) {},
        [&](ReceiveStream<Item>& items) -> Co<void> {
          auto reader = items.subscribe();
          cut = items.subscribe();
          for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ((co_await reader.receive())->getI(), i);
        });  // leaving early cancels the producer
    auto& kept = KJ_ASSERT_NONNULL(cut);
    for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ((co_await kept.receive())->getI(), i);
    auto closed = co_await errorOf([&]() -> Co<void> { (void)co_await kept.receive(); });
    auto& e = KJ_ASSERT_NONNULL(closed);
    EXPECT_NE(std::string(e.getDescription().cStr()).find("its block has ended"),
              std::string::npos) << e.getDescription().cStr();
  });
}

// A context's receive side broadcasts too.
TEST_F(BroadcastTest, AContextsReceiveSideHasSubscribers) {
  run([&](Peer& peer) -> Co<void> {
    std::vector<uint32_t> a, b;
    auto result = co_await contextMethod<Count, Count, Count, Item, Item>(
        peer, PROBE_ID, SESSION, [](Count::Builder p) { p.setN(100); },
        [&](CallerContext<Count, Item, Item>& ctx, Count::Reader) -> Co<void> {
          co_await ctx.openStream([&](MsgStream<Item, Item>& stream) -> Co<void> {
            auto first = stream.subscribe();
            auto second = stream.subscribe();
            for (uint32_t i = 1; i <= 3; ++i) {
              co_await stream.send([&](Item::Builder item) { item.setI(i); });
              a.push_back((co_await first.receive())->getI());
            }
            for (int i = 0; i < 3; ++i) b.push_back((co_await second.receive())->getI());
            // One consumer at a time: the stream's own receive() is the subscribers' now.
            auto misuse = co_await errorOf([&]() -> Co<void> { (void)co_await stream.receive(); });
            EXPECT_TRUE(misuse != nullptr);
          });
        });
    EXPECT_EQ(a, (std::vector<uint32_t>{101, 103, 106}));
    EXPECT_EQ(b, a);
    EXPECT_EQ(result->getN(), 106u);
  });
}

// An actor re-broadcasts one upstream stream to two remote consumers: each gets every item, and
// the upstream is opened once.
TEST_F(BroadcastTest, AnActorRebroadcastsAStreamToTwoRemoteConsumers) {
  run([&](Peer& peer) -> Co<void> {
    std::vector<std::vector<uint32_t>> got(2);
    co_await openNursery([&](TaskNursery& n) -> Co<void> {
      for (auto& g : got) {
        n.startSoon([&peer, &g]() -> Co<void> {
          co_await streamMethod<Count, Item>(peer, PROBE_ID, RELAY,
              [](Count::Builder p) { p.setN(300); },
              [&](ReceiveStream<Item>& items) -> Co<void> {
                while (auto item = co_await items.receive()) g.push_back(item->getI());
              });
        });
      }
      co_return;
    });
    EXPECT_EQ(got[0], range(0, 300));
    EXPECT_EQ(got[1], range(0, 300));
  });
}

}  // namespace
}  // namespace harrow
