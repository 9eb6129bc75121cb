// Channel and transport over real sockets: TCP loopback, abstract and file Unix sockets.

#include <harrow/ipc/channel.h>
#include <harrow/ipc/fd_stream.h>
#include <harrow/ipc/transport.h>

#include "harrow/wire.capnp.h"
#include "tests/names.h"
#include "tests/test_util.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/io.h>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

namespace harrow {
namespace {

// Forwards to a real stream and counts write() calls, to observe coalescing. It does not report
// the inner stream's fd: a channel would otherwise do its own I/O on that fd and bypass it.
class CountingStream final : public kj::AsyncIoStream {
public:
  explicit CountingStream(kj::Own<kj::AsyncIoStream> inner, size_t& writes)
      : inner(kj::mv(inner)), writes(writes) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    return inner->tryRead(buffer, minBytes, maxBytes);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    ++writes;
    return inner->write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    ++writes;
    return inner->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner->whenWriteDisconnected(); }
  void shutdownWrite() override { inner->shutdownWrite(); }
  void abortRead() override { inner->abortRead(); }
  void setsockopt(int level, int option, const void* value, uint length) override {
    inner->setsockopt(level, option, value, length);
  }

private:
  kj::Own<kj::AsyncIoStream> inner;
  size_t& writes;
};

kj::Own<capnp::MallocMessageBuilder> callMessage(uint64_t callId, size_t payloadBytes = 0) {
  auto message = kj::heap<capnp::MallocMessageBuilder>();
  auto root = message->initRoot<wire::Message>();
  root.setCallId(callId);
  auto error = root.initError();
  error.setMessage(std::string(payloadBytes, 'x').c_str());
  return message;
}

uint64_t callIdOf(capnp::MessageReader& reader) {
  return reader.getRoot<wire::Message>().getCallId();
}

using testing::uniqueAbstractAddress;
using testing::uniqueSocketPath;

class ChannelTest : public ::testing::TestWithParam<const char*> {
protected:
  ~ChannelTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::WaitScope& ws = io.waitScope;
  kj::Network& network = io.provider->getNetwork();

  kj::String bindAddress() {
    kj::StringPtr kind = GetParam();
    if (kind == "tcp") return kj::str("tcp:127.0.0.1:0");
    if (kind == "tcp6") return kj::str("tcp:[::1]:0");
    return uniqueAbstractAddress("channel-pair");
  }

  struct Pair {
    kj::Own<Listener> listener;
    kj::Own<Channel> client;
    kj::Own<Channel> server;
  };

  // A connected client/server pair over the parameter's transport. With `writes`, the client's
  // stream counts its write calls there.
  Pair connectedPair(ChannelOptions clientOptions = {}, ChannelOptions serverOptions = {},
                     size_t* writes = nullptr) {
    clientOptions.eventPort = io.unixEventPort;  // as harrow's actors do: the fd fast path
    serverOptions.eventPort = io.unixEventPort;
    Pair pair;
    pair.listener = Listener::bind(network, bindAddress(), serverOptions).wait(ws);
    auto accepted = pair.listener->accept();
    if (writes == nullptr) {
      pair.client = connect(network, pair.listener->getAddress(), clientOptions).wait(ws);
    } else {
      auto address = Address::parse(pair.listener->getAddress());
      auto target = network.parseAddress(address.toKjAddress()).wait(ws);
      auto stream = target->connect().wait(ws);
      pair.client = kj::heap<Channel>(kj::heap<CountingStream>(kj::mv(stream), *writes),
                                      clientOptions);
    }
    pair.server = accepted.wait(ws);
    // Sockets get the channel's own fd I/O; the counting wrapper hides its fd.
    EXPECT_EQ(pair.client->usesFd(), writes == nullptr);
    EXPECT_TRUE(pair.server->usesFd());
    return pair;
  }

  kj::Exception receiveError(Channel& channel) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { channel.receive().wait(ws); })) {
      return kj::mv(*e);
    }
    ADD_FAILURE() << "receive() did not throw";
    return KJ_EXCEPTION(FAILED, "no exception");
  }
};

INSTANTIATE_TEST_SUITE_P(Transports, ChannelTest, ::testing::Values("tcp", "tcp6", "unix"));

