// A peer that breaks the protocol gets an error back for that call id, and the actor it talks to
// carries on: hand-written wire messages against a real Peer.

#include <harrow/actor/actor.h>
#include <harrow/co/version.h>
#include <harrow/typed/typed.h>
#include "tests/engine/probe.capnp.h"

#include <capnp/any.h>
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
      ServerCall<probe::Words, probe::Words> call(task);
      call.results().setText(call.params().getText());
      co_return;
    }
    ServerContext<probe::Count, probe::Count, probe::Count, probe::Item, probe::Item> ctx(task);
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

  // The rogue connects: its end of a new pipe in `raw`, the actor's end under the actor's side
  // of the handshake (the acceptor's), which is returned.
  Co<kj::Own<Peer>> rogueConnects() {
    auto pipe = io.provider->newTwoWayPipe();
    raw = kj::heap<Channel>(kj::mv(pipe.ends[0]));
    return handshake(kj::heap<Channel>(kj::mv(pipe.ends[1])), actor, false);
  }

  // A hello, without the proof that must follow it.
  kj::Own<capnp::MallocMessageBuilder> sendBareHello(uint32_t version = wire::PROTOCOL_VERSION) {
    return sendBareHelloOn(*raw, "rogue", version);
  }
  kj::Own<capnp::MallocMessageBuilder> sendBareHelloOn(Channel& channel, kj::StringPtr name,
                                                       uint32_t version = wire::PROTOCOL_VERSION) {
    wire::Message::Builder root = nullptr;
    auto m = message(0, root);
    auto hello = root.initHello();
    ActorIdentity::random(name).toWire(hello.initId());
    hello.setProtocolVersion(version);
    setHelloNonce(hello);
    channel.send(*m);
    return m;
  }

  // The opener's side of the handshake, by hand: the rogue knows the tree's secret (it breaks
  // the protocol later, not the handshake).
  void sendHello() { authenticateOn(*raw, "rogue"); }
  void authenticateOn(Channel& channel, kj::StringPtr name) {
    auto ours = sendBareHelloOn(channel, name);
    auto theirs = KJ_ASSERT_NONNULL(channel.receive().wait(io.waitScope));
    auto opener = ours->getRoot<wire::Message>().getHello().asReader();
    auto acceptor = theirs->getRoot<wire::Message>().getHello();
    auto proof = handshakeProof(actor.treeSecret(), HandshakeRole::OPENER, opener, acceptor);
    wire::Message::Builder root = nullptr;
    auto m = message(0, root);
    root.setAuthenticate(capnp::Data::Reader(proof.begin(), proof.size()));
    channel.send(kj::mv(m));
    auto answer = KJ_ASSERT_NONNULL(channel.receive().wait(io.waitScope));
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

  kj::Own<Channel> good;  // another peer of the victim, well-behaved

  // Runs the victim's side (handshake, serve) with two peers while `body` misbehaves on one.
  void run(kj::Function<void()> body) {
    auto pipe = io.provider->newTwoWayPipe();
    raw = kj::heap<Channel>(kj::mv(pipe.ends[0]));
    auto victim = kj::heap<Channel>(kj::mv(pipe.ends[1]));
    auto goodPipe = io.provider->newTwoWayPipe();
    good = kj::heap<Channel>(kj::mv(goodPipe.ends[0]));
    auto victimOfGood = kj::heap<Channel>(kj::mv(goodPipe.ends[1]));
    auto serveOne = [&](kj::Own<Channel> channel) -> Co<void> {
      PeerOptions options;
      options.window = 4;  // small, so that a credit overrun is easy to provoke
      auto peer = co_await handshake(kj::mv(channel), actor, false, options);
      try {
        co_await peer->serve();
      } catch (...) {
      }
    };
    auto served = actor.serve([&]() -> Co<void> {
      auto first = serveOne(kj::mv(victim)).eagerlyEvaluate(nullptr);
      co_await serveOne(kj::mv(victimOfGood));
      co_await kj::mv(first);
    }).eagerlyEvaluate(nullptr);
    authenticateOn(*good, "good");
    body();
    echoOn(*good, 101, io.waitScope);  // the victim still serves its other peers
    raw = nullptr;  // the rogue leaves; the victim ends cleanly
    good = nullptr;
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

  // Pointer `index` of `target` replaced by a pointer of the wrong kind.
  // EMPTY_STRUCTS: a million zero-sized structs, which cost a frame eight bytes (an
  // amplification: a walk over them would read far more than the peer sent).
  enum class Junk { LIST, TEXT, STRUCT, EMPTY_STRUCTS };
  template <typename Builder>
  static void junk(Builder target, unsigned index, Junk kind) {
    auto pointer = capnp::AnyStruct::Builder(kj::mv(target)).getPointerSection()[index];
    switch (kind) {
      case Junk::LIST: pointer.initAs<capnp::List<uint32_t>>(3); return;
      case Junk::TEXT: pointer.setAs<capnp::Text>("junk"); return;
      case Junk::STRUCT: pointer.initAs<probe::Count>().setN(7); return;
      case Junk::EMPTY_STRUCTS: pointer.initAsListOfAnyStruct(0, 0, 1'000'000); return;
    }
  }

  // A start for echo whose message is then broken by `breakIt(root)`.
  void sendBrokenStart(uint64_t callId, kj::Function<void(wire::Message::Builder)> breakIt) {
    wire::Message::Builder root = nullptr;
    auto m = message(callId, root);
    auto start = root.initStart();
    start.setInterfaceId(PROBE_ID);
    start.setMethodId(0);
    start.setWindow(4);
    start.initParams().initValue().initAs<probe::Words>().setText("hello");
    start.getParams().setTypeId(capnp::typeId<probe::Words>());
    breakIt(root);
    raw->send(kj::mv(m));
  }

  // The same, on `channel` (another peer of the victim).
  static void echoOn(Channel& channel, uint64_t callId, kj::WaitScope& waitScope) {
    wire::Message::Builder root = nullptr;
    auto m = message(callId, root);
    auto start = root.initStart();
    start.setInterfaceId(PROBE_ID);
    start.initParams().initValue().initAs<probe::Words>().setText("fine");
    start.getParams().setTypeId(capnp::typeId<probe::Words>());
    channel.send(kj::mv(m));
    for (;;) {
      auto reader = KJ_ASSERT_NONNULL(channel.receive().wait(waitScope));
      auto reply = reader->getRoot<wire::Message>();
      if (reply.isHello()) continue;
      ASSERT_TRUE(reply.isReturn()) << static_cast<int>(reply.which());
      EXPECT_EQ(reply.getCallId(), callId);
      EXPECT_EQ(std::string(reply.getReturn().getValue().getAs<probe::Words>().getText().cStr()),
                "fine");
      return;
    }
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
  auto shaking = rogueConnects();
  sendBareHello(99);
  auto failure = kj::runCatchingExceptions([&]() { shaking.wait(io.waitScope); });
  EXPECT_TRUE(isProtocolViolation(KJ_ASSERT_NONNULL(failure)));
  auto reader = next();
  auto m = reader->getRoot<wire::Message>();
  ASSERT_TRUE(m.isError());
  // Both sides' names and versions, and what to do about it.
  EXPECT_EQ(std::string(m.getError().getMessage().cStr()),
            std::string(kj::str("protocol version mismatch: 'rogue' speaks harrow wire protocol "
                                "99, '", actor.identity().name, "' (harrow ", VERSION, ") speaks ",
                                wire::PROTOCOL_VERSION, "; build both programs with one harrow "
                                "release (`harrow --version` prints both numbers)").cStr()));
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

// Each violation is answered, but not forever: at the 64th (PeerOptions::maxViolations) the peer
// is taken as hostile, told so on the channel, and cut off; the victim's other peers carry on.
TEST_F(ViolationTest, APeerThatKeepsViolatingIsCutOff) {
  run([&]() {
    sendHello();
    for (uint64_t id = 41; id < 41 + 2 * 64; id += 2) sendYield(id);  // 64 unknown call ids
    for (uint64_t id = 41; id < 41 + 2 * 64; id += 2) expectViolation(id, "unknown call id");
    expectViolation(0, "64 protocol violations on this channel: the peer is taken as hostile");
    auto rest = kj::runCatchingExceptions([&]() {
      EXPECT_EQ(raw->receive().wait(io.waitScope), nullptr);  // then the victim closed
    });
    KJ_IF_MAYBE(e, rest) { EXPECT_TRUE(isTransportClosed(*e)) << e->getDescription().cStr(); }
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

// ---------------------------------------------------------------------------------------------
// The decode boundary: well-framed messages with pointers of the wrong kind (docs/PROTOCOL.md,
// "Flow control"). Each is a violation of its task; the actor, the channel and the other peer carry
// on.

TEST_F(ViolationTest, StartWithListParamsIsAViolation) {
  run([&]() {
    sendHello();
    sendBrokenStart(1, [](wire::Message::Builder m) { junk(m.getStart(), 0, Junk::LIST); });
    expectViolation(1, "malformed message");
    expectEchoStillWorks(3);
  });
}

TEST_F(ViolationTest, StartWithTextAsStartIsAViolation) {
  run([&]() {
    sendHello();
    sendBrokenStart(1, [](wire::Message::Builder m) { junk(m, 0, Junk::TEXT); });
    expectViolation(1, "malformed message");
    expectEchoStillWorks(3);
  });
}

TEST_F(ViolationTest, ParamsValueOfTheWrongKindIsAViolation) {
  run([&]() {
    sendHello();
    sendBrokenStart(1, [](wire::Message::Builder m) {
      junk(m.getStart().getParams(), 0, Junk::TEXT);  // Text where the Words struct belongs
    });
    expectViolation(1, "expected a Words struct");
    sendBrokenStart(3, [](wire::Message::Builder m) {
      junk(m.getStart().getParams(), 0, Junk::LIST);
    });
    expectViolation(3, "expected a Words struct");
    expectEchoStillWorks(5);
  });
}

TEST_F(ViolationTest, ParamsFieldOfTheWrongKindIsAViolation) {
  run([&]() {
    sendHello();
    sendBrokenStart(1, [](wire::Message::Builder m) {
      // Words.text is a struct: only a deep check finds it, before the handler reads it.
      junk(m.getStart().getParams().getValue().getAs<probe::Words>(), 0, Junk::STRUCT);
    });
    expectViolation(1, "Words does not decode");
    expectEchoStillWorks(3);
  });
}

TEST_F(ViolationTest, YieldOfTheWrongKindIsAViolationOfItsTask) {
  run([&]() {
    sendHello();
    sendStart(1, 1);  // a context that reads its items
    {
      wire::Message::Builder root = nullptr;
      auto m = message(1, root);
      root.initYield();
      junk(root, 0, Junk::LIST);  // the yield's Payload is a list
      raw->send(kj::mv(m));
    }
    expectViolation(1, "malformed message");
    sendStart(3, 1);
    {
      wire::Message::Builder root = nullptr;
      auto m = message(3, root);
      root.initYield().setTypeId(capnp::typeId<probe::Item>());
      junk(root.getYield(), 0, Junk::TEXT);  // the item is Text, not an Item
      raw->send(kj::mv(m));
    }
    expectViolation(3, "expected a Item struct");
    expectEchoStillWorks(5);
  });
}

TEST_F(ViolationTest, MalformedControlMessagesAreChannelLevelViolations) {
  run([&]() {
    sendHello();
    {
      wire::Message::Builder root = nullptr;
      auto m = message(0, root);
      root.initSpawnSpec();
      junk(root.getSpawnSpec(), 1, Junk::STRUCT);  // bindAddresses: a struct, not List(Text)
      raw->send(kj::mv(m));
    }
    expectViolation(0, "malformed message");
    {
      wire::Message::Builder root = nullptr;
      auto m = message(7, root);
      root.initError();
      junk(root.getError(), 5, Junk::LIST);  // origin: a list; an error is never answered
      raw->send(kj::mv(m));
    }
    expectEchoStillWorks(1);
  });
}

TEST_F(ViolationTest, AnUnexpectedChannelLevelMessageIsRefusedByItsName) {
  run([&]() {
    sendHello();
    {
      wire::Message::Builder root = nullptr;
      auto m = message(0, root);
      root.initSpawnSpec();  // only a parent sends one, right after the hellos
      raw->send(kj::mv(m));
    }
    expectViolation(0, "spawnSpec is not expected on its own (call id 0) now");
    expectEchoStillWorks(1);
  });
}

TEST_F(ViolationTest, ListAsTheRootIsAChannelLevelViolation) {
  // Found by fuzz/engine_fuzz: the channel's validation accepts any root pointer; reading it as a
  // wire::Message threw out of Peer::route() and ended the channel.
  run([&]() {
    sendHello();
    capnp::MallocMessageBuilder m;
    m.initRoot<capnp::AnyPointer>().initAs<capnp::List<uint32_t>>(2);
    raw->send(m);
    expectViolation(0, "expected a Message struct, got a list pointer");
    expectEchoStillWorks(1);
  });
}

TEST_F(ViolationTest, ListAsTheRootOfTheHelloIsRefused) {
  // Found by fuzz/handshake_fuzz: the same, during the handshake (an unexpected exception).
  auto shaking = rogueConnects();
  capnp::MallocMessageBuilder m;
  m.initRoot<capnp::AnyPointer>().setAs<capnp::Text>("hello?");
  raw->send(m);
  auto failure = kj::runCatchingExceptions([&]() { shaking.wait(io.waitScope); });
  EXPECT_TRUE(isProtocolViolation(KJ_ASSERT_NONNULL(failure)));
  EXPECT_EQ(next()->getRoot<wire::Message>().getError().getKind(),
            wire::ErrorKind::PROTOCOL_VIOLATION);
}

TEST_F(ViolationTest, MalformedHelloIsRefused) {
  auto shaking = rogueConnects();
  wire::Message::Builder root = nullptr;
  auto m = message(0, root);
  root.initHello().setProtocolVersion(wire::PROTOCOL_VERSION);
  junk(root.getHello(), 0, Junk::TEXT);  // id: Text, not an ActorId
  raw->send(kj::mv(m));
  auto failure = kj::runCatchingExceptions([&]() { shaking.wait(io.waitScope); });
  EXPECT_TRUE(isProtocolViolation(KJ_ASSERT_NONNULL(failure)));
  auto reader = next();
  auto reply = reader->getRoot<wire::Message>();
  ASSERT_TRUE(reply.isError());
  EXPECT_NE(std::string(reply.getError().getMessage().cStr()).find("hello is malformed"),
            std::string::npos) << reply.getError().getMessage().cStr();
}

// The victim as the caller: what a callee answers is checked the same way.
class CallerViolationTest : public ViolationTest {
protected:
  kj::Own<Peer> peer;
  kj::Promise<void> serving = nullptr;

  void connect() {
    auto shaking = rogueConnects();
    sendHello();
    peer = shaking.wait(io.waitScope);
    serving = peer->serve().then([]() {}, [](kj::Exception&&) {}).eagerlyEvaluate(nullptr);
  }

  ~CallerViolationTest() noexcept override {
    raw = nullptr;
    serving.wait(io.waitScope);
    peer->whenDrained().wait(io.waitScope);
  }

  kj::Promise<void> echo(kj::Maybe<kj::Exception>& failure) {
    return callMethod<probe::Words, probe::Words>(
               *peer, PROBE_ID, 0, [](probe::Words::Builder b) { b.setText("x"); })
        .then([](Received<probe::Words> r) { r->getText(); },
              [&failure](kj::Exception&& e) { failure = kj::mv(e); })
        .eagerlyEvaluate(nullptr);
  }

  // The victim's next start; answered by `answer(root)` for its call id.
  void answerNextStart(kj::Function<void(wire::Message::Builder)> answer) {
    auto reader = KJ_ASSERT_NONNULL(raw->receive().wait(io.waitScope));
    while (reader->getRoot<wire::Message>().isHello()) {
      reader = KJ_ASSERT_NONNULL(raw->receive().wait(io.waitScope));
    }
    auto start = reader->getRoot<wire::Message>();
    ASSERT_TRUE(start.isStart());
    wire::Message::Builder root = nullptr;
    auto m = message(start.getCallId(), root);
    answer(root);
    raw->send(kj::mv(m));
  }
};

TEST_F(CallerViolationTest, ReturnOfTheWrongKindFailsTheCallWithAViolation) {
  connect();
  kj::Maybe<kj::Exception> failure;
  auto call = echo(failure);
  answerNextStart([](wire::Message::Builder m) { junk(m, 0, Junk::TEXT); });  // return: Text
  call.wait(io.waitScope);
  EXPECT_TRUE(isProtocolViolation(KJ_ASSERT_NONNULL(failure)));
  expectViolation(2, "malformed message");

  failure = nullptr;
  auto second = echo(failure);  // a well-typed return whose value is a list
  answerNextStart([](wire::Message::Builder m) {
    m.initReturn().setTypeId(capnp::typeId<probe::Words>());
    junk(m.getReturn(), 0, Junk::LIST);
  });
  second.wait(io.waitScope);
  EXPECT_TRUE(isProtocolViolation(KJ_ASSERT_NONNULL(failure)));
}

TEST_F(CallerViolationTest, MalformedErrorFailsTheCallAndIsNotAnswered) {
  connect();
  kj::Maybe<kj::Exception> failure;
  auto call = echo(failure);
  answerNextStart([](wire::Message::Builder m) {
    m.initError();
    junk(m.getError(), 1, Junk::STRUCT);  // message: a struct, not Text
  });
  call.wait(io.waitScope);
  EXPECT_TRUE(isProtocolViolation(KJ_ASSERT_NONNULL(failure)));
  // Nothing came back for the error: the next message is the following call's start.
  auto second = echo(failure);
  answerNextStart([](wire::Message::Builder m) {
    m.initReturn().setTypeId(capnp::typeId<probe::Words>());
    m.getReturn().initValue().initAs<probe::Words>().setText("ok");
  });
  failure = nullptr;
  second.wait(io.waitScope);
  EXPECT_TRUE(failure == nullptr);
}

TEST_F(CallerViolationTest, AmplifiedErrorFailsTheCallAndIsNotWalked) {
  connect();
  kj::Maybe<kj::Exception> failure;
  auto call = echo(failure);
  answerNextStart([](wire::Message::Builder m) {
    m.initError().setMessage("boom");
    junk(m.getError(), 5, Junk::EMPTY_STRUCTS);  // relayPath: 1M hops in a few bytes
  });
  call.wait(io.waitScope);
  auto& e = KJ_ASSERT_NONNULL(failure);
  EXPECT_TRUE(isProtocolViolation(e)) << e.getDescription().cStr();
  EXPECT_NE(std::string(e.getDescription().cStr()).find("traversal limit"), std::string::npos)
      << e.getDescription().cStr();
}

TEST_F(CallerViolationTest, ReturnBeforeStartAckFailsTheStream) {
  // Found by fuzz/engine_fuzz: a `return` in answer to a stream's start (the callee's method is
  // a call) left the caller waiting for a startAck forever.
  connect();
  kj::Maybe<kj::Exception> failure;
  auto opened = streamMethod<probe::Count, probe::Item>(
      *peer, PROBE_ID, 3, [](probe::Count::Builder) {},
      [](ReceiveStream<probe::Item>&) -> Co<void> { co_return; })
      .then([]() {}, [&failure](kj::Exception&& e) { failure = kj::mv(e); })
      .eagerlyEvaluate(nullptr);
  uint64_t callId = 0;
  answerNextStart([&](wire::Message::Builder m) {
    callId = m.getCallId();
    m.initReturn().setTypeId(capnp::typeId<probe::Empty>());
  });
  opened.wait(io.waitScope);
  EXPECT_TRUE(isProtocolViolation(KJ_ASSERT_NONNULL(failure)));
  expectViolation(callId, "return before startAck");
}

TEST_F(CallerViolationTest, StartedOfTheWrongKindFailsTheContext) {
  connect();
  kj::Maybe<kj::Exception> failure;
  auto opened = contextMethod<probe::Count, probe::Count, probe::Count, probe::Item, probe::Item>(
                    *peer, PROBE_ID, 1, [](probe::Count::Builder) {},
                    [](CallerContext<probe::Count, probe::Item, probe::Item>&,
                       probe::Count::Reader) -> Co<void> { co_return; })
                    .then([](Received<probe::Count>) {},
                          [&failure](kj::Exception&& e) { failure = kj::mv(e); })
                    .eagerlyEvaluate(nullptr);
  uint64_t callId = 0;
  answerNextStart([&](wire::Message::Builder m) {
    callId = m.getCallId();
    m.initStartAck().setKind(MethodKind::CONTEXT);
  });
  {
    wire::Message::Builder root = nullptr;
    auto m = message(callId, root);
    root.initStarted().setTypeId(capnp::typeId<probe::Count>());
    junk(root.getStarted(), 0, Junk::LIST);  // the started value is a list
    raw->send(kj::mv(m));
  }
  opened.wait(io.waitScope);
  EXPECT_TRUE(isProtocolViolation(KJ_ASSERT_NONNULL(failure)));
  expectViolation(callId, "expected a Count struct");
}

}  // namespace
}  // namespace harrow
