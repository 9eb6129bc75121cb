// A peer that breaks the protocol gets an error back for that call id, and the actor it talks to
// carries on: hand-written wire messages against a real Peer.

#include <harrow/actor/actor.h>
#include <harrow/typed/typed.h>
#include "tests/engine/probe.capnp.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <string>

namespace harrow {
namespace {

constexpr uint64_t PROBE_ID = 0x5678;

// Echo (call, method 0) and a context that streams both ways (method 1).
class ProbeServer final : public ActorServer {
public:
  uint64_t interfaceId() const override { return PROBE_ID; }
  kj::StringPtr interfaceName() const override { return "Probe"; }
  kj::Maybe<MethodKind> methodKind(uint16_t id) const override {
    if (id == 0) return MethodKind::CALL;
    if (id == 1 || id == 2) return MethodKind::CONTEXT;
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t id) const override { return id == 0 ? "echo" : "session"; }
  Co<void> dispatch(uint16_t id, IncomingTask& task) override {
    if (id == 0) {
      CallContext<probe::Words, probe::Words> call(task);
      call.results().setText(call.params().getText());
      co_return;
    }
    ContextCall<probe::Count, probe::Count, probe::Count, probe::Item, probe::Item> ctx(task);
    co_await ctx.started([](probe::Count::Builder b) { b.setN(1); });
    if (id == 2) co_await kj::Promise<void>(kj::NEVER_DONE);  // never reads its items
    co_await ctx.openStream([&](MsgStream<probe::Item, probe::Item>& s) -> Co<void> {
      while (auto item = co_await s.receive()) {}
    });
  }
};

class ViolationTest : public ::testing::Test {
protected:
  ~ViolationTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  Actor actor{io, ActorIdentity::random("victim")};
  kj::Own<Channel> raw;  // the misbehaving side, speaking wire messages by hand

  ViolationTest() { actor.addServer(kj::heap<ProbeServer>()); }

  static kj::Own<capnp::MallocMessageBuilder> message(uint64_t callId,
                                                      wire::Message::Builder& root) {
    auto builder = kj::heap<capnp::MallocMessageBuilder>();
    root = builder->initRoot<wire::Message>();
    root.setCallId(callId);
    return builder;
  }

  // A hello, without the proof that must follow it.
  kj::Own<capnp::MallocMessageBuilder> sendBareHello(uint32_t version = wire::PROTOCOL_VERSION) {
    wire::Message::Builder root = nullptr;
    auto m = message(0, root);
    auto hello = root.initHello();
    ActorIdentity::random("rogue").toWire(hello.initId());
    hello.setProtocolVersion(version);
    setHelloNonce(hello);
    raw->send(*m);
    return m;
  }

  // The opener's side of the handshake, by hand: the rogue knows the tree's secret (it breaks
  // the protocol later, not the handshake).
  void sendHello() {
    auto ours = sendBareHello();
    auto theirs = KJ_ASSERT_NONNULL(raw->receive().wait(io.waitScope));
    auto opener = ours->getRoot<wire::Message>().getHello().asReader();
    auto acceptor = theirs->getRoot<wire::Message>().getHello();
    auto proof = handshakeProof(actor.treeSecret(), HandshakeRole::OPENER, opener, acceptor);
    wire::Message::Builder root = nullptr;
    auto m = message(0, root);
    root.setAuthenticate(capnp::Data::Reader(proof.begin(), proof.size()));
    raw->send(kj::mv(m));
    auto answer = KJ_ASSERT_NONNULL(raw->receive().wait(io.waitScope));
    auto theirProof = answer->getRoot<wire::Message>();
    KJ_ASSERT(theirProof.isAuthenticate());
    KJ_ASSERT(verifyHandshakeProof(actor.treeSecret(), HandshakeRole::ACCEPTOR, opener, acceptor,
                                   theirProof.getAuthenticate()));
  }

  void sendStart(uint64_t callId, uint16_t method) {
    wire::Message::Builder root = nullptr;
    auto m = message(callId, root);
    auto start = root.initStart();
    start.setInterfaceId(PROBE_ID);
    start.setMethodId(method);
    start.setWindow(4);
    if (method == 0) {
      start.initParams().initValue().initAs<probe::Words>().setText("hello");
      start.getParams().setTypeId(capnp::typeId<probe::Words>());
    } else {
      start.initParams().initValue().initAs<probe::Count>();
      start.getParams().setTypeId(capnp::typeId<probe::Count>());
    }
    raw->send(kj::mv(m));
  }

  void sendYield(uint64_t callId) {
    wire::Message::Builder root = nullptr;
    auto m = message(callId, root);
    root.initYield().initValue().initAs<probe::Item>();
    root.getYield().setTypeId(capnp::typeId<probe::Item>());
    raw->send(kj::mv(m));
  }