TEST_P(ChannelTest, RoundTrip) {
  auto pair = connectedPair();
  auto request = callMessage(7, 10);
  pair.client->send(*request);
  auto received = pair.server->receive().wait(ws);
  KJ_IF_MAYBE(message, received) {
    auto root = (*message)->getRoot<wire::Message>();
    EXPECT_EQ(root.getCallId(), 7u);
    EXPECT_EQ(root.getError().getMessage(), "xxxxxxxxxx");
  } else {
    FAIL() << "unexpected EOF";
  }

  pair.server->send(callMessage(8));  // the zero-copy overload
  auto reply = KJ_ASSERT_NONNULL(pair.client->receive().wait(ws));
  EXPECT_EQ(callIdOf(*reply), 8u);
}

// 1000 messages sent in one burst of events; `writes` counts the client's stream writes, if it
// has a counting stream.
void sendBurstAndReceive(kj::WaitScope& ws, Channel& client, Channel& server) {
  constexpr uint64_t COUNT = 1000;
  for (uint64_t i = 1; i <= COUNT; i++) {
    // Mixed sizes, so frames straddle the receiver's 64 KiB reads.
    if (i % 2) {
      client.send(*callMessage(i, i % 97 * 13));
    } else {
      client.send(callMessage(i, i % 89 * 17));
    }
  }
  EXPECT_GT(client.queuedBytes(), 0u);
  // More than a Unix socket buffer holds: the flush completes only as the server reads.
  auto flushed = client.flush();

  kj::Vector<kj::Own<capnp::MessageReader>> kept;  // keep some alive: the buffer must survive
  for (uint64_t i = 1; i <= COUNT; i++) {
    auto message = KJ_ASSERT_NONNULL(server.receive().wait(ws));
    ASSERT_EQ(callIdOf(*message), i);
    size_t expectedSize = i % 2 ? i % 97 * 13 : i % 89 * 17;
    ASSERT_EQ(message->getRoot<wire::Message>().getError().getMessage().size(), expectedSize);
    if (i % 100 == 0) kept.add(kj::mv(message));
  }
  flushed.wait(ws);
  EXPECT_EQ(client.queuedBytes(), 0u);
  for (auto& message : kept) {
    EXPECT_EQ(callIdOf(*message) % 100, 0u);
    EXPECT_EQ(message->getRoot<wire::Message>().getError().getMessage().size(),
              callIdOf(*message) % 89 * 17);
  }
}

TEST_P(ChannelTest, BackToBackMessagesArriveInOrderAndCoalesce) {
  size_t writes = 0;
  auto pair = connectedPair({}, {}, &writes);
  constexpr uint64_t COUNT = 1000;
  for (uint64_t i = 1; i <= COUNT; i++) {
    // Mixed sizes, so frames straddle the receiver's 64 KiB reads.
    if (i % 2) {
      pair.client->send(*callMessage(i, i % 97 * 13));
    } else {
      pair.client->send(callMessage(i, i % 89 * 17));
    }
    // send() never writes: the write waits for the end of the loop turn.
    ASSERT_EQ(writes, 0u);
  }
  EXPECT_GT(pair.client->queuedBytes(), 0u);
  // More than a Unix socket buffer holds: the flush completes only as the server reads.
  auto flushed = pair.client->flush();

  kj::Vector<kj::Own<capnp::MessageReader>> kept;  // keep some alive: the buffer must survive
  for (uint64_t i = 1; i <= COUNT; i++) {
    auto message = KJ_ASSERT_NONNULL(pair.server->receive().wait(ws));
    ASSERT_EQ(callIdOf(*message), i);
    size_t expectedSize = i % 2 ? i % 97 * 13 : i % 89 * 17;
    ASSERT_EQ(message->getRoot<wire::Message>().getError().getMessage().size(), expectedSize);
    if (i % 100 == 0) kept.add(kj::mv(message));
  }
  flushed.wait(ws);
  EXPECT_EQ(pair.client->queuedBytes(), 0u);
  // All 1000, sent in one burst of events, went out in one write.
  EXPECT_EQ(writes, 1u);
  for (auto& message : kept) {
    EXPECT_EQ(callIdOf(*message) % 100, 0u);
    EXPECT_EQ(message->getRoot<wire::Message>().getError().getMessage().size(),
              callIdOf(*message) % 89 * 17);
  }
}

