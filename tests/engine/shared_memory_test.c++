// Large frames through shared memory (docs/PROTOCOL.md, "Large frames through shared memory"):
// stream items, params and results of 1 KiB, 64 KiB, 1 MiB and 3 MiB arrive intact over a Unix
// socket (through the ring above the threshold, as sealed memfds above the ring's size) and over
// TCP (the socket: no fds there); a full ring holds frames back until the receiver frees space; a
// peer that sends bad ring or file references is answered with a protocol violation and loses its
// channel; rings and sealed frames leave no fd or mapping behind.

#include <harrow/actor/actor.h>
#include <harrow/ipc/fd_stream.h>
#include <harrow/ipc/shared_ring.h>
#include <harrow/ipc/transport.h>
#include <harrow/typed/typed.h>
#include "tests/engine/probe.capnp.h"
#include "tests/names.h"

#include "tests/engine/serve_pair.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <sys/mman.h>
#include <unistd.h>

#include <string>

namespace harrow {
namespace {

using probe::Blob;
using probe::BlobRequest;

constexpr uint64_t BULK_ID = 0x5a5a;
enum Method : uint16_t { BLOBS, ECHO_BLOB };

kj::byte patternByte(uint32_t seq, size_t i) { return kj::byte(seq * 31 + i * 7 + (i >> 12)); }

void fill(Blob::Builder blob, uint32_t seq, size_t bytes) {
  blob.setSeq(seq);
  auto data = blob.initData(bytes);
  for (size_t i = 0; i < bytes; i++) data[i] = patternByte(seq, i);
}

bool dataIntact(capnp::Data::Reader data, uint32_t seq, size_t bytes) {
  if (data.size() != bytes) return false;
  for (size_t i = 0; i < bytes; i++) {
    if (data[i] != patternByte(seq, i)) return false;
  }
  return true;
}

bool intact(Blob::Reader blob, uint32_t seq, size_t bytes) {
  return blob.getSeq() == seq && dataIntact(blob.getData(), seq, bytes);
}

class BulkServer final : public ActorServer {
public:
  uint64_t interfaceId() const override { return BULK_ID; }
  kj::StringPtr interfaceName() const override { return "Bulk"; }
  kj::Maybe<MethodKind> methodKind(uint16_t id) const override {
    if (id == BLOBS) return MethodKind::STREAM;
    if (id == ECHO_BLOB) return MethodKind::CALL;
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t id) const override { return id == BLOBS ? "blobs" : "echo"; }
  Co<void> dispatch(uint16_t id, IncomingTask& task) override {
    if (id == ECHO_BLOB) {
      ServerCall<Blob, Blob> call(task);
      call.results().setSeq(call.params().getSeq() + 1);
      call.results().setData(call.params().getData());
      co_return;
    }
    ServerStream<BlobRequest, Blob> call(task);
    uint32_t count = call.params().getCount();
    uint32_t bytes = call.params().getBytes();
    for (uint32_t seq = 0; seq < count; ++seq) {
      co_await call.yield([&](Blob::Builder blob) { fill(blob, seq, bytes); });
    }
  }
};

size_t ringMappings() {
  return testing::mappingsOf("harrow-ring");
}
size_t sealedFrameMappings() {
  return testing::mappingsOf("harrow-frame");
}

class SharedMemoryTest : public testing::TwoActorTest<::testing::TestWithParam<const char*>> {
protected:
  ~SharedMemoryTest() noexcept override {}

  kj::Own<Peer> clientPeer;
  kj::Own<Peer> serverPeer;

  SharedMemoryTest() { serverActor.addServer(kj::heap<BulkServer>()); }

  bool overUnixSocket() const { return kj::StringPtr(GetParam()) != "tcp"; }

  void run(kj::Function<kj::Promise<void>(Peer& client)> body, PeerOptions options = {}) {
    testing::ChannelPair channels;
    kj::StringPtr transport = GetParam();
    ChannelOptions channelOptions;
    channelOptions.eventPort = io.unixEventPort;
    if (transport == "socketpair") {
      channels = testing::socketpairChannels(io.unixEventPort);
    } else {
      auto address = transport == "tcp" ? kj::str("tcp:127.0.0.1:0")
                                        : testing::uniqueAbstractAddress("shm");
      channels = testing::channelsThroughListener(io, address, channelOptions);
    }
    auto peers = testing::connectPeers(io.waitScope, kj::mv(channels), clientActor, serverActor,
                                       options, options);
    clientPeer = kj::mv(peers.client);
    serverPeer = kj::mv(peers.server);
    testing::servePair(io.waitScope, clientActor, *clientPeer, serverActor, *serverPeer,
                       kj::mv(body));
  }

