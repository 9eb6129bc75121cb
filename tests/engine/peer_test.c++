// The protocol engine between two peers in one process, over a real socketpair: calls, streams
// with flow control, contexts, errors, cancellation both ways, violations, a lost channel.

#include <harrow/actor/actor.h>
#include <harrow/ipc/transport.h>
#include <harrow/typed/typed.h>
#include "tests/engine/probe.capnp.h"
#include "tests/names.h"

#include "tests/engine/serve_pair.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <string>
#include <unistd.h>
#include <vector>

namespace harrow {
namespace {

using probe::Count;
using probe::Empty;
using probe::Item;
using probe::Words;

constexpr uint64_t PROBE_ID = 0x1234;
enum Method : uint16_t { ECHO, COUNT, FAIL, HANG, SESSION, ENDLESS, SHORT, CHATTY };

// A hand-written server, as capnpc-harrow would generate it plus an implementation.
class ProbeServer final : public ActorServer {
public:
  std::vector<std::string> log;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> hangStarted;
  uint32_t endlessSent = 0;

  uint64_t interfaceId() const override { return PROBE_ID; }
  kj::StringPtr interfaceName() const override { return "Probe"; }
  kj::Maybe<MethodKind> methodKind(uint16_t id) const override {
    switch (id) {
      case ECHO: case FAIL: case HANG: return MethodKind::CALL;
      case COUNT: case ENDLESS: return MethodKind::STREAM;
      case SESSION: case SHORT: case CHATTY: return MethodKind::CONTEXT;
    }
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t id) const override { return "m"; }

  Co<void> dispatch(uint16_t id, IncomingTask& task) override {
    switch (id) {
      case ECHO: return echo(ServerCall<Words, Words>(task));
      case COUNT: return count(ServerStream<Count, Item>(task));
      case FAIL: return fail(ServerCall<Words, Words>(task));
      case HANG: return hang(ServerCall<Empty, Empty>(task));
      case SESSION: return session(ServerContext<Count, Count, Count, Item, Item>(task));
      case ENDLESS: return endless(ServerStream<Empty, Item>(task));
      case SHORT: return shortSession(ServerContext<Count, Count, Count, Item, Item>(task));
      case CHATTY: return chatty(ServerContext<Count, Count, Count, Item, Item>(task));
    }
    KJ_UNREACHABLE;
  }

  Co<void> echo(ServerCall<Words, Words> call) {
    call.results().setText(kj::str("echo: ", call.params().getText()));
    co_return;
  }
  Co<void> count(ServerStream<Count, Item> call) {
    for (uint32_t i = 0; i < call.params().getN(); ++i) {
      co_await call.yield([&](Item::Builder item) { item.setI(i); });
    }
  }
  Co<void> fail(ServerCall<Words, Words> call) {
    co_await kj::Promise<void>(kj::READY_NOW);
    KJ_FAIL_REQUIRE("handler refused", call.params().getText());
  }
  Co<void> hang(ServerCall<Empty, Empty>) {
    try {
      KJ_IF_MAYBE(f, hangStarted) (*f)->fulfill();
      co_await kj::Promise<void>(kj::NEVER_DONE);
    } catch (const kj::Exception& e) {
      log.push_back(isCancelled(e) ? "hang cancelled" : "hang failed");
      throw;
    }
  }
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
  // A context that answers without reading a single item.
  Co<void> shortSession(ServerContext<Count, Count, Count, Item, Item> ctx) {
    co_await ctx.started([&](Count::Builder b) { b.setN(0); });
    ctx.results().setN(ctx.params().getN());
  }
  // Sends n items whether or not anyone reads them, then returns.
  Co<void> chatty(ServerContext<Count, Count, Count, Item, Item> ctx) {
    co_await ctx.started([&](Count::Builder b) { b.setN(0); });
    uint32_t n = ctx.params().getN();
    co_await ctx.openStream([&](MsgStream<Item, Item>& stream) -> Co<void> {
      for (uint32_t i = 0; i < n; ++i) co_await stream.send([&](Item::Builder b) { b.setI(i); });
    });
    ctx.results().setN(n);
  }
  Co<void> endless(ServerStream<Empty, Item> call) {
    try {
      for (;;) {
        co_await call.yield([&](Item::Builder item) { item.setI(endlessSent); });
        ++endlessSent;
      }
    } catch (const kj::Exception& e) {
      log.push_back(isCancelled(e) ? "endless cancelled" : "endless failed");
      throw;
    }
  }
};

// Every test runs over each transport: a socketpair (how a parent talks to its child), TCP on
// loopback, and a Unix socket (abstract name) through a listener.
class PeerTest : public testing::TwoActorTest<::testing::TestWithParam<const char*>> {
protected:
  ~PeerTest() noexcept override {}