TEST_P(ChannelTest, LargeMessagesGrowTheBuffer) {
  auto pair = connectedPair();
  for (uint64_t i = 1; i <= 3; i++) pair.client->send(*callMessage(i, 3 << 20));
  for (uint64_t i = 1; i <= 3; i++) {
    auto message = KJ_ASSERT_NONNULL(pair.server->receive().wait(ws));
    EXPECT_EQ(callIdOf(*message), i);
    EXPECT_EQ(message->getRoot<wire::Message>().getError().getMessage().size(), 3u << 20);
  }
}

// A peer that announces a huge frame and sends nothing more costs nothing: the buffer grows with
// the bytes that arrive (found by fuzzing: 16 bytes used to make the channel allocate 64 MiB).
TEST(ChannelMemoryTest, AClaimedFrameSizeCostsNothingUntilItsBytesArrive) {
  auto io = kj::setupAsyncIo();
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds));
  Channel channel(io.unixEventPort, kj::AutoCloseFd(fds[0]));
  kj::AutoCloseFd peer(fds[1]);
  size_t standard = channel.bufferBytes();

  uint32_t table[2] = {0, 7u << 20};  // one segment of 7 Mi words: a 56 MiB frame, under the limit
  KJ_SYSCALL(write(peer.get(), table, sizeof(table)));
  auto receiving = channel.receive().eagerlyEvaluate(nullptr);
  io.waitScope.poll();
  EXPECT_EQ(channel.bufferBytes(), standard) << "the claim alone grew the buffer";

  // 1 MiB of the frame arrives: the buffer follows what came (doubling), not what was claimed.
  std::vector<char> chunk(64 << 10, 0);
  size_t sent = 0;
  while (sent < (1u << 20)) {
    ssize_t n = write(peer.get(), chunk.data(), chunk.size());
    if (n > 0) sent += n;
    io.waitScope.poll();  // the channel reads what is there
  }
  io.waitScope.poll();
  EXPECT_LE(channel.bufferBytes(), 4u << 20);
  EXPECT_GE(channel.bufferBytes(), 1u << 20);

  peer = nullptr;  // the rest never comes
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { receiving.wait(io.waitScope); })) {
    EXPECT_TRUE(isTransportClosed(*e)) << e->getDescription().cStr();
  } else {
    ADD_FAILURE() << "a frame cut short was received";
  }
}

// A large frame that arrives a little at a time is moved at most once after it is read, however
// many reads it takes: receiving it costs time linear in its size. (Growing the buffer used to
// copy everything received so far on each read: 63 MB took 8-35 s.)
TEST(ChannelMemoryTest, ALargeFrameArrivingInPiecesIsNotCopiedOverAndOver) {
  auto io = kj::setupAsyncIo();
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds));
  Channel channel(io.unixEventPort, kj::AutoCloseFd(fds[0]));
  kj::AutoCloseFd peer(fds[1]);
  size_t standard = channel.bufferBytes();

  constexpr size_t TEXT = 16u << 20;
  auto message = callMessage(7, TEXT);
  auto frame = capnp::messageToFlatArray(*message);
  auto bytes = frame.asBytes();
  auto receiving = channel.receive().eagerlyEvaluate(nullptr);
  for (size_t sent = 0; sent < bytes.size();) {
    ssize_t n = write(peer.get(), bytes.begin() + sent, kj::min(size_t(64) << 10, bytes.size() - sent));
    if (n > 0) sent += n;
    io.waitScope.poll();  // the channel reads what is there
  }
  auto received = KJ_ASSERT_NONNULL(receiving.wait(io.waitScope));
  EXPECT_EQ(callIdOf(*received), 7u);
  EXPECT_EQ(received->getRoot<wire::Message>().getError().getMessage().size(), TEXT);
  EXPECT_LE(channel.bytesMovedOnReceipt(), standard) << "received bytes were copied repeatedly";
  EXPECT_LE(channel.bufferBytes(), bytes.size() + standard);
}