  // Streams `count` items of `bytes` and checks every one; then a call whose params and result
  // are as large.
  Co<void> streamAndEcho(Peer& peer, uint32_t count, uint32_t bytes) {
    uint32_t next = 0;
    co_await streamMethod<BlobRequest, Blob>(peer, BULK_ID, BLOBS,
        [&](BlobRequest::Builder p) {
          p.setCount(count);
          p.setBytes(bytes);
        },
        [&](ReceiveStream<Blob>& items) -> Co<void> {
          while (auto item = co_await items.receive()) {
            EXPECT_TRUE(intact(*item, next, bytes)) << "item " << next << " of " << bytes;
            ++next;
          }
        });
    EXPECT_EQ(next, count);
    auto reply = co_await callMethod<Blob, Blob>(peer, BULK_ID, ECHO_BLOB,
        [&](Blob::Builder p) { fill(p, 7, bytes); });
    EXPECT_EQ(reply->getSeq(), 8u);
    EXPECT_EQ(reply->getData(), [&]() {
      auto expected = kj::heapArray<kj::byte>(bytes);
      for (size_t i = 0; i < bytes; i++) expected[i] = patternByte(7, i);
      return expected;
    }().asPtr());
  }
};

TEST_P(SharedMemoryTest, ItemsOfEverySizeArriveIntact) {
  struct Case { uint32_t bytes; uint32_t count; };
  for (Case c :
       {Case{1u << 10, 200}, Case{64u << 10, 100}, Case{1u << 20, 12}, Case{3u << 20, 4}}) {
    SCOPED_TRACE(c.bytes);
    run([&](Peer& peer) -> Co<void> { co_await streamAndEcho(peer, c.count, c.bytes); });
    auto& server = serverPeer->channel().sharedMemoryCounts();
    auto& client = clientPeer->channel().sharedMemoryCounts();
    bool large = c.bytes > PeerOptions().sharedMemoryThreshold;
    bool file = c.bytes > PeerOptions().sharedMemoryRingBytes;
    if (overUnixSocket() && large) {
      // Every item and the echo's result came through the server's ring (or each as a sealed
      // memfd, if too large for it), the params through the client's.
      EXPECT_EQ(server.framesSent, c.count + 1);
      EXPECT_EQ(client.framesReceived, c.count + 1);
      EXPECT_EQ(client.framesSent, 1u);
      EXPECT_EQ(server.framesReceived, 1u);
      EXPECT_EQ(server.filesSent, file ? c.count + 1 : 0u);
      EXPECT_EQ(client.filesReceived, file ? c.count + 1 : 0u);
      EXPECT_EQ(client.filesSent, file ? 1u : 0u);
    } else {
      // Small items, or TCP (no fd passing: the hellos do not offer shared memory).
      EXPECT_EQ(server.framesSent + client.framesSent, 0u);
    }
    clientPeer = nullptr;
    serverPeer = nullptr;
  }
}

TEST_P(SharedMemoryTest, ThresholdZeroKeepsLargeItemsOnTheSocket) {
  PeerOptions options;
  options.sharedMemoryThreshold = 0;
  run([&](Peer& peer) -> Co<void> { co_await streamAndEcho(peer, 20, 64u << 10); }, options);
  EXPECT_EQ(serverPeer->channel().sharedMemoryCounts().framesSent, 0u);
  EXPECT_EQ(ringMappings(), 0u);
}

TEST_P(SharedMemoryTest, AFullRingHoldsFramesBackUntilTheReceiverFreesSpace) {
  // Room for three 64 KiB items: a window of 64 items outruns the ring at once, so frames wait
  // (in order, with everything behind them) for the receiver's sharedMemoryFreed.
  PeerOptions options;
  options.sharedMemoryRingBytes = 200u << 10;
  run([&](Peer& peer) -> Co<void> { co_await streamAndEcho(peer, 300, 64u << 10); }, options);
  if (overUnixSocket()) {
    EXPECT_EQ(serverPeer->channel().sharedMemoryCounts().framesSent, 301u);
    EXPECT_GT(serverPeer->channel().sharedMemoryCounts().waitsForSpace, 0u);
  }
}

TEST_P(SharedMemoryTest, ManyChannelsLeaveNoFdOrMappingBehind) {
  size_t fdsBefore = testing::openFds();
  size_t mappingsBefore = ringMappings();
  for (int i = 0; i < 30; ++i) {
    run([&](Peer& peer) -> Co<void> { co_await streamAndEcho(peer, 3, 32u << 10); });
    // While a channel lives, its rings stay mapped (no fds: the fd goes once mapped): two
    // rings, each mapped by its writer and its reader, both in this process.
    if (overUnixSocket()) {
      EXPECT_EQ(ringMappings(), mappingsBefore + 4);
    }
    clientPeer = nullptr;
    serverPeer = nullptr;
  }
  EXPECT_EQ(testing::openFds(), fdsBefore);
  EXPECT_EQ(ringMappings(), mappingsBefore);
}

TEST_P(SharedMemoryTest, SealedFramesLeaveNoFdOrMappingBehind) {
  size_t fdsBefore = testing::openFds();
  for (int i = 0; i < 4; ++i) {
    run([&](Peer& peer) -> Co<void> { co_await streamAndEcho(peer, 2, 3u << 20); });
    clientPeer = nullptr;
    serverPeer = nullptr;
    EXPECT_EQ(sealedFrameMappings(), 0u);
  }
  EXPECT_EQ(testing::openFds(), fdsBefore);
}

INSTANTIATE_TEST_SUITE_P(Transports, SharedMemoryTest,
                         ::testing::Values("socketpair", "unix", "tcp"));

// ---------------------------------------------------------------------------------------------
// A peer that sends bad references: a protocol violation, and its channel is closed.

class HostileRingTest : public ::testing::Test {
protected:
  ~HostileRingTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  Actor actor{io, ActorIdentity::random("victim")};
  kj::Own<Channel> raw;
  testing::SharedFrameRecord sent;  // where the rogue's ring continues: sent.ringEnd