  ProbeServer* server = nullptr;

  PeerTest() {
    auto owned = kj::heap<ProbeServer>();
    server = owned.get();
    serverActor.addServer(kj::mv(owned));
  }

  // Connects the two actors over a socketpair and runs `body` with the client's peer while both
  // sides serve; then closes the client's channel and waits for the server to see it.
  void run(kj::Function<kj::Promise<void>(Peer& client)> body, PeerOptions options = {}) {
    kj::StringPtr transport = GetParam();
    testing::ChannelPair channels;
    if (transport == "socketpair") {
      channels = testing::pipeChannels(io);
    } else {
      auto address = transport.startsWith("tcp") ? kj::str("tcp:127.0.0.1:0")
                                                 : testing::uniqueAbstractAddress("peer");
      channels = testing::channelsThroughListener(io, address);
    }
    PeerOptions serverOptions = options;
    if (transport == "tcp-encrypted") options.encrypt = true;  // one side asking is enough
    serverOptions.encrypt = false;
    auto peers = testing::connectPeers(io.waitScope, kj::mv(channels), clientActor, serverActor,
                                       options, serverOptions);
    // TCP carries a tag on every frame; a Unix socket between processes of one user does not
    // (docs/PROTOCOL.md, "Frame protection").
    EXPECT_EQ(peers.client->channel().framesProtected(), transport.startsWith("tcp"));
    EXPECT_EQ(peers.server->channel().framesProtected(), transport.startsWith("tcp"));

    serve(peers, kj::mv(body));
  }
};

TEST_P(PeerTest, CallReturnsTypedResult) {
  run([&](Peer& peer) -> Co<void> {
    auto reply = co_await callMethod<Words, Words>(peer, PROBE_ID, ECHO,
        [](Words::Builder p) { p.setText("hi"); });
    EXPECT_EQ(std::string(reply->getText().cStr()), "echo: hi");
  });
}

TEST_P(PeerTest, TenThousandConcurrentCallsOnOneChannel) {
  run([&](Peer& peer) -> Co<void> {
    size_t ok = 0;
    co_await openNursery([&](TaskNursery& n) -> Co<void> {
      for (int i = 0; i < 10000; ++i) {
        n.startSoon([&peer, &ok, i]() -> Co<void> {
          auto text = kj::str(i);
          auto reply = co_await callMethod<Words, Words>(peer, PROBE_ID, ECHO,
              [&](Words::Builder p) { p.setText(text); });
          if (reply->getText() == kj::str("echo: ", i)) ++ok;
        });
      }
      co_return;
    });
    EXPECT_EQ(ok, 10000u);
  });
}

TEST_P(PeerTest, RemoteErrorArrivesAsRemoteActorError) {
  run([&](Peer& peer) -> Co<void> {
    kj::Maybe<kj::Exception> failure;
    try {
      co_await callMethod<Words, Words>(peer, PROBE_ID, FAIL, [](Words::Builder p) { p.setText("x"); });
    } catch (...) {
      failure = currentException();
    }
    auto& e = KJ_ASSERT_NONNULL(failure);
    EXPECT_TRUE(isRemoteActorError(e)) << e.getDescription().cStr();
    auto info = KJ_ASSERT_NONNULL(remoteErrorInfo(e));
    EXPECT_EQ(std::string(info.origin.name.cStr()), "server");
    EXPECT_EQ(std::string(info.type.cStr()), "kj::Exception(failed)");
    EXPECT_TRUE(info.message.startsWith("handler refused")) << info.message.cStr();
    EXPECT_TRUE(info.file.endsWith("peer_test.c++")) << info.file.cStr();
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    // Sanitized builds (-O1) inline differently, which moves frames between the handler's and
    // harrow's: the trace's shape is checked in the builds users run.
    co_return;
#endif
    // Its trace was symbolized where it was raised: the handler's frame first, by name and line,
    // clean of the coroutine frame's mangled type; harrow's and KJ's frames folded into one line.
    std::string trace = info.remoteTrace.cStr();
    auto first = trace.find("\n#0 ");
    EXPECT_NE(first, std::string::npos) << trace;
    if (first == std::string::npos) co_return;
    std::string frame0 = trace.substr(first + 1, trace.find('\n', first + 1) - first - 1);
    EXPECT_NE(frame0.find("::fail(harrow::ServerCall<"), std::string::npos) << trace;
    EXPECT_NE(frame0.find(" at tests/engine/peer_test.c++:"), std::string::npos) << trace;
    for (auto noise : {"_ZN", "[clone", "(anonymous namespace)::", "/proc/self/cwd"}) {
      EXPECT_EQ(trace.find(noise), std::string::npos) << noise << " in " << trace;
    }
    EXPECT_NE(trace.find("\n\u2026 2 frames in harrow and std (HARROW_TRACE=full shows them)"),
              std::string::npos) << trace;
    EXPECT_EQ(trace.find("kj::_::"), std::string::npos) << "not folded: " << trace;
    EXPECT_EQ(trace.find("stack: "), std::string::npos) << "raw addresses: " << trace;
  });
}

TEST_P(PeerTest, HarrowTraceFullShowsHarrowsFramesToo) {
  setenv("HARROW_TRACE", "full", 1);
  KJ_DEFER(unsetenv("HARROW_TRACE"));
  run([&](Peer& peer) -> Co<void> {
    auto failure = co_await errorOf([&]() {
      return callMethod<Words, Words>(peer, PROBE_ID, FAIL, [](Words::Builder p) { p.setText("x"); });
    });
    auto info = KJ_ASSERT_NONNULL(remoteErrorInfo(KJ_ASSERT_NONNULL(failure)));
    std::string trace = info.remoteTrace.cStr();
    EXPECT_NE(trace.find("::fail("), std::string::npos) << trace;
    EXPECT_NE(trace.find(" harrow::"), std::string::npos) << trace;
    EXPECT_EQ(trace.find(" frames in "), std::string::npos) << trace;
  });
}

TEST_P(PeerTest, HarrowTraceOffSendsNoStack) {
  setenv("HARROW_TRACE", "off", 1);
  KJ_DEFER(unsetenv("HARROW_TRACE"));
  run([&](Peer& peer) -> Co<void> {
    auto failure = co_await errorOf([&]() {
      return callMethod<Words, Words>(peer, PROBE_ID, FAIL,
                                      [](Words::Builder p) { p.setText("x"); });
    });
    auto info = KJ_ASSERT_NONNULL(remoteErrorInfo(KJ_ASSERT_NONNULL(failure)));
    // The error itself arrives whole; only its stack stays behind.
    EXPECT_TRUE(info.message.startsWith("handler refused")) << info.message.cStr();
    EXPECT_TRUE(info.file.endsWith("peer_test.c++")) << info.file.cStr();
    std::string trace = info.remoteTrace.cStr();
    EXPECT_EQ(trace.find("stack:"), std::string::npos) << trace;
    EXPECT_EQ(trace.find("#0 "), std::string::npos) << trace;
  });
}

TEST_P(PeerTest, AReceivedItemComparesWithNullptrLikeAMaybe) {
  run([&](Peer& peer) -> Co<void> {
    co_await streamMethod<Count, Item>(
        peer, PROBE_ID, COUNT, [](Count::Builder p) { p.setN(1); },
        [&](ReceiveStream<Item>& items) -> Co<void> {
          auto first = co_await items.receive();
          KJ_ASSERT(first != nullptr);  // what a KJ user writes first: it compiles and holds
          EXPECT_EQ(first->getI(), 0u);
          auto end = co_await items.receive();
          EXPECT_TRUE(end == nullptr);
          EXPECT_FALSE(bool(end));
        });
  });
}

TEST_P(PeerTest, StreamDeliversEveryItemThenEnds) {
  run([&](Peer& peer) -> Co<void> {
    std::vector<uint32_t> got;
    co_await streamMethod<Count, Item>(peer, PROBE_ID, COUNT,
        [](Count::Builder p) { p.setN(200); },
        [&](ReceiveStream<Item>& items) -> Co<void> {
          while (auto item = co_await items.receive()) got.push_back(item->getI());
        });
    KJ_ASSERT(got.size() == 200u, got.size());
    EXPECT_EQ(got.front(), 0u);
    EXPECT_EQ(got.back(), 199u);
  });
}

TEST_P(PeerTest, SlowConsumerStallsOnlyItsOwnStream) {
  PeerOptions options;
  options.window = 8;
  run([&](Peer& peer) -> Co<void> {
    co_await streamMethod<Empty, Item>(peer, PROBE_ID, ENDLESS, [](Empty::Builder) {},
        [&](ReceiveStream<Item>& items) -> Co<void> {
          auto first = co_await items.receive();
          EXPECT_EQ(first->getI(), 0u);
          // Not reading: meanwhile calls on the same channel keep flowing, and the producer is
          // held to the window.
          for (int i = 0; i < 50; ++i) {
            auto reply = co_await callMethod<Words, Words>(peer, PROBE_ID, ECHO,
                [](Words::Builder p) { p.setText("still here"); });
            EXPECT_EQ(std::string(reply->getText().cStr()), "echo: still here");
          }
          EXPECT_LE(server->endlessSent, 8u);
          EXPECT_GE(server->endlessSent, 7u);
        });
    // Leaving the block early cancelled the producer.
    EXPECT_EQ(server->log, (std::vector<std::string>{"endless cancelled"}));
  }, options);
}

// A consumer that keeps up with small items earns the producer a larger window (up to
// maxWindow); one whose items would take more than windowBytes at that window does not.
TEST_P(PeerTest, WindowGrowsForSmallItemsUpToMaxWindow) {
  PeerOptions options;
  options.window = 8;
  options.maxWindow = 64;
  run([&](Peer& peer) -> Co<void> {
    co_await streamMethod<Empty, Item>(peer, PROBE_ID, ENDLESS, [](Empty::Builder) {},
        [&](ReceiveStream<Item>& items) -> Co<void> {
          for (uint32_t i = 0; i < 200; ++i) {
            auto item = co_await items.receive();
            EXPECT_EQ(item->getI(), i);
          }
          // Not reading any more: round trips on the same channel let the producer use all the
          // credit it has.
          for (int i = 0; i < 50; ++i) {
            co_await callMethod<Words, Words>(peer, PROBE_ID, ECHO,
                [](Words::Builder p) { p.setText("x"); });
          }
          EXPECT_GT(server->endlessSent, 200u + 8u);  // beyond the initial window
          EXPECT_LE(server->endlessSent, 200u + 64u);  // never beyond maxWindow
        });
  }, options);
}

TEST_P(PeerTest, WindowStaysWhenItemsWouldExceedWindowBytes) {
  PeerOptions options;
  options.window = 8;
  options.maxWindow = 64;
  options.windowBytes = 256;  // fewer than 8 of these items (about 56 bytes each) fit
  run([&](Peer& peer) -> Co<void> {
    co_await streamMethod<Empty, Item>(peer, PROBE_ID, ENDLESS, [](Empty::Builder) {},
        [&](ReceiveStream<Item>& items) -> Co<void> {
          for (uint32_t i = 0; i < 200; ++i) co_await items.receive();
          for (int i = 0; i < 50; ++i) {
            co_await callMethod<Words, Words>(peer, PROBE_ID, ECHO,
                [](Words::Builder p) { p.setText("x"); });
          }
          EXPECT_LE(server->endlessSent, 200u + 8u);
          EXPECT_GE(server->endlessSent, 200u + 8u - 4u);  // at most half a window uncredited
        });
  }, options);
}

// A callee that returns while the caller is still sending: the caller's send(), held for credit
// the callee will never grant, raises StreamClosed instead of waiting forever, and the caller
// still gets the result.
TEST_P(PeerTest, SendingToAContextThatReturnedRaisesStreamClosed) {
  PeerOptions options;
  options.window = 4;
  options.maxWindow = 4;
  run([&](Peer& peer) -> Co<void> {
    uint32_t sent = 0;
    kj::Maybe<kj::Exception> failure;
    auto result = co_await contextMethod<Count, Count, Count, Item, Item>(
        peer, PROBE_ID, SHORT, [](Count::Builder p) { p.setN(7); },
        [&](CallerContext<Count, Item, Item>& ctx, Count::Reader) -> Co<void> {
          failure = co_await errorOf([&]() -> Co<void> {
            co_await ctx.openStream([&](MsgStream<Item, Item>& stream) -> Co<void> {
              for (uint32_t i = 0; i < 10; ++i) {
                co_await stream.send([&](Item::Builder b) { b.setI(i); });
                ++sent;
              }
            });
          });
        });
    EXPECT_EQ(result->getN(), 7u);
    EXPECT_LE(sent, 4u);  // the window, at most: the callee never granted more
    KJ_IF_MAYBE(e, failure) {
      EXPECT_TRUE(is(*e, ErrorKind::STREAM_CLOSED)) << e->getDescription().cStr();
      EXPECT_NE(std::string(e->getDescription().cStr()).find("has ended: the other end takes no more items"),
                std::string::npos)
          << e->getDescription().cStr();
    } else {
      ADD_FAILURE() << "all 10 items were sent to a callee that had returned";
    }
  }, options);
}

// A caller that leaves its stream block after one item, while the callee still has 49 to send
// into a window of 4, then waits for the result: the items it no longer reads are dropped and
// credited (RawStream::stopReading), so the callee finishes and the result arrives, instead of
// both sides waiting for each other forever.
TEST_P(PeerTest, ACallerThatStopsReadingStillGetsTheResult) {
  PeerOptions options;
  options.window = 4;
  options.maxWindow = 4;
  run(
      [&](Peer& peer) -> Co<void> {
        auto result = co_await contextMethod<Count, Count, Count, Item, Item>(
            peer, PROBE_ID, CHATTY, [](Count::Builder p) { p.setN(50); },
            [&](CallerContext<Count, Item, Item>& ctx, Count::Reader) -> Co<void> {
              co_await ctx.openStream([&](MsgStream<Item, Item>& stream) -> Co<void> {
                auto first = co_await stream.receive();
                EXPECT_EQ(first->getI(), 0u);
              });
            });
        EXPECT_EQ(result->getN(), 50u);
      },
      options);
}

// Peer::tasks() (what `harrow stacks` shows): both ends list the same open tasks, with their
// direction, kind, method and state, oldest first.
TEST_P(PeerTest, TasksSnapshotShowsTheOpenTasksOnBothEnds) {
  run([&](Peer& peer) -> Co<void> {
    auto hanging = kj::newPromiseAndFulfiller<void>();
    server->hangStarted = kj::mv(hanging.fulfiller);
    co_await openNursery([&](TaskNursery& calls) -> Co<void> {
      calls.startSoon([&]() -> Co<void> {
        co_await callMethod<Empty, Empty>(peer, PROBE_ID, HANG, [](Empty::Builder) {});
      });
      co_await kj::mv(hanging.promise);
      co_await streamMethod<Count, Item>(peer, PROBE_ID, COUNT,
          [](Count::Builder p) { p.setN(1000); },
          [&](ReceiveStream<Item>& items) -> Co<void> {
            co_await items.receive();
            auto mine = peer.tasks();
            KJ_ASSERT(mine.size() == 2, mine.size());
            EXPECT_FALSE(mine[0].incoming);
            EXPECT_EQ(mine[0].kind, MethodKind::CALL);
            EXPECT_EQ(std::string(mine[0].state.cStr()), "waiting for the result");
            EXPECT_EQ(mine[1].kind, MethodKind::STREAM);
            EXPECT_EQ(std::string(mine[1].state.cStr()), "open");
            // The probe's params are plain structs, not Method$Params: the method is unknown here.
            EXPECT_EQ(std::string(mine[1].method.cStr()), "");
            EXPECT_LE(mine[0].openedAt, mine[1].openedAt);

            Peer* serverSide = nullptr;
            for (Peer* p : serverActor.peers()) {
              if (p->remote().name == "client") serverSide = p;
            }
            KJ_ASSERT(serverSide != nullptr);
            auto theirs = serverSide->tasks();
            KJ_ASSERT(theirs.size() == 2, theirs.size());
            for (size_t i = 0; i < 2; ++i) {
              EXPECT_TRUE(theirs[i].incoming);
              EXPECT_EQ(theirs[i].callId, mine[i].callId);
              EXPECT_EQ(theirs[i].kind, mine[i].kind);
              EXPECT_EQ(std::string(theirs[i].method.cStr()), "Probe.m");
            }
            EXPECT_EQ(std::string(theirs[0].state.cStr()), "running");
            EXPECT_EQ(std::string(theirs[1].state.cStr()).rfind("open", 0), 0u);
          });
      calls.cancel();  // the hanging call
    });
    // Once they have ended, neither end lists them.
    EXPECT_EQ(peer.tasks().size(), 0u);
  });
}

TEST_P(PeerTest, ContextStartedStreamBothWaysThenResult) {
  run([&](Peer& peer) -> Co<void> {
    std::vector<uint32_t> sums;
    auto result = co_await contextMethod<Count, Count, Count, Item, Item>(
        peer, PROBE_ID, SESSION, [](Count::Builder p) { p.setN(100); },
        [&](CallerContext<Count, Item, Item>& ctx, Count::Reader started) -> Co<void> {
          EXPECT_EQ(started.getN(), 100u);
          co_await ctx.openStream([&](MsgStream<Item, Item>& stream) -> Co<void> {
            for (uint32_t i = 1; i <= 3; ++i) {
              co_await stream.send([&](Item::Builder b) { b.setI(i); });
              auto sum = co_await stream.receive();
              sums.push_back(sum->getI());
            }
          });
        });
    EXPECT_EQ(sums, (std::vector<uint32_t>{101, 103, 106}));
    EXPECT_EQ(result->getN(), 106u);
  });
}

TEST_P(PeerTest, CallerCancellingContextIsAbsorbed) {
  run([&](Peer& peer) -> Co<void> {
    auto result = co_await contextMethod<Count, Count, Count, Item, Item>(
        peer, PROBE_ID, SESSION, [](Count::Builder p) { p.setN(1); },
        [&](CallerContext<Count, Item, Item>& ctx, Count::Reader) -> Co<void> {
          ctx.cancel();
          co_return;
        });
    EXPECT_FALSE(result);  // cancelled: no result, and no error
  });
}

TEST_P(PeerTest, ScopeCancellingACallCancelsTheRemoteTask) {
  auto started = kj::newPromiseAndFulfiller<void>();
  server->hangStarted = kj::mv(started.fulfiller);
  run([&](Peer& peer) -> Co<void> {
    CancelScope scope;
    co_await scope.run([&]() -> Co<void> {
      co_await openNursery([&](TaskNursery& n) -> Co<void> {
        n.startSoon([&]() -> Co<void> {
          co_await callMethod<Empty, Empty>(peer, PROBE_ID, HANG, [](Empty::Builder) {});
        });
        co_await kj::mv(started.promise);
        scope.cancel();
      });
    });
    EXPECT_TRUE(scope.cancelledCaught());
    // A round trip later the remote task has seen the cancel.
    co_await callMethod<Words, Words>(peer, PROBE_ID, ECHO, [](Words::Builder p) { p.setText(""); });
    EXPECT_EQ(server->log, (std::vector<std::string>{"hang cancelled"}));
  });
}

TEST_P(PeerTest, UnknownMethodAndInterfaceAreErrorsNotCrashes) {
  run([&](Peer& peer) -> Co<void> {
    for (uint64_t iface : {PROBE_ID, uint64_t(0x999)}) {
      kj::Maybe<kj::Exception> failure;
      try {
        co_await callMethod<Words, Words>(peer, iface, 77, [](Words::Builder) {});
      } catch (...) {
        failure = currentException();
      }
      auto info = KJ_ASSERT_NONNULL(remoteErrorInfo(KJ_ASSERT_NONNULL(failure)));
      EXPECT_EQ(info.kind, wire::ErrorKind::UNKNOWN_METHOD);
    }
    auto reply = co_await callMethod<Words, Words>(peer, PROBE_ID, ECHO,
        [](Words::Builder p) { p.setText("alive"); });
    EXPECT_EQ(std::string(reply->getText().cStr()), "echo: alive");
  });
}

TEST_P(PeerTest, WrongPayloadTypeIsAProtocolViolation) {
  run([&](Peer& peer) -> Co<void> {
    kj::Maybe<kj::Exception> failure;
    try {
      co_await callMethod<Item, Words>(peer, PROBE_ID, ECHO, [](Item::Builder p) { p.setI(1); });
    } catch (...) {
      failure = currentException();
    }
    auto& e = KJ_ASSERT_NONNULL(failure);
    EXPECT_TRUE(isProtocolViolation(e)) << e.getDescription().cStr();
  });
}

TEST_P(PeerTest, StreamOpenedAsCallIsRejected) {
  run([&](Peer& peer) -> Co<void> {
    kj::Maybe<kj::Exception> failure;
    try {
      co_await callMethod<Count, Empty>(peer, PROBE_ID, COUNT, [](Count::Builder p) { p.setN(1); });
    } catch (...) {
      failure = currentException();
    }
    EXPECT_TRUE(isProtocolViolation(KJ_ASSERT_NONNULL(failure)));
  });
}

// A channel's owner may know better than the channel why it was lost (a supervisor knows how its
// child died). With an explainer, the call waiting on the lost channel, a call started while the
// explanation is pending, and every call after it raise the owner's explanation; the explainer
// is given the channel's own error.
TEST(PeerLossTest, TheOwnersExplanationReachesEveryCallOnALostChannel) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  Actor clientActor{io, ActorIdentity::random("client")};
  Actor serverActor{io, ActorIdentity::random("server")};
  auto peers = testing::handshakeOverPipe(io, clientActor, serverActor);
  kj::Own<Peer> client = kj::mv(peers.client);
  kj::Own<Peer> server = kj::mv(peers.server);  // never serves: calls to it stay open