TEST_P(ChannelTest, CleanEofIsNotAnError) {
  auto pair = connectedPair();
  pair.client->send(*callMessage(1));
  pair.client->shutdownWrite().wait(ws);
  EXPECT_ANY_THROW(pair.client->send(*callMessage(2)));

  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.server->receive().wait(ws))), 1u);
  EXPECT_TRUE(pair.server->receive().wait(ws) == nullptr);
  EXPECT_TRUE(pair.server->receive().wait(ws) == nullptr);  // and stays at EOF

  // The other direction still works after a half close.
  pair.server->send(*callMessage(3));
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.client->receive().wait(ws))), 3u);
}

TEST_P(ChannelTest, AbruptCloseIsTransportClosed) {
  auto pair = connectedPair();
  // Closing a socket with unread data in its receive queue resets the connection (TCP sends an
  // RST, a Unix socket reports ECONNRESET): the peer must see an error, not a clean EOF. On
  // loopback the data is queued by the time the sending syscall returns.
  pair.server->send(*callMessage(1));
  pair.server->flush().wait(ws);
  if (kj::StringPtr(GetParam()) != "unix") {
    struct linger hard = {1, 0};
    pair.client->getStream().setsockopt(SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  }
  pair.client = nullptr;

  auto error = receiveError(*pair.server);
  EXPECT_TRUE(isTransportClosed(error)) << error.getDescription().cStr();
  EXPECT_EQ(error.getType(), kj::Exception::Type::DISCONNECTED);
  EXPECT_FALSE(isMalformedFrame(error));
}

TEST_P(ChannelTest, WriteToAVanishedPeerIsTransportClosed) {
  auto pair = connectedPair();
  if (kj::StringPtr(GetParam()) != "unix") {
    struct linger hard = {1, 0};
    pair.server->getStream().setsockopt(SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  }
  pair.server = nullptr;

  // TCP may need a write to learn that the peer is gone; a bounded number of tries.
  kj::Maybe<kj::Exception> failure;
  for (uint64_t i = 1; i <= 100 && failure == nullptr; i++) {
    failure = kj::runCatchingExceptions([&]() {
      pair.client->send(*callMessage(i));
      pair.client->flush().wait(ws);
    });
  }
  auto& error = KJ_ASSERT_NONNULL(failure);
  EXPECT_TRUE(isTransportClosed(error)) << error.getDescription().cStr();
  // Broken for good: sending, flushing and waiting for writability all report it.
  auto again = harrow::testing::thrownBy([&]() { pair.client->send(*callMessage(1000)); });
  EXPECT_EQ(again, error.getDescription().cStr());
  EXPECT_TRUE(isTransportClosed(KJ_ASSERT_NONNULL(kj::runCatchingExceptions([&]() {
    pair.client->flush().wait(ws);
  }))));
  EXPECT_TRUE(isTransportClosed(KJ_ASSERT_NONNULL(kj::runCatchingExceptions([&]() {
    pair.client->whenWritable().wait(ws);
  }))));
}

TEST_P(ChannelTest, EofInTheMiddleOfAFrameIsTransportClosed) {
  auto pair = connectedPair();
  auto flat = capnp::messageToFlatArray(*callMessage(1, 100));
  auto bytes = flat.asBytes();
  pair.client->getStream().write(bytes.begin(), bytes.size() - 5).wait(ws);
  pair.client->getStream().shutdownWrite();

  auto error = receiveError(*pair.server);
  EXPECT_TRUE(isTransportClosed(error)) << error.getDescription().cStr();
  EXPECT_TRUE(error.getDescription().startsWith("harrow.TransportClosed: EOF in the middle"))
      << error.getDescription().cStr();
  // The channel stays broken.
  EXPECT_TRUE(isTransportClosed(receiveError(*pair.server)));
}

TEST_P(ChannelTest, OversizeFrameIsRejectedAndTheSenderIsUnaffected) {
  ChannelOptions small;
  small.maxFrameBytes = 4096;
  auto pair = connectedPair({}, small);
  pair.client->send(*callMessage(1, 100));
  pair.client->send(*callMessage(2, 10000));
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.server->receive().wait(ws))), 1u);

  auto error = receiveError(*pair.server);
  EXPECT_TRUE(isMalformedFrame(error)) << error.getDescription().cStr();
  EXPECT_FALSE(isTransportClosed(error));
  std::string description = error.getDescription().cStr();
  EXPECT_NE(description.find("harrow.MessageTooLarge: received a frame of"), std::string::npos)
      << description;
  EXPECT_NE(description.find("limit of 4096 bytes"), std::string::npos) << description;
  // Unusable from now on, with the same error.
  EXPECT_EQ(receiveError(*pair.server).getDescription(), error.getDescription());

  // The sender and the other direction are unaffected: the receiver can still say why.
  pair.client->send(*callMessage(3));
  pair.client->flush().wait(ws);
  pair.server->send(*callMessage(4));
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.client->receive().wait(ws))), 4u);

  // A sender refuses to queue a frame its own limit forbids.
  EXPECT_ANY_THROW(pair.server->send(*callMessage(5, 10000)));
}

