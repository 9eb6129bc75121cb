// Messages over a channel's frame limit: every kind of message, in each direction, at one byte
// under, at, and one byte over the limit. Under and at the limit it goes through; over it, the
// sender gets harrow.MessageTooLarge where it sent it (or, for a result or an error, the caller
// gets an error result naming the limit), nothing stray goes on the wire, nobody logs a warning,
// and the channel carries on. Two in-process peers over a socketpair, with a 64 KiB-ish limit.

#include <harrow/actor/actor.h>
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
using probe::Words;

constexpr uint64_t PROBE_ID = 0x1234;
// The size of the text each case sends: its frame is a little over 64 KiB.
constexpr uint32_t TEXT_BYTES = 64000;
constexpr size_t GENEROUS = 1u << 20;

enum Method : uint16_t { PARAMS, RESULT, STREAM, STARTED, CALLEE_ITEM, CALLER_ITEM, FAIL, ECHO };

kj::String text(size_t bytes) {
  auto result = kj::heapString(bytes);
  for (auto& c : result) c = 'x';
  return result;
}

// Every KJ log line, from both peers (they share the thread).
class LogCapture final : public kj::ExceptionCallback {
public:
  std::vector<std::string> warnings;  // WARNING and above

  void logMessage(kj::LogSeverity severity, const char* file, int line, int contextDepth,
                  kj::String&& text) override {
    if (severity >= kj::LogSeverity::WARNING) warnings.push_back(text.cStr());
    next.logMessage(severity, file, line, contextDepth, kj::mv(text));
  }
};

// Sends (or has the callee send) one message of the kind each method is named after. The size of
// that message's frame, measured as the channel measures it (Peer::frameBytes), goes to
// `measured`.
class ProbeServer final : public ActorServer {
public:
  size_t measured = 0;
  uint32_t handled = 0;  // handlers started

  uint64_t interfaceId() const override { return PROBE_ID; }
  kj::StringPtr interfaceName() const override { return "Probe"; }
  kj::Maybe<MethodKind> methodKind(uint16_t id) const override {
    switch (id) {
      case PARAMS: case RESULT: case FAIL: case ECHO: return MethodKind::CALL;
      case STREAM: return MethodKind::STREAM;
      case STARTED: case CALLEE_ITEM: case CALLER_ITEM: return MethodKind::CONTEXT;
    }
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t id) const override {
    static const char* const NAMES[] = {"params", "result", "stream", "started", "calleeItem",
                                        "callerItem", "fail", "echo"};
    return NAMES[id];
  }

  Co<void> dispatch(uint16_t id, IncomingTask& task) override {
    ++handled;
    switch (id) {
      case PARAMS:
        task.results().init<Count>().setN(task.params().get<Words>().getText().size());
        co_return;
      case RESULT: {
        auto& results = task.results();
        results.init<Words>().setText(text(task.params().get<Count>().getN()));
        measured = Peer::frameBytes(results);
        co_return;
      }
      case STREAM:
        co_await sendItem(task, task.params().get<Count>().getN());
        co_return;
      case STARTED: {
        auto value = task.newStarted();
        value->init<Words>().setText(text(task.params().get<Count>().getN()));
        measured = Peer::frameBytes(*value);
        co_await task.sendStarted(kj::mv(value));
        co_await drain(task);
        co_return;
      }
      case CALLEE_ITEM:
        co_await sendSmallStarted(task);
        co_await sendItem(task, task.params().get<Count>().getN());
        co_await drain(task);
        co_return;
      case CALLER_ITEM: {
        co_await sendSmallStarted(task);
        uint32_t total = 0;
        for (;;) {
          auto item = co_await task.receive();
          KJ_IF_MAYBE(i, item) {
            total += (*i)->get<Words>().getText().size();
          } else {
            break;
          }
        }
        task.results().init<Count>().setN(total);
        co_return;
      }
      case FAIL:
        kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, "probe", 1,
                                              text(task.params().get<Count>().getN())));
      case ECHO: {
        ServerCall<Words, Words> call(task);
        call.results().setText(call.params().getText());
        co_return;
      }
    }
    KJ_UNREACHABLE;
  }

private:
  Co<void> drain(IncomingTask& task) {
    for (;;) {
      auto item = co_await task.receive();
      if (item == nullptr) co_return;
    }
  }
  Co<void> sendItem(IncomingTask& task, uint32_t bytes) {
    auto item = task.newItem();
    item->init<Words>().setText(text(bytes));
    measured = Peer::frameBytes(*item);
    co_await task.send(kj::mv(item));
  }
  Co<void> sendSmallStarted(IncomingTask& task) {
    auto value = task.newStarted();
    value->init<Words>().setText("ready");
    co_await task.sendStarted(kj::mv(value));
  }
};

