// Frames too large for the shared-memory ring go as sealed memfds of their own
// (docs/PROTOCOL.md, "Large frames through shared memory"): they arrive intact and are read in
// place; one built in a FrameFileBuilder is sealed where it was built (no copy), its pages
// allocated before it is filled; one on an idle channel leaves at once; a burst of them keeps
// every fd with its reference; a receiver refuses a reference without its fd, a file that
// is not sealed against writes, one that does not hold the frame, and one over its frame limit
// (before mapping it), and closes the fd each time.

#include <harrow/ipc/channel.h>
#include <harrow/ipc/fd_stream.h>
#include <harrow/ipc/sealed_frame.h>

#include "harrow/wire.capnp.h"
#include "tests/channels.h"

#include <capnp/message.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

namespace harrow {
namespace {

namespace testing = ::testing;
using harrow::testing::mappingsOf;
using harrow::testing::openFds;
using harrow::testing::RecordingCodec;
using harrow::testing::SharedFrameRecord;

constexpr size_t RING_BYTES = 1u << 20;  // frames over this go as sealed files
constexpr size_t LARGE = 3u << 20;

kj::byte patternByte(uint64_t seq, size_t i) {
  return kj::byte(seq * 31 + i * 7 + (i >> 12));
}

// A message whose error text is `bytes` of pattern `seq` (a Data-like payload of known content).
void fill(capnp::MessageBuilder& message, uint64_t seq, size_t bytes) {
  auto root = message.initRoot<wire::Message>();
  root.setCallId(seq);
  auto data = root.initAuthenticate(bytes);
  for (size_t i = 0; i < bytes; i++) data[i] = patternByte(seq, i);
}

bool intact(capnp::MessageReader& reader, uint64_t seq, size_t bytes) {
  auto root = reader.getRoot<wire::Message>();
  if (root.getCallId() != seq || !root.isAuthenticate()) return false;
  auto data = root.getAuthenticate();
  if (data.size() != bytes) return false;
  for (size_t i = 0; i < bytes; i++) {
    if (data[i] != patternByte(seq, i)) return false;
  }
  return true;
}

// Mappings of sealed frames in this process (memfds named harrow-frame).
size_t frameMappings() {
  return mappingsOf("harrow-frame");
}

testing::AssertionResult says(const kj::Exception& error, const char* text) {
  if (std::string(error.getDescription().cStr()).find(text) != std::string::npos) {
    return testing::AssertionSuccess();
  }
  return testing::AssertionFailure()
         << "the error does not say \"" << text << "\": " << error.getDescription().cStr();
}

// A sealed memfd holding `bytes` zeros, sealed with `seals`.
kj::AutoCloseFd memfdOf(size_t bytes, int seals) {
  int raw;
  KJ_SYSCALL(raw = memfd_create("test-frame", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  kj::AutoCloseFd fd(raw);
  KJ_SYSCALL(ftruncate(fd, bytes));
  if (seals != 0) {
    KJ_SYSCALL(fcntl(fd, F_ADD_SEALS, seals));
  }
  return fd;
}

class SealedFrameTest : public ::testing::Test {
protected:
  ~SealedFrameTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::WaitScope& ws = io.waitScope;
  kj::Own<Channel> sender;
  kj::Own<Channel> receiver;
  SharedFrameRecord sent;
  size_t fdsBefore = openFds();

  SealedFrameTest() {
    auto channels = harrow::testing::socketpairChannels(io.unixEventPort);
    sender = kj::mv(channels.client);
    receiver = kj::mv(channels.server);
    receiver->setMaxFrameBytes(16u << 20);
  }

  void sendSealedFrames() {
    sender->sendLargeFramesThroughSharedMemory(kj::heap<RecordingCodec>(sent), 16u << 10,
                                               RING_BYTES);
  }

  // The next message, which must be a sealed frame's reference: the frame.
  kj::Own<capnp::MessageReader> receiveFile() {
    auto reference = KJ_ASSERT_NONNULL(receiver->receive().wait(ws));
    auto message = reference->getRoot<wire::Message>();
    KJ_ASSERT(message.isSharedMemoryFile(), static_cast<int>(message.which()));
    return receiver->receiveSealedFrame(message.getSharedMemoryFile().getStart(),
                                        message.getSharedMemoryFile().getLength());
  }

  // A reference to `length` bytes at `start`, passing `fd` with it if there is one; then what the
  // receiver throws for it.
  kj::Exception refusal(kj::Maybe<kj::AutoCloseFd> fd, uint64_t start, uint64_t length) {
    KJ_IF_MAYBE (f, fd) {
      dynamic_cast<FdStream&>(sender->getStream()).sendFdWithNextWrite(kj::mv(*f));
    }
    capnp::MallocMessageBuilder m;
    auto file = m.initRoot<wire::Message>().initSharedMemoryFile();
    file.setStart(start);
    file.setLength(length);
    sender->send(m);
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { receiveFile(); })) return kj::mv(*e);
    ADD_FAILURE() << "the reference was accepted";
    return KJ_EXCEPTION(FAILED, "accepted");
  }

  // Everything closed, nothing left mapped.
  void expectNothingLeft() {
    sender = nullptr;
    receiver = nullptr;
    EXPECT_EQ(openFds(), fdsBefore);
    EXPECT_EQ(frameMappings(), 0u);
  }
};

TEST_F(SealedFrameTest, ABurstOfFramesLargerThanTheRingArrivesIntactEachWithItsFd) {
  // Ten sent in one loop turn: without a bound on the fds per write, the fifth onwards would
  // reach the peer after their references (four fds per sendmsg) or not at all.
  sendSealedFrames();
  for (uint64_t seq = 1; seq <= 10; ++seq) {
    auto message = kj::heap<capnp::MallocMessageBuilder>();
    fill(*message, seq, LARGE);
    sender->send(kj::mv(message));
  }
  for (uint64_t seq = 1; seq <= 10; ++seq) {
    auto frame = receiveFile();
    EXPECT_TRUE(intact(*frame, seq, LARGE)) << seq;
    // Read in place: the message lies in the mapped file, not in a copy.
    EXPECT_EQ(frameMappings(), 1u);
  }
  EXPECT_EQ(sender->sharedMemoryCounts().filesSent, 10u);
  EXPECT_EQ(receiver->sharedMemoryCounts().filesReceived, 10u);
  expectNothingLeft();
}

TEST_F(SealedFrameTest, AMessageBuiltInAFrameFileIsSealedWhereItWasBuilt) {
  sendSealedFrames();
  auto message = kj::heap<FrameFileBuilder>();
  message->allocateLargeSegmentsInFiles(sender->sealedFrameBytes());
  fill(*message, 7, LARGE);
  EXPECT_EQ(frameMappings(), 1u);  // the builder's segment
  sender->send(kj::mv(message));
  auto frame = receiveFile();
  EXPECT_TRUE(intact(*frame, 7, LARGE));
  // Its segment table and first segment were written just in front of the segment; a copy
  // would start at 0.
  ASSERT_EQ(sent.fileStarts.size(), 1u);
  EXPECT_GT(sent.fileStarts[0], 0u);
  EXPECT_LT(sent.fileStarts[0], FrameFile::HEADROOM);
  frame = nullptr;
  expectNothingLeft();
}

TEST_F(SealedFrameTest, ASealedFrameOnAnIdleChannelLeavesAtOnce) {
  // Not at the end of the loop turn, after whatever the turn does next (such as freeing a large
  // frame received): the peer waits for it.
  sendSealedFrames();
  auto message = kj::heap<FrameFileBuilder>();
  message->allocateLargeSegmentsInFiles(sender->sealedFrameBytes());
  fill(*message, 3, LARGE);
  sender->send(kj::mv(message));
  int receiverFd = KJ_ASSERT_NONNULL(receiver->getStream().getFd());
  struct pollfd readable = {receiverFd, POLLIN, 0};
  EXPECT_EQ(poll(&readable, 1, 0), 1);  // the loop has not run since send()
  auto frame = receiveFile();
  EXPECT_TRUE(intact(*frame, 3, LARGE));
  frame = nullptr;
  expectNothingLeft();
}

TEST_F(SealedFrameTest, AFrameFilesPagesAreThereBeforeItIsFilled) {
  // Allocated and mapped in one call rather than faulted in one by one as the value is copied.
  auto file = FrameFile::create(LARGE / sizeof(capnp::word));
  auto segment = file->segment().asBytes();
  size_t pages = (segment.size() + 4095) / 4096;
  auto resident = kj::heapArray<unsigned char>(pages);
  KJ_SYSCALL(mincore(segment.begin(), segment.size(), resident.begin()));
  size_t present = 0;
  for (auto page : resident) present += page & 1;
  EXPECT_EQ(present, pages);
  file = nullptr;
  expectNothingLeft();
}

TEST_F(SealedFrameTest, ABuilderDroppedUnsentLeavesNothing) {
  {
    FrameFileBuilder message;
    message.allocateLargeSegmentsInFiles(RING_BYTES);
    fill(message, 1, LARGE);
  }
  expectNothingLeft();
}

TEST_F(SealedFrameTest, AReferenceWithoutItsFdIsMalformed) {
  auto error = refusal(nullptr, 0, 64);
  EXPECT_TRUE(isMalformedFrame(error));
  EXPECT_TRUE(says(error, "without its fd"));
  expectNothingLeft();
}

TEST_F(SealedFrameTest, AFileTheSenderCanStillWriteIsRefusedAndClosed) {
  auto error = refusal(memfdOf(4096, F_SEAL_SHRINK | F_SEAL_GROW), 0, 64);
  EXPECT_TRUE(isMalformedFrame(error));
  EXPECT_TRUE(says(error, "not sealed"));
  expectNothingLeft();
}

TEST_F(SealedFrameTest, AFileThatDoesNotHoldTheFrameIsRefusedAndClosed) {
  auto error = refusal(memfdOf(4096, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), 4000, 4096);
  EXPECT_TRUE(isMalformedFrame(error));
  EXPECT_TRUE(says(error, "does not hold"));
  expectNothingLeft();
}

TEST_F(SealedFrameTest, AFileOverTheLimitIsRefusedBeforeItIsMapped) {
  // The file is far smaller than the reference claims: had it been looked at, the refusal would
  // say that it does not hold the frame.
  auto error = refusal(memfdOf(4096, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), 0, 32u << 20);
  EXPECT_TRUE(isMalformedFrame(error));
  EXPECT_TRUE(says(error, "over this channel's limit"));
  expectNothingLeft();
}

TEST_F(SealedFrameTest, AFileWhoseFrameIsMalformedIsRefused) {
  // Sealed and large enough, but the segment table describes more than the length.
  auto fd = memfdOf(4096, 0);
  uint32_t table[2] = {0, 100};  // one segment of 100 words: 808 bytes, not 64
  KJ_SYSCALL(pwrite(fd, table, sizeof(table), 0));
  KJ_SYSCALL(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE));
  auto error = refusal(kj::mv(fd), 0, 64);
  EXPECT_TRUE(isMalformedFrame(error));
  EXPECT_TRUE(says(error, "does not match"));
  expectNothingLeft();
}

}  // namespace
}  // namespace harrow