TEST_P(ChannelTest, GarbageIsRejected) {
  auto pair = connectedPair();
  kj::byte garbage[64];
  memset(garbage, 0xff, sizeof(garbage));
  pair.client->getStream().write(garbage, sizeof(garbage)).wait(ws);
  auto error = receiveError(*pair.server);
  EXPECT_TRUE(isMalformedFrame(error)) << error.getDescription().cStr();
  EXPECT_TRUE(error.getDescription().startsWith("harrow.MalformedFrame: bogus segment table"))
      << error.getDescription().cStr();
}

TEST_P(ChannelTest, InvalidPointersAreRejectedOnReceipt) {
  auto pair = connectedPair();
  // One segment of two words: a root struct pointer whose target lies far outside the segment.
  uint32_t frame[6] = {0, 2, 0x00000100u, 0x00010001u, 0, 0};
  pair.client->getStream().write(frame, sizeof(frame)).wait(ws);
  auto error = receiveError(*pair.server);
  EXPECT_TRUE(isMalformedFrame(error)) << error.getDescription().cStr();
  std::string description = error.getDescription().cStr();
  EXPECT_NE(description.find("failed validation"), std::string::npos) << description;
}

TEST_P(ChannelTest, CancelledReceiveLosesNothing) {
  auto pair = connectedPair();
  {
    auto pending = pair.server->receive();
    EXPECT_FALSE(pending.poll(ws));
    pair.client->send(*callMessage(1));
    pair.client->flush().wait(ws);
    // Dropped after the read was issued: the bytes it reads must not be lost.
  }
  pair.client->send(*callMessage(2));
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.server->receive().wait(ws))), 1u);
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.server->receive().wait(ws))), 2u);
}

TEST_P(ChannelTest, BackpressureWhileThePeerDoesNotRead) {
  ChannelOptions options;
  options.maxQueuedBytes = 1 << 20;
  auto pair = connectedPair(options);
  // Far more than the kernel buffers of a loopback connection hold.
  constexpr uint64_t COUNT = 48;
  for (uint64_t i = 1; i <= COUNT; i++) pair.client->send(*callMessage(i, 1 << 20));
  EXPECT_FALSE(pair.client->isWritable());
  auto writable = pair.client->whenWritable();
  auto flushed = pair.client->flush();
  EXPECT_FALSE(writable.poll(ws));  // the peer reads nothing, so the queue cannot drain
  EXPECT_FALSE(flushed.poll(ws));

  for (uint64_t i = 1; i <= COUNT; i++) {
    auto message = KJ_ASSERT_NONNULL(pair.server->receive().wait(ws));
    ASSERT_EQ(callIdOf(*message), i);
  }
  writable.wait(ws);
  flushed.wait(ws);
  EXPECT_TRUE(pair.client->isWritable());
}

TEST_P(ChannelTest, DestroyingAChannelCancelsItsIo) {
  auto pair = connectedPair();
  for (uint64_t i = 1; i <= 48; i++) pair.client->send(*callMessage(i, 1 << 20));
  { auto pending = pair.client->receive(); EXPECT_FALSE(pending.poll(ws)); }
  pair.client = nullptr;  // a write and a read are in flight

  // The peer sees the stream end somewhere in the data: some whole frames, then EOF or an error.
  for (;;) {
    kj::Maybe<kj::Own<capnp::MessageReader>> message;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { message = pair.server->receive().wait(ws); })) {
      EXPECT_TRUE(isTransportClosed(*e)) << e->getDescription().cStr();
      break;
    }
    if (message == nullptr) break;
  }
}