class FrameLimitTest : public testing::TwoActorTest<> {
protected:
  ~FrameLimitTest() noexcept override {}

  LogCapture* logs = nullptr;  // each test's, on its stack (KJ requires that of callbacks)
  ProbeServer* server = nullptr;
  size_t measured = 0;                 // the client's own measurements
  kj::Maybe<kj::Exception> outcome;    // how the attempt ended

  FrameLimitTest() {
    auto owned = kj::heap<ProbeServer>();
    server = owned.get();
    serverActor.addServer(kj::mv(owned));
  }

  // Connects the actors over a socketpair with these limits and runs `body` with the client's
  // peer while both sides serve; then closes the client's channel.
  void run(size_t clientLimit, size_t serverLimit,
           kj::Function<kj::Promise<void>(Peer& client)> body) {
    PeerOptions clientOptions, serverOptions;
    clientOptions.maxMessageBytes = clientLimit;
    serverOptions.maxMessageBytes = serverLimit;
    auto peers =
        testing::handshakeOverPipe(io, clientActor, serverActor, clientOptions, serverOptions);
    serve(peers, kj::mv(body));
  }

  kj::Own<OutgoingMessage> countStart(Peer& peer, Method method, uint32_t n) {
    auto start = peer.newStart(PROBE_ID, method);
    start->init<Count>().setN(n);
    return start;
  }

  // One message of `method`'s kind with a text of `bytes` bytes, its end recorded in `outcome`.
  Co<void> attempt(Peer& peer, Method method, uint32_t bytes) {
    outcome = nullptr;
    try {
      co_await attemptBody(peer, method, bytes);
    } catch (...) {
      outcome = currentException();
    }
  }

  Co<void> attemptBody(Peer& peer, Method method, uint32_t bytes) {
    switch (method) {
      case PARAMS: {
        auto start = peer.newStart(PROBE_ID, PARAMS);
        start->init<Words>().setText(text(bytes));
        measured = Peer::frameBytes(*start);
        Received<Count> reply(co_await peer.call(kj::mv(start)));
        EXPECT_EQ(reply->getN(), bytes);
        co_return;
      }
      case RESULT: {
        Received<Words> reply(co_await peer.call(countStart(peer, RESULT, bytes)));
        EXPECT_EQ(reply->getText().size(), bytes);
        co_return;
      }
      case FAIL:
        co_await peer.call(countStart(peer, FAIL, bytes));
        ADD_FAILURE() << "the handler's error did not arrive";
        co_return;
      case STREAM: {
        auto task = co_await peer.open(countStart(peer, STREAM, bytes), MethodKind::STREAM);
        uint32_t items = 0;
        for (;;) {
          auto item = co_await task->receive();
          if (item == nullptr) break;
          EXPECT_EQ(KJ_ASSERT_NONNULL(item)->get<Words>().getText().size(), bytes);
          ++items;
        }
        co_await task->result();
        EXPECT_EQ(items, 1u);
        co_return;
      }
      case STARTED: {
        auto task = co_await peer.open(countStart(peer, STARTED, bytes), MethodKind::CONTEXT);
        auto value = co_await task->started();
        EXPECT_EQ(value->get<Words>().getText().size(), bytes);
        co_await task->stop();
        co_await task->result();
        co_return;
      }
      case CALLEE_ITEM: {
        auto task = co_await peer.open(countStart(peer, CALLEE_ITEM, bytes), MethodKind::CONTEXT);
        co_await task->started();
        auto item = co_await task->receive();
        EXPECT_EQ(KJ_ASSERT_NONNULL(item)->get<Words>().getText().size(), bytes);
        co_await task->stop();
        co_await task->result();
        co_return;
      }
      case CALLER_ITEM: {
        auto task = co_await peer.open(countStart(peer, CALLER_ITEM, 0), MethodKind::CONTEXT);
        co_await task->started();
        auto item = task->newItem();
        item->init<Words>().setText(text(bytes));
        measured = Peer::frameBytes(*item);
        kj::Maybe<kj::Exception> failure;
        try {
          co_await task->send(kj::mv(item));
        } catch (...) {
          failure = currentException();
        }
        KJ_IF_MAYBE(e, failure) {
          // What typed code does when its block fails: cancel the context, wait for the ack.
          task->cancel();
          auto acknowledged = co_await task->result();
          EXPECT_TRUE(acknowledged == nullptr);
          kj::throwFatalException(kj::mv(*e));
        }
        co_await task->stop();
        auto returned = co_await task->result();
        Received<Count> result(kj::mv(KJ_ASSERT_NONNULL(returned)));
        EXPECT_EQ(result->getN(), bytes);
        co_return;
      }
      case ECHO:
        break;
    }
    KJ_UNREACHABLE;
  }