  kj::Maybe<kj::Exception> channelError;
  auto explanation = kj::newPromiseAndFulfiller<kj::Exception>();
  auto asked = kj::newPromiseAndFulfiller<void>();
  client->explainLossWith([&](kj::Exception e) {
    channelError = kj::mv(e);
    asked.fulfiller->fulfill();
    return kj::mv(explanation.promise);
  });
  auto echo = [&]() {
    return callMethod<Words, Words>(*client, PROBE_ID, ECHO, [](Words::Builder) {});
  };
  kj::Maybe<kj::Exception> waiting, duringExplanation, later;
  openNursery([&](TaskNursery& n) -> Co<void> {
    n.startSoon([&]() { return client->serve(); });
    n.startSoon([&]() -> Co<void> {
      try {
        co_await echo();
      } catch (...) {
        waiting = currentException();
      }
    });
    server = nullptr;  // the other end goes away: a clean EOF
    co_await kj::mv(asked.promise);
    n.startSoon([&]() -> Co<void> {
      try {
        co_await echo();
      } catch (...) {
        duringExplanation = currentException();
      }
    });
    EXPECT_TRUE(waiting == nullptr) << "failed before the explanation";
    EXPECT_TRUE(duringExplanation == nullptr) << "failed before the explanation";
    explanation.fulfiller->fulfill(
        kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str("test.Gone: why")));
  }).wait(io.waitScope);
  try {
    echo().wait(io.waitScope);
  } catch (...) {
    later = currentException();
  }