TEST_P(ChannelTest, BurstsOfMessagesOnTheFdPath) {
  auto pair = connectedPair();
  sendBurstAndReceive(ws, *pair.client, *pair.server);
  sendBurstAndReceive(ws, *pair.server, *pair.client);
  sendBurstAndReceive(ws, *pair.client, *pair.server);
}

TEST_P(ChannelTest, ALoneMessageLeavesInTheSameLoopTurn) {
  auto pair = connectedPair();
  for (uint64_t i = 1; i <= 3; i++) {
    pair.client->send(*callMessage(i));
    EXPECT_GT(pair.client->queuedBytes(), 0u);  // send() itself does not write
    // Running the events that are ready writes it: no waiting for I/O.
    auto flushed = pair.client->flush();
    EXPECT_TRUE(flushed.poll(ws));
    flushed.wait(ws);
    EXPECT_EQ(pair.client->queuedBytes(), 0u);
    EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.server->receive().wait(ws))), i);
  }
}

TEST_P(ChannelTest, SendThenDestroyDeliversTheMessages) {
  auto pair = connectedPair();
  pair.client->send(*callMessage(1));
  pair.client->send(callMessage(2, 1000));
  // The write was waiting for the end of the turn; the destructor hands it to the kernel.
  pair.client = nullptr;
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.server->receive().wait(ws))), 1u);
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.server->receive().wait(ws))), 2u);
  EXPECT_TRUE(pair.server->receive().wait(ws) == nullptr);
}

TEST_P(ChannelTest, ABlockedWriterResumesAndKeepsOrder) {
  auto pair = connectedPair();
  // More than the kernel buffers of a loopback connection hold: the write blocks.
  constexpr uint64_t LARGE = 32;
  for (uint64_t i = 1; i <= LARGE; i++) pair.client->send(*callMessage(i, 1 << 20));
  auto first = pair.client->flush();
  EXPECT_FALSE(first.poll(ws));
  // Sent while the write is blocked: they queue behind it and leave once it completes.
  constexpr uint64_t COUNT = LARGE + 100;
  for (uint64_t i = LARGE + 1; i <= COUNT; i++) pair.client->send(callMessage(i, i));
  auto all = pair.client->flush();
  EXPECT_FALSE(first.poll(ws));
  EXPECT_FALSE(all.poll(ws));

  for (uint64_t i = 1; i <= COUNT; i++) {
    auto message = KJ_ASSERT_NONNULL(pair.server->receive().wait(ws));
    ASSERT_EQ(callIdOf(*message), i);
    ASSERT_EQ(message->getRoot<wire::Message>().getError().getMessage().size(),
              i <= LARGE ? size_t(1) << 20 : i);
  }
  first.wait(ws);
  all.wait(ws);
  EXPECT_EQ(pair.client->queuedBytes(), 0u);

  // The channel is back to normal: the other way and again this way.
  pair.server->send(*callMessage(1000));
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.client->receive().wait(ws))), 1000u);
  pair.client->send(*callMessage(1001));
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.server->receive().wait(ws))), 1001u);
}

TEST_P(ChannelTest, CancelledReceivesInTheMiddleOfAFrameLoseNothing) {
  auto pair = connectedPair();
  auto flat = capnp::messageToFlatArray(*callMessage(1, 100000));
  auto bytes = flat.asBytes();
  size_t step = bytes.size() / 7 + 1;
  for (size_t at = 0; at < bytes.size(); at += step) {
    auto pending = pair.server->receive();
    EXPECT_FALSE(pending.poll(ws));  // reads what has arrived, then waits for more
    pair.client->getStream().write(bytes.begin() + at, kj::min(step, bytes.size() - at)).wait(ws);
    // Dropped with the new bytes unread, or read but the frame still incomplete.
  }
  pair.client->send(*callMessage(2));
  auto message = KJ_ASSERT_NONNULL(pair.server->receive().wait(ws));
  EXPECT_EQ(callIdOf(*message), 1u);
  EXPECT_EQ(message->getRoot<wire::Message>().getError().getMessage().size(), 100000u);
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(pair.server->receive().wait(ws))), 2u);
}