  Co<void> expectEchoWorks(Peer& peer) {
    auto reply = co_await callMethod<Words, Words>(peer, PROBE_ID, ECHO,
        [](Words::Builder p) { p.setText("still here"); });
    EXPECT_EQ(std::string(reply->getText().cStr()), "still here");
  }

  // The frame size of `method`'s message with a text of TEXT_BYTES, sent under a limit it fits.
  size_t measure(Method method) {
    measured = 0;
    server->measured = 0;
    run(GENEROUS, GENEROUS, [&](Peer& peer) { return attempt(peer, method, TEXT_BYTES); });
    KJ_IF_MAYBE(e, outcome) ADD_FAILURE() << kj::str(*e).cStr();
    size_t bytes = kj::max(measured, server->measured);
    EXPECT_GT(bytes, TEXT_BYTES);
    return bytes;
  }

  // Sends `method`'s message at one byte under, at, and one byte over the limit. `remote`: whether
  // the caller learns of the oversize from the callee (an error result) or locally.
  void checkLimits(Method method, size_t frame, bool remote, kj::StringPtr naming) {
    for (int over : {-1, 0, 1}) {
      SCOPED_TRACE(over);
      size_t limit = frame - over;  // the frame is `over` bytes over the limit
      uint32_t handledBefore = server->handled;
      run(limit, limit, [&](Peer& peer) -> Co<void> {
        EXPECT_EQ(peer.maxMessageBytes(), limit);
        co_await attempt(peer, method, TEXT_BYTES);
        co_await expectEchoWorks(peer);  // the channel carries on either way
      });
      if (over <= 0) {
        if (method == FAIL) {
          auto& e = KJ_ASSERT_NONNULL(outcome);
          EXPECT_TRUE(isRemoteActorError(e));
          EXPECT_FALSE(isMessageTooLarge(e)) << e.getDescription().cStr();
          EXPECT_EQ(KJ_ASSERT_NONNULL(remoteErrorInfo(e)).message.size(), TEXT_BYTES);
        } else KJ_IF_MAYBE(e, outcome) {
          ADD_FAILURE() << kj::str(*e).cStr();
        }
        continue;
      }
      auto& e = KJ_ASSERT_NONNULL(outcome, "a message over the limit went through");
      std::string description = e.getDescription().cStr();
      EXPECT_TRUE(isMessageTooLarge(e)) << description;
      EXPECT_EQ(isRemoteActorError(e), remote) << description;
      EXPECT_NE(description.find(kj::str("over the limit of ", limit, " bytes").cStr()),
                std::string::npos) << description;
      EXPECT_NE(description.find(naming.cStr()), std::string::npos) << description;
      if (method == PARAMS) {
        // The start never left: the callee never heard of the call.
        EXPECT_EQ(server->handled, handledBefore + 1) << "only the echo reached the callee";
      }
    }
    EXPECT_TRUE(logs->warnings.empty()) << logs->warnings.front();
  }
};

TEST_F(FrameLimitTest, CallParams) {
  LogCapture capture;
  logs = &capture;
  checkLimits(PARAMS, measure(PARAMS), false,
              "the start of the call method 0 of interface 1234 to actor 'server'");
}

TEST_F(FrameLimitTest, CallResultBecomesAnErrorResult) {
  LogCapture capture;
  logs = &capture;
  checkLimits(RESULT, measure(RESULT), true, "the result of Probe.result#");
}

TEST_F(FrameLimitTest, StreamItem) {
  LogCapture capture;
  logs = &capture;
  checkLimits(STREAM, measure(STREAM), true, "a stream item (Words) of Probe.stream#");
}

TEST_F(FrameLimitTest, ContextStartedValue) {
  LogCapture capture;
  logs = &capture;
  checkLimits(STARTED, measure(STARTED), true, "the started value (Words) of Probe.started#");
}

TEST_F(FrameLimitTest, ContextItemFromCallee) {
  LogCapture capture;
  logs = &capture;
  checkLimits(CALLEE_ITEM, measure(CALLEE_ITEM), true,
              "a stream item (Words) of Probe.calleeItem#");
}

TEST_F(FrameLimitTest, ContextItemFromCaller) {
  LogCapture capture;
  logs = &capture;
  checkLimits(CALLER_ITEM, measure(CALLER_ITEM), false,
              "a stream item (Words) of the context method 5 of interface 1234 to actor 'server'");
}