  HostileRingTest() { actor.addServer(kj::heap<BulkServer>()); }

  // The opener's handshake by hand, offering shared memory.
  void handshakeRaw() {
    capnp::MallocMessageBuilder ours;
    auto hello = ours.initRoot<wire::Message>().initHello();
    ActorIdentity::random("rogue").toWire(hello.initId());
    hello.setProtocolVersion(wire::PROTOCOL_VERSION);
    hello.setSharedMemory(true);
    setHelloNonce(hello);
    raw->send(ours);
    auto theirs = KJ_ASSERT_NONNULL(raw->receive().wait(io.waitScope));
    auto opener = ours.getRoot<wire::Message>().getHello().asReader();
    auto acceptor = theirs->getRoot<wire::Message>().getHello();
    EXPECT_TRUE(acceptor.getSharedMemory());
    auto proof = handshakeProof(actor.treeSecret(), HandshakeRole::OPENER, opener, acceptor);
    capnp::MallocMessageBuilder m;
    m.initRoot<wire::Message>().setAuthenticate(capnp::Data::Reader(proof.begin(), proof.size()));
    raw->send(m);
    auto answer = KJ_ASSERT_NONNULL(raw->receive().wait(io.waitScope));
    KJ_ASSERT(answer->getRoot<wire::Message>().isAuthenticate());
  }

  // A large echo through the rogue's ring (set up properly): the victim answers it.
  void echoThroughRing() {
    raw->sendLargeFramesThroughSharedMemory(kj::heap<testing::RecordingCodec>(sent), 16u << 10,
                                            1u << 20);
    auto m = kj::heap<capnp::MallocMessageBuilder>();
    auto root = m->initRoot<wire::Message>();
    root.setCallId(1);
    auto start = root.initStart();
    start.setInterfaceId(BULK_ID);
    start.setMethodId(ECHO_BLOB);
    fill(start.initParams().initValue().initAs<Blob>(), 1, 100u << 10);
    start.getParams().setTypeId(capnp::typeId<Blob>());
    raw->send(kj::mv(m));
    for (;;) {
      auto reader = KJ_ASSERT_NONNULL(raw->receive().wait(io.waitScope));
      auto reply = reader->getRoot<wire::Message>();
      if (reply.isSharedMemoryRing()) {
        raw->adoptSharedRing(reply.getSharedMemoryRing());
        continue;
      }
      ASSERT_TRUE(reply.isSharedMemoryFrame()) << static_cast<int>(reply.which());
      bool notify;
      auto frame = raw->receiveShared(reply.getSharedMemoryFrame().getStart(),
                                      reply.getSharedMemoryFrame().getLength(), notify);
      auto result = frame->getRoot<wire::Message>();
      ASSERT_TRUE(result.isReturn());
      auto echoed = result.getReturn().getValue().getAs<Blob>();
      EXPECT_EQ(echoed.getSeq(), 2u);
      EXPECT_TRUE(dataIntact(echoed.getData(), 1, 100u << 10));
      return;
    }
  }

  void sendReference(uint64_t start, uint64_t length) {
    capnp::MallocMessageBuilder m;
    auto frame = m.initRoot<wire::Message>().initSharedMemoryFrame();
    frame.setStart(start);
    frame.setLength(length);
    raw->send(m);
  }