// ---------------------------------------------------------------------------------------------
// Addresses and listeners

class TransportTest : public ::testing::Test {
protected:
  ~TransportTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::WaitScope& ws = io.waitScope;
  kj::Network& network = io.provider->getNetwork();
};

TEST_F(TransportTest, ChannelOverAnOwnedFd) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  auto a = kj::heap<Channel>(io.unixEventPort, kj::AutoCloseFd(fds[0]));
  Channel b(io.unixEventPort, kj::AutoCloseFd(fds[1]));
  EXPECT_TRUE(a->usesFd());
  EXPECT_EQ(KJ_ASSERT_NONNULL(a->getStream().getFd()), fds[0]);
  EXPECT_NE(fcntl(fds[0], F_GETFL) & O_NONBLOCK, 0);

  a->send(*callMessage(1));
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(b.receive().wait(ws))), 1u);
  b.send(callMessage(2));
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(a->receive().wait(ws))), 2u);
  a = nullptr;  // closes its fd
  EXPECT_TRUE(b.receive().wait(ws) == nullptr);
}

TEST_F(TransportTest, AChannelTakesOverTheFdOfAWrappedSocket) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  kj::AutoCloseFd original(fds[0]);
  // Not owned by the KJ stream: the channel works on a dup and leaves the original alone.
  ChannelOptions options;
  options.eventPort = io.unixEventPort;
  Channel a(io.lowLevelProvider->wrapSocketFd(original.get()), options);
  Channel b(io.lowLevelProvider->wrapSocketFd(fds[1], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP),
            options);
  EXPECT_TRUE(a.usesFd());
  EXPECT_TRUE(b.usesFd());
  EXPECT_NE(KJ_ASSERT_NONNULL(a.getStream().getFd()), original.get());

  a.send(*callMessage(1));
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(b.receive().wait(ws))), 1u);
  original = nullptr;  // the channel's dup keeps the socket open
  b.send(*callMessage(2));
  EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(a.receive().wait(ws))), 2u);
  a.shutdownWrite().wait(ws);
  EXPECT_TRUE(b.receive().wait(ws) == nullptr);
}

TEST_F(TransportTest, WithoutTheEventPortASocketUsesTheStreamInterface) {
  auto pipe = io.provider->newTwoWayPipe();  // a socketpair: each end has an fd
  Channel a(kj::mv(pipe.ends[0]));
  Channel b(kj::mv(pipe.ends[1]));
  EXPECT_FALSE(a.usesFd());
  sendBurstAndReceive(ws, a, b);
  sendBurstAndReceive(ws, b, a);
}

TEST_F(TransportTest, ChannelOverAStreamWithoutAnFd) {
  auto pipe = kj::newTwoWayPipe();
  Channel a(kj::mv(pipe.ends[0]));
  Channel b(kj::mv(pipe.ends[1]));
  EXPECT_FALSE(a.usesFd());
  sendBurstAndReceive(ws, a, b);
  sendBurstAndReceive(ws, b, a);
  b.shutdownWrite().wait(ws);
  EXPECT_TRUE(a.receive().wait(ws) == nullptr);
}

TEST(AddressTest, ParsesAndFormats) {
  auto tcp = Address::parse("tcp:127.0.0.1:8080");
  EXPECT_EQ(tcp.kind, Address::Kind::TCP);
  EXPECT_EQ(tcp.host, "127.0.0.1");
  EXPECT_EQ(tcp.port, 8080);
  EXPECT_EQ(tcp.toString(), "tcp:127.0.0.1:8080");
  EXPECT_EQ(tcp.toKjAddress(), "127.0.0.1:8080");

  auto v6 = Address::parse("tcp:[::1]:0");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 0);
  EXPECT_EQ(v6.toString(), "tcp:[::1]:0");
  EXPECT_EQ(v6.toKjAddress(), "[::1]:0");

  auto file = Address::parse("unix:/run/harrow/a.sock");
  EXPECT_EQ(file.kind, Address::Kind::UNIX);
  EXPECT_EQ(file.path, "/run/harrow/a.sock");
  EXPECT_EQ(file.toString(), "unix:/run/harrow/a.sock");
  EXPECT_EQ(file.toKjAddress(), "unix:/run/harrow/a.sock");

  auto abstract = Address::parse("unix:@harrow/root");
  EXPECT_EQ(abstract.kind, Address::Kind::UNIX_ABSTRACT);
  EXPECT_EQ(abstract.path, "harrow/root");
  EXPECT_EQ(abstract.toString(), "unix:@harrow/root");
  EXPECT_EQ(abstract.toKjAddress(), "unix-abstract:harrow/root");
}