TEST_F(FrameLimitTest, ErrorTooLargeIsReplacedByOneThatFits) {
  LogCapture capture;
  logs = &capture;
  // The engine builds the error frame; a run under a small limit reports its size.
  run(8192, 8192, [&](Peer& peer) { return attempt(peer, FAIL, TEXT_BYTES); });
  auto& e = KJ_ASSERT_NONNULL(outcome);
  ASSERT_TRUE(isMessageTooLarge(e)) << e.getDescription().cStr();
  std::string description = e.getDescription().cStr();
  auto info = KJ_ASSERT_NONNULL(remoteErrorInfo(e));
  constexpr kj::StringPtr IS = " is "_kj;
  size_t at = std::string(info.message.cStr()).find(IS.cStr());
  ASSERT_NE(at, std::string::npos) << description;
  size_t frame = strtoul(info.message.cStr() + at + IS.size(), nullptr, 10);
  EXPECT_GT(frame, TEXT_BYTES);
  checkLimits(FAIL, frame, true, "the error raised by Probe.fail#");
  // The replacement quotes the beginning of the original.
  EXPECT_NE(description.find("it begins: xxxx"), std::string::npos) << description;
}

// The N of "... is at least N bytes", or 0.
size_t atLeast(const std::string& description) {
  size_t at = description.find("is at least ");
  return at == std::string::npos ? 0 : strtoull(description.c_str() + at + 12, nullptr, 10);
}

// A value far over the limit is refused while it is being copied into the message, before the
// message holds memory of its size: refusing it costs neither a copy nor that memory.
TEST_F(FrameLimitTest, AValueFarOverTheLimitIsRefusedBeforeItIsCopiedIn) {
  LogCapture capture;
  logs = &capture;
  constexpr size_t LIMIT = 64u << 10;
  constexpr size_t HUGE = 16u << 20;
  auto huge = text(HUGE);
  run(LIMIT, LIMIT, [&](Peer& peer) -> Co<void> {
    uint32_t handledBefore = server->handled;
    auto start = peer.newStart(PROBE_ID, PARAMS);
    start->setKind(MethodKind::CALL);
    auto params = start->init<Words>();
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { params.setText(huge); })) {
      std::string description = e->getDescription().cStr();
      EXPECT_TRUE(isMessageTooLarge(*e)) << description;
      EXPECT_NE(description.find(kj::str("the start of the call method 0 of interface 1234 to "
                                         "actor 'server' (").cStr()),
                std::string::npos) << description;
      EXPECT_GT(atLeast(description), HUGE) << description;
      EXPECT_NE(description.find(kj::str("over the limit of ", LIMIT, " bytes").cStr()),
                std::string::npos) << description;
    } else {
      ADD_FAILURE() << "a value of " << HUGE << " bytes went into a message under a limit of "
                    << LIMIT;
    }
    EXPECT_LT(Peer::frameBytes(*start), LIMIT) << "the message took the value in after all";

    // A result: the handler's copy fails the same way, and the caller hears of it.
    co_await attempt(peer, RESULT, HUGE);
    auto& e = KJ_ASSERT_NONNULL(outcome);
    std::string description = e.getDescription().cStr();
    EXPECT_TRUE(isMessageTooLarge(e)) << description;
    EXPECT_NE(description.find("the result of Probe.result#"), std::string::npos) << description;
    EXPECT_GT(atLeast(description), HUGE) << description;
    EXPECT_EQ(server->handled, handledBefore + 1) << "the refused start reached the callee";
    co_await expectEchoWorks(peer);
  });
  EXPECT_TRUE(logs->warnings.empty()) << logs->warnings.front();
}

TEST_F(FrameLimitTest, TheSmallerLimitOfTheTwoSidesApplies) {
  LogCapture capture;
  logs = &capture;
  run(64 << 10, GENEROUS, [&](Peer& peer) -> Co<void> {
    EXPECT_EQ(peer.maxMessageBytes(), 64u << 10);
    EXPECT_EQ(peer.channel().maxFrameBytes(), 64u << 10);
    // The server's larger limit does not let its result through to us.
    co_await attempt(peer, RESULT, 70000);
    auto& e = KJ_ASSERT_NONNULL(outcome);
    EXPECT_TRUE(isMessageTooLarge(e)) << e.getDescription().cStr();
    co_await expectEchoWorks(peer);
  });
  EXPECT_TRUE(logs->warnings.empty()) << logs->warnings.front();
}