  // The next message from the victim that is not hello / startAck / started.
  kj::Own<capnp::MessageReader> next() {
    for (;;) {
      auto reader = KJ_ASSERT_NONNULL(raw->receive().wait(io.waitScope));
      auto which = reader->getRoot<wire::Message>().which();
      if (which != wire::Message::HELLO && which != wire::Message::START_ACK &&
          which != wire::Message::STARTED) {
        return reader;
      }
    }
  }

  // Runs the victim's side (handshake, serve) while `body` misbehaves.
  void run(kj::Function<void()> body) {
    auto pipe = io.provider->newTwoWayPipe();
    raw = kj::heap<Channel>(kj::mv(pipe.ends[0]));
    auto victim = kj::heap<Channel>(kj::mv(pipe.ends[1]));
    auto served = actor.serve([&]() -> Co<void> {
      PeerOptions options;
      options.window = 4;  // small, so that a credit overrun is easy to provoke
      auto peer = co_await handshake(kj::mv(victim), actor, false, options);
      try {
        co_await peer->serve();
      } catch (...) {
      }
    }).eagerlyEvaluate(nullptr);
    body();
    raw = nullptr;  // the rogue leaves; the victim ends cleanly
    served.wait(io.waitScope);
  }

  void expectViolation(uint64_t callId, kj::StringPtr containing) {
    auto reader = next();
    auto m = reader->getRoot<wire::Message>();
    ASSERT_TRUE(m.isError()) << "message " << static_cast<int>(m.which());
    EXPECT_EQ(m.getCallId(), callId);
    EXPECT_EQ(m.getError().getKind(), wire::ErrorKind::PROTOCOL_VIOLATION);
    EXPECT_NE(std::string(m.getError().getMessage().cStr()).find(containing.cStr()),
              std::string::npos) << m.getError().getMessage().cStr();
  }

  void expectEchoStillWorks(uint64_t callId) {
    sendStart(callId, 0);
    auto reader = next();
    auto m = reader->getRoot<wire::Message>();
    ASSERT_TRUE(m.isReturn());
    EXPECT_EQ(m.getCallId(), callId);
    EXPECT_EQ(std::string(m.getReturn().getValue().getAs<probe::Words>().getText().cStr()),
              "hello");
  }
};

TEST_F(ViolationTest, VersionMismatchIsRefusedWithAnError) {
  auto pipe = io.provider->newTwoWayPipe();
  raw = kj::heap<Channel>(kj::mv(pipe.ends[0]));
  auto shaking = handshake(kj::heap<Channel>(kj::mv(pipe.ends[1])), actor, false);
  sendBareHello(99);
  auto failure = kj::runCatchingExceptions([&]() { shaking.wait(io.waitScope); });
  EXPECT_TRUE(isProtocolViolation(KJ_ASSERT_NONNULL(failure)));
  auto reader = next();
  auto m = reader->getRoot<wire::Message>();
  ASSERT_TRUE(m.isError());
  EXPECT_NE(std::string(m.getError().getMessage().cStr()).find("version 99"), std::string::npos);
  EXPECT_EQ(raw->receive().wait(io.waitScope), nullptr);  // then the victim closed
}

TEST_F(ViolationTest, UnknownCallIdGetsAnErrorAndNothingElseBreaks) {
  run([&]() {
    sendHello();
    sendYield(41);
    expectViolation(41, "unknown call id 41");
    expectEchoStillWorks(1);
  });
}

TEST_F(ViolationTest, YieldBeyondCreditEndsOnlyThatTask) {
  run([&]() {
    sendHello();
    sendStart(1, 2);
    for (int i = 0; i < 5; ++i) sendYield(1);  // the victim granted 4 and reads none
    expectViolation(1, "credit window of 4");
    expectEchoStillWorks(3);
  });
}

TEST_F(ViolationTest, YieldToACallIsAViolation) {
  run([&]() {
    sendHello();
    sendStart(1, 0);
    sendYield(1);
    // The call's return may come before the yield is read (then the yield is late and dropped)
    // or after it (then the yield is refused and its error ends the call). Either way exactly
    // one terminal message arrives for call 1, and the channel carries on.
    auto reader = next();
    auto m = reader->getRoot<wire::Message>();
    EXPECT_EQ(m.getCallId(), 1u);
    EXPECT_TRUE(m.isReturn() ||
                (m.isError() && m.getError().getKind() == wire::ErrorKind::PROTOCOL_VIOLATION));
    expectEchoStillWorks(3);
  });
}

TEST_F(ViolationTest, SecondHelloIsAChannelLevelViolation) {
  run([&]() {
    sendHello();
    sendBareHello();
    expectViolation(0, "a second hello");
    expectEchoStillWorks(1);
  });
}

TEST_F(ViolationTest, StartWithTheVictimsParityIsRefused) {
  run([&]() {
    sendHello();
    sendStart(2, 0);  // even ids belong to the acceptor (the victim)
    expectViolation(2, "not free");
    expectEchoStillWorks(1);
  });
}

}  // namespace
}  // namespace harrow