TEST(AddressTest, RejectsMalformedAddresses) {
  for (const char* bad : {"", "127.0.0.1:80", "udp:1.2.3.4:5", "tcp:", "tcp:host", "tcp::80",
                          "tcp:1.2.3.4:", "tcp:1.2.3.4:65536", "tcp:1.2.3.4:8x", "tcp:::1:80",
                          "tcp:[::1]", "tcp:[::1:80", "unix:", "unix:@"}) {
    EXPECT_ANY_THROW(Address::parse(bad)) << bad;
  }
  std::string longPath = "unix:/" + std::string(120, 'a');
  auto description = harrow::testing::thrownBy([&]() { Address::parse(longPath.c_str()); });
  EXPECT_NE(description.find("unix:@name"), std::string::npos) << description;
}

TEST_F(TransportTest, TcpListenerReportsItsEphemeralPort) {
  auto listener = Listener::bind(network, "tcp:127.0.0.1:0").wait(ws);
  auto address = Address::parse(listener->getAddress());
  EXPECT_EQ(address.host, "127.0.0.1");
  EXPECT_NE(address.port, 0);
}

TEST_F(TransportTest, ConnectionRefusedIsTransportClosed) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    connect(network, uniqueAbstractAddress("channel-nobody")).wait(ws);
  })) {
    EXPECT_TRUE(isTransportClosed(*e)) << e->getDescription().cStr();
  } else {
    FAIL() << "connected to nobody";
  }
}

TEST_F(TransportTest, UnixSocketFileLifecycle) {
  auto path = uniqueSocketPath("lifecycle");
  unlink(path.cStr());
  auto address = kj::str("unix:", path);

  // A stale socket file, as a crashed process leaves it: bound, never listened on, closed.
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    struct sockaddr_un sun = {};
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, path.cStr());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)), 0);
    close(fd);
  }
  struct stat st;
  ASSERT_EQ(stat(path.cStr(), &st), 0);

  {
    auto listener = Listener::bind(network, address).wait(ws);
    EXPECT_EQ(listener->getAddress(), address);

    auto accepted = listener->accept();
    auto client = connect(network, address).wait(ws);
    auto server = accepted.wait(ws);
    client->send(*callMessage(1));
    EXPECT_EQ(callIdOf(*KJ_ASSERT_NONNULL(server->receive().wait(ws))), 1u);

    // A live one is not taken over. (The probe that finds it live is a connection the listener
    // sees open and close at once.)
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { Listener::bind(network, address).wait(ws); })) {
      EXPECT_TRUE(e->getDescription().startsWith("address in use")) << e->getDescription().cStr();
    } else {
      ADD_FAILURE() << "bound a live socket twice";
    }
    auto probe = listener->accept().wait(ws);
    EXPECT_TRUE(probe->receive().wait(ws) == nullptr);
  }
  // The listener removed its socket file.
  EXPECT_NE(stat(path.cStr(), &st), 0);
}

TEST_F(TransportTest, ANonSocketFileIsNeverRemoved) {
  auto path = uniqueSocketPath("not-a-socket");
  {
    kj::FdOutputStream out(kj::AutoCloseFd(open(path.cStr(), O_CREAT | O_WRONLY | O_TRUNC, 0600)));
    out.write("x", 1);
  }
  EXPECT_ANY_THROW(Listener::bind(network, kj::str("unix:", path)).wait(ws));
  struct stat st;
  EXPECT_EQ(stat(path.cStr(), &st), 0);
  unlink(path.cStr());
}

}  // namespace
}  // namespace harrow