  EXPECT_TRUE(isTransportClosed(KJ_ASSERT_NONNULL(channelError)));
  for (auto* raised : {&waiting, &duringExplanation, &later}) {
    KJ_IF_MAYBE(e, *raised) {
      EXPECT_EQ(std::string(e->getDescription().cStr()), "test.Gone: why");
    } else {
      ADD_FAILURE() << "a call on the lost channel succeeded";
    }
  }
}

// A Peer whose serve() was cancelled reads nothing more, so no answer could reach a call started
// on it: such a call (or open) fails at once with TransportClosed saying this side stopped
// serving, instead of waiting for its own scope to end. The channel itself stays usable for the
// owner's own messages (cancel-actor to a child).
TEST(PeerLossTest, ACancelledServeRefusesNewCallsAtOnce) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  Actor clientActor{io, ActorIdentity::random("client")};
  Actor serverActor{io, ActorIdentity::random("server")};
  serverActor.addServer(kj::heap<ProbeServer>());
  auto peers = testing::handshakeOverPipe(io, clientActor, serverActor);
  kj::Own<Peer> client = kj::mv(peers.client);
  kj::Own<Peer> server = kj::mv(peers.server);

  kj::Maybe<kj::Exception> called, opened;
  serverActor.serve([&]() -> Co<void> {
    co_await openNursery([&](TaskNursery& n) -> Co<void> {
      n.startSoon([&]() -> Co<void> {
        try {
          co_await server->serve();
        } catch (const kj::Exception& e) {
          if (!isCancelled(e)) throw;
        }
      });
      CancelScope serving;
      n.startSoon([&]() { return serving.run([&]() { return client->serve(); }); });
      // It serves: a call gets its answer.
      auto echoed = co_await callMethod<Words, Words>(*client, PROBE_ID, ECHO,
                                                      [](Words::Builder p) { p.setText("a"); });
      EXPECT_EQ(std::string(echoed->getText().cStr()), "echo: a");
      serving.cancel();
      co_await client->whenClosed();
      // Failure guard only: without the refusal the call would wait for this deadline.
      called = co_await errorOf([&]() {
        return failAfter(io.provider->getTimer(), 5 * kj::SECONDS, [&]() -> Co<void> {
          co_await callMethod<Words, Words>(*client, PROBE_ID, ECHO, [](Words::Builder) {});
        });
      });
      opened = co_await errorOf([&]() {
        return failAfter(io.provider->getTimer(), 5 * kj::SECONDS, [&]() -> Co<void> {
          co_await streamMethod<Count, Item>(*client, PROBE_ID, COUNT,
              [](Count::Builder p) { p.setN(1); }, [](ReceiveStream<Item>&) -> Co<void> {
                co_return;
              });
        });
      });
      co_await client->channel().shutdownWrite();
    });
  }).wait(io.waitScope);

  for (auto* raised : {&called, &opened}) {
    KJ_IF_MAYBE(e, *raised) {
      EXPECT_TRUE(isTransportClosed(*e)) << e->getDescription().cStr();
      EXPECT_NE(std::string(e->getDescription().cStr()).find("stopped serving"),
                std::string::npos) << e->getDescription().cStr();
    } else {
      ADD_FAILURE() << "a call on a Peer that no longer serves succeeded";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, PeerTest, ::testing::Values("socketpair", "tcp", "tcp-encrypted", "unix"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace harrow