TEST_F(FrameLimitTest, TheActorsLimitIsTheDefault) {
  LogCapture capture;
  logs = &capture;
  clientActor.setMaxMessageBytes(100000);
  serverActor.setMaxMessageBytes(200000);
  run(0, 0, [&](Peer& peer) -> Co<void> {
    EXPECT_EQ(peer.maxMessageBytes(), 100000u);
    co_return;
  });
  EXPECT_THROW(clientActor.setMaxMessageBytes(100), kj::Exception);
}

TEST_F(FrameLimitTest, OversizedFrameFromAPeerIsAViolationOfThatPeer) {
  LogCapture capture;
  logs = &capture;
  // A rogue peer that states a 64 KiB limit in its hello, and then sends a larger frame anyway.
  auto pipe = io.provider->newTwoWayPipe();
  ChannelOptions rogueOptions;
  rogueOptions.maxFrameBytes = GENEROUS;
  auto rogue = kj::heap<Channel>(kj::mv(pipe.ends[0]), rogueOptions);
  PeerOptions options;
  options.maxMessageBytes = 64 << 10;
  auto victimSide = handshake(kj::heap<Channel>(kj::mv(pipe.ends[1])), serverActor, false, options);
  {
    // The rogue knows the tree's secret: it passes the handshake and breaks the limit later.
    capnp::MallocMessageBuilder hello;
    auto h = hello.initRoot<wire::Message>().initHello();
    ActorIdentity::random("rogue").toWire(h.initId());
    h.setProtocolVersion(wire::PROTOCOL_VERSION);
    h.setMaxMessageBytes(64 << 10);
    setHelloNonce(h);
    rogue->send(hello);
    auto theirs = KJ_ASSERT_NONNULL(rogue->receive().wait(io.waitScope));  // the victim's hello
    auto mac = handshakeProof(serverActor.treeSecret(), HandshakeRole::OPENER, h.asReader(),
                              theirs->getRoot<wire::Message>().getHello());
    capnp::MallocMessageBuilder proof;
    proof.initRoot<wire::Message>().setAuthenticate(capnp::Data::Reader(mac.begin(), mac.size()));
    rogue->send(proof);
  }
  auto victim = victimSide.wait(io.waitScope);
  EXPECT_EQ(victim->maxMessageBytes(), 64u << 10);
  KJ_ASSERT_NONNULL(rogue->receive().wait(io.waitScope));  // the victim's proof

  capnp::MallocMessageBuilder big;
  auto root = big.initRoot<wire::Message>();
  root.setCallId(1);
  auto start = root.initStart();
  start.setInterfaceId(PROBE_ID);
  start.setMethodId(ECHO);
  start.initParams().initValue().initAs<Words>().setText(text(70000));
  rogue->send(big);

  kj::Maybe<kj::Exception> failure;
  serverActor.serve([&]() -> Co<void> {
    try {
      co_await victim->serve();
    } catch (...) {
      failure = currentException();
    }
  }).wait(io.waitScope);
  auto& e = KJ_ASSERT_NONNULL(failure);
  EXPECT_TRUE(isMessageTooLarge(e)) << e.getDescription().cStr();
  EXPECT_TRUE(isMalformedFrame(e));
  EXPECT_EQ(server->handled, 0u);

  // The rogue is told why (callId 0, protocolViolation), and the victim logged the violation.
  auto reply = KJ_ASSERT_NONNULL(rogue->receive().wait(io.waitScope));
  auto m = reply->getRoot<wire::Message>();
  ASSERT_TRUE(m.isError());
  EXPECT_EQ(m.getCallId(), 0u);
  EXPECT_EQ(m.getError().getKind(), wire::ErrorKind::PROTOCOL_VIOLATION);
  EXPECT_TRUE(isMessageTooLarge(toException(m.getError())));
  EXPECT_TRUE(isProtocolViolation(toException(m.getError())));
  ASSERT_EQ(logs->warnings.size(), 1u);
  EXPECT_NE(logs->warnings[0].find("protocol violation by peer"), std::string::npos);
}

TEST(MessageLimitSetting, Parses) {
  EXPECT_EQ(parseMessageBytes("65536"), 65536u);
  EXPECT_EQ(parseMessageBytes("64K"), 65536u);
  EXPECT_EQ(parseMessageBytes("256M"), 256u << 20);
  EXPECT_EQ(parseMessageBytes("1G"), 1u << 30);
  for (const char* bad : {"", "M", "12Q", "-5", "1.5M", "100", "4095"}) {
    EXPECT_THROW(parseMessageBytes(bad), kj::Exception) << bad;
  }
}

}  // namespace
}  // namespace harrow
