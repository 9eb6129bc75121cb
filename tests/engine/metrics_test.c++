// What the engine counts (<harrow/engine/metrics.h>), between two actors of one process over a
// socketpair: the client is the server actor's parent (the trusted parent-child hellos), so
// collectTree() at the client asks the server over the protocol, as a root asks its children.

#include <harrow/actor/actor.h>
#include <harrow/engine/metrics.h>
#include "tests/engine/probe.capnp.h"
#include "tests/engine/serve_pair.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <string>

namespace harrow {
namespace {

using probe::Count;
using probe::Item;

constexpr uint64_t PROBE_ID = 0x4d45;
enum Method : uint16_t { OK, FAIL, ITEMS };

class ProbeServer final : public ActorServer {
public:
  uint64_t interfaceId() const override { return PROBE_ID; }
  kj::StringPtr interfaceName() const override { return "Probe"; }
  kj::Maybe<MethodKind> methodKind(uint16_t id) const override {
    switch (id) {
      case OK: case FAIL: return MethodKind::CALL;
      case ITEMS: return MethodKind::STREAM;
    }
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t id) const override {
    static const char* const NAMES[] = {"ok", "fail", "items"};
    return NAMES[id];
  }
  Co<void> dispatch(uint16_t id, IncomingTask& task) override {
    uint32_t n = task.params().get<Count>().getN();
    switch (id) {
      case OK:
        task.results().init<Count>().setN(n);
        co_return;
      case FAIL:
        KJ_FAIL_REQUIRE("failing on purpose");
      case ITEMS:
        for (uint32_t i = 0; i < n; ++i) {
          auto item = task.newItem();
          item->init<Item>().setI(i);
          co_await task.send(kj::mv(item));
        }
        co_return;
    }
    KJ_UNREACHABLE;
  }
};

class EngineMetricsTest : public testing::TwoActorTest<> {
protected:
  ~EngineMetricsTest() noexcept override {}

  EngineMetricsTest() {
    serverActor.addServer(kj::heap<ProbeServer>());
    serverActor.metrics().setEnabled(true);
    clientActor.metrics().setEnabled(true);
  }

  // The client is the server's parent; the client's stream window is 1 item.
  void run(kj::Function<kj::Promise<void>(Peer& client)> body) {
    auto channels = testing::pipeChannels(io);
    PeerOptions clientOptions;
    clientOptions.window = 1;
    auto clientSide = handshakeWithChild(kj::mv(channels.client), clientActor, clientOptions);
    auto serverSide = handshakeWithParent(kj::mv(channels.server), serverActor);
    auto peers = testing::awaitPeers(io.waitScope, kj::mv(clientSide), kj::mv(serverSide));
    serve(peers, kj::mv(body));
  }

  static kj::Own<OutgoingMessage> start(Peer& peer, Method method, uint32_t n) {
    auto message = peer.newStart(PROBE_ID, method);
    message->init<Count>().setN(n);
    return message;
  }

  Co<std::string> scrape() {
    auto snapshot = co_await collectTree(clientActor);
    co_return renderExposition(snapshot->getRoot<metrics::Snapshot>()).cStr();
  }
};

// The value of the sample `series` (name and labels, exactly as rendered), or -1 if absent.
double valueOf(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return atof(text.c_str() + at + series.size() + 2);
}

TEST_F(EngineMetricsTest, CountsCallsFailuresStallsAndBytesAcrossTheTree) {
  std::string text;
  run([&](Peer& peer) -> Co<void> {
    co_await peer.call(start(peer, OK, 1));
    co_await peer.call(start(peer, OK, 2));
    kj::Maybe<kj::Exception> failure;
    try {
      co_await peer.call(start(peer, FAIL, 0));
    } catch (...) {
      failure = currentException();
    }
    EXPECT_TRUE(failure != nullptr);
    // Five items against a window of one: the server's sender must wait for credit.
    auto items = co_await peer.open(start(peer, ITEMS, 5), MethodKind::STREAM);
    uint32_t received = 0;
    while (co_await items->receive() != nullptr) ++received;
    co_await items->result();
    EXPECT_EQ(received, 5u);
    text = co_await scrape();
  });
  auto server = [](const std::string& method) {
    return "{actor=\"server\",interface=\"Probe\",method=\"" + method + "\"}";
  };
  EXPECT_EQ(valueOf(text, "harrow_calls_started_total" + server("ok")), 2) << text;
  EXPECT_EQ(valueOf(text, "harrow_calls_finished_total" + server("ok")), 2) << text;
  EXPECT_EQ(valueOf(text, "harrow_calls_failed_total" + server("ok")), 0) << text;
  EXPECT_EQ(valueOf(text, "harrow_calls_finished_total" + server("fail")), 1) << text;
  EXPECT_EQ(valueOf(text, "harrow_calls_failed_total" + server("fail")), 1) << text;
  EXPECT_EQ(valueOf(text, "harrow_calls_finished_total" + server("items")), 1) << text;
  EXPECT_EQ(valueOf(text, "harrow_tasks_in_flight" + server("ok")), 0) << text;
  EXPECT_EQ(valueOf(text, "harrow_call_duration_seconds_count" + server("ok")), 2) << text;
  EXPECT_EQ(valueOf(text, "harrow_call_duration_seconds_bucket{actor=\"server\",interface="
                          "\"Probe\",method=\"ok\",le=\"+Inf\"}"), 2) << text;
  EXPECT_GE(valueOf(text, "harrow_stream_credit_stalls_total{actor=\"server\"}"), 1) << text;
  EXPECT_EQ(valueOf(text, "harrow_stream_credit_stalls_total{actor=\"client\"}"), 0) << text;
  EXPECT_EQ(valueOf(text, "harrow_outgoing_tasks_in_flight{actor=\"client\"}"), 0) << text;
  EXPECT_GT(valueOf(text, "harrow_channel_sent_bytes_total{actor=\"client\"}"), 0) << text;
  EXPECT_GT(valueOf(text, "harrow_channel_received_bytes_total{actor=\"server\"}"), 0) << text;
  // The client serves nothing; the scrape itself is not counted anywhere.
  EXPECT_EQ(text.find("actor=\"client\",interface="), std::string::npos) << text;
  EXPECT_EQ(text.find("harrow.Metrics"), std::string::npos) << text;
}

TEST_F(EngineMetricsTest, AnActorWithoutMetricsIsLeftOutAndCountsNothing) {
  serverActor.metrics().setEnabled(false);
  std::string text;
  run([&](Peer& peer) -> Co<void> {
    co_await peer.call(start(peer, OK, 1));
    text = co_await scrape();  // the server answers unknownMethod: left out, no error
  });
  EXPECT_EQ(text.find("actor=\"server\""), std::string::npos) << text;
  EXPECT_NE(text.find("harrow_channel_sent_bytes_total{actor=\"client\"}"), std::string::npos)
      << text;
  EXPECT_EQ(serverActor.metrics().families("server")[0].samples.size(), 0u);
}

}  // namespace
}  // namespace harrow