  // Runs the victim while `body` misbehaves; then expects a channel-level protocol violation
  // that mentions `containing`, and the channel closed.
  void expectViolation(kj::Function<void()> body, kj::StringPtr containing) {
    auto channels = testing::socketpairChannels(io.unixEventPort);
    raw = kj::mv(channels.client);
    auto victim = kj::mv(channels.server);
    bool malformed = false;
    auto served = actor.serve([&]() -> Co<void> {
      auto peer = co_await handshake(kj::mv(victim), actor, false);
      try {
        co_await peer->serve();
      } catch (const kj::Exception& e) {
        malformed = isMalformedFrame(e);
      }
      co_await peer->whenDrained();
    }).eagerlyEvaluate(nullptr);
    handshakeRaw();
    body();
    kj::Maybe<kj::Own<capnp::MessageReader>> error;
    for (;;) {
      auto reader = raw->receive().wait(io.waitScope);
      KJ_IF_MAYBE(r, reader) {
        if ((*r)->getRoot<wire::Message>().isError()) {
          error = kj::mv(*r);
          break;
        }
      } else {
        break;
      }
    }
    auto& reader = KJ_ASSERT_NONNULL(error, "no error before the channel closed");
    auto m = reader->getRoot<wire::Message>();
    EXPECT_EQ(m.getCallId(), 0u);
    EXPECT_EQ(m.getError().getKind(), wire::ErrorKind::PROTOCOL_VIOLATION);
    EXPECT_NE(std::string(m.getError().getMessage().cStr()).find(containing.cStr()),
              std::string::npos) << m.getError().getMessage().cStr();
    // The victim closed the channel: EOF follows.
    while (raw->receive().wait(io.waitScope) != nullptr) {}
    served.wait(io.waitScope);
    EXPECT_TRUE(malformed);
    raw = nullptr;
  }
};

TEST_F(HostileRingTest, ARingAnnouncedWithoutItsFd) {
  expectViolation([&]() {
    capnp::MallocMessageBuilder m;
    m.initRoot<wire::Message>().setSharedMemoryRing(1u << 20);
    raw->send(m);
  }, "without its fd");
}

TEST_F(HostileRingTest, ASealedFrameWithoutItsFd) {
  expectViolation(
      [&]() {
        capnp::MallocMessageBuilder m;
        auto file = m.initRoot<wire::Message>().initSharedMemoryFile();
        file.setLength(64);
        raw->send(m);
      },
      "without its fd");
}

TEST_F(HostileRingTest, ASealedFrameTheSenderCanStillWrite) {
  size_t fdsBefore = testing::openFds();
  expectViolation(
      [&]() {
        int fd;
        KJ_SYSCALL(fd = memfd_create("rogue-frame", MFD_CLOEXEC | MFD_ALLOW_SEALING));
        KJ_SYSCALL(ftruncate(fd, 4096));
        dynamic_cast<FdStream&>(raw->getStream()).sendFdWithNextWrite(kj::AutoCloseFd(fd));
        capnp::MallocMessageBuilder m;
        auto file = m.initRoot<wire::Message>().initSharedMemoryFile();
        file.setLength(64);
        raw->send(m);
      },
      "not sealed");
  EXPECT_EQ(testing::openFds(), fdsBefore);  // the victim closed the fd it refused
}

TEST_F(HostileRingTest, AReferenceBeforeAnyRing) {
  expectViolation([&]() { sendReference(0, 64); }, "before any ring");
}

TEST_F(HostileRingTest, AReferenceOutOfOrder) {
  expectViolation([&]() {
    echoThroughRing();
    sendReference(sent.ringEnd + 8, 64);
  }, "out of order");
}

TEST_F(HostileRingTest, ALengthOverTheRing) {
  expectViolation([&]() {
    echoThroughRing();
    sendReference(sent.ringEnd, (1u << 20) + 8);
  }, "bad length");
}

TEST_F(HostileRingTest, ALengthTheSegmentTableDoesNotMatch) {
  // The ring after the last frame holds zeros: a table of one empty segment, 16 bytes, not 64.
  expectViolation([&]() {
    echoThroughRing();
    sendReference(sent.ringEnd, 64);
  }, "does not match");
}

TEST_F(HostileRingTest, AFrameThatIsItselfAReference) {
  expectViolation([&]() {
    echoThroughRing();
    // A reference placed in the ring: the channel writes it there as a large frame would be.
    auto m = kj::heap<capnp::MallocMessageBuilder>();
    auto frame = m->initRoot<wire::Message>().initSharedMemoryFrame();
    frame.setStart(0);
    frame.setLength(64);
    // Padding, so that the reference itself is over the threshold and goes through the ring.
    m->getOrphanage().newOrphan<capnp::Data>(20u << 10);  // grows the message, stays unreferenced
    raw->send(kj::mv(m));
  }, "holding another reference");
}

}  // namespace
}  // namespace harrow
