// Frame tags (docs/PROTOCOL.md, "Frame protection"): FrameSeal is XChaCha20-Poly1305 as libsodium
// computes it (so the wire format is a standard AEAD, checkable by anyone), counts frames (so a
// dropped, reordered or replayed frame fails as a modified one does), and a Channel whose peer's
// frame fails its tag ends its read side with harrow.AuthenticationFailed. The tag rides in room
// the frame reserved when it was made, so a tagged frame costs no allocation a plain one does not.

#include <harrow/co/errors.h>
#include <harrow/ipc/channel.h>
#include <harrow/ipc/frame_seal.h>

#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <sodium.h>

#include <atomic>
#include <new>

// Counts allocations while `countingAllocations` is set (kj's heap arrays and heap objects come
// through here).
static std::atomic<bool> countingAllocations{false};
static std::atomic<size_t> allocationCount{0};

void* operator new(size_t bytes) {
  if (countingAllocations) ++allocationCount;
  if (void* p = malloc(bytes == 0 ? 1 : bytes)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  free(p);
}
void operator delete(void* p, size_t) noexcept {
  free(p);
}

namespace harrow {
namespace {

kj::Array<kj::byte> key(kj::byte fill) {
  auto k = kj::heapArray<kj::byte>(FrameSeal::KEY_BYTES);
  for (auto& b : k) b = fill++;
  return k;
}

// A framed message of `words` words, as a Channel sends it.
kj::Array<kj::byte> frameOf(size_t words) {
  capnp::MallocMessageBuilder message;
  auto text = message.initRoot<capnp::AnyPointer>().initAs<capnp::Text>(words * 8 - 1);
  for (size_t i = 0; i < text.size(); ++i) text[i] = 'a' + i % 26;
  auto flat = capnp::messageToFlatArray(message);
  return kj::heapArray(flat.asBytes());
}

kj::Array<kj::byte> nonceOf(uint64_t n) {
  auto nonce = kj::heapArray<kj::byte>(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  memset(nonce.begin(), 0, nonce.size());
  for (int i = 0; i < 8; ++i) nonce[16 + i] = kj::byte(n >> (8 * i));
  return nonce;
}

TEST(FrameSealTest, IsXChaCha20Poly1305WithTheFrameNumberAsNonce) {
  ASSERT_GE(sodium_init(), 0);
  auto k = key(7);
  FrameSeal authenticate(k, FrameSeal::AUTHENTICATE);
  FrameSeal encrypt(k, FrameSeal::ENCRYPT);
  for (uint64_t n = 0; n < 3; ++n) {
    auto frame = frameOf(5 + n * 30);
    // Tags alone: an empty message, the whole frame as associated data.
    kj::byte tag[16], expected[16];
    kj::ArrayPtr<const kj::byte> pieces[] = {frame.slice(0, 8), frame.slice(8, frame.size())};
    authenticate.tag(pieces, tag);
    kj::byte none[1];
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
        none, expected, nullptr, none, 0, frame.begin(), frame.size(), nullptr,
        nonceOf(n).begin(), k.begin());
    EXPECT_EQ(0, memcmp(tag, expected, 16)) << "frame " << n;
    // Encrypted: the segments as the message, the table (one segment: 8 bytes) as associated data.
    auto sealed = kj::heapArray(frame.asPtr());
    encrypt.seal(sealed, 8, tag);
    auto cipher = kj::heapArray<kj::byte>(frame.size() - 8);
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
        cipher.begin(), expected, nullptr, frame.begin() + 8, frame.size() - 8, frame.begin(), 8,
        nullptr, nonceOf(n).begin(), k.begin());
    EXPECT_EQ(0, memcmp(tag, expected, 16));
    EXPECT_EQ(0, memcmp(sealed.begin() + 8, cipher.begin(), cipher.size()));
    EXPECT_EQ(0, memcmp(sealed.begin(), frame.begin(), 8));  // the table stays readable
  }
}

// The receiver's twin of a sender opens exactly the frames sent, in order.
TEST(FrameSealTest, ModifiedDroppedReorderedAndReplayedFramesFail) {
  for (auto mode : {FrameSeal::AUTHENTICATE, FrameSeal::ENCRYPT}) {
    auto k = key(1);
    auto sealAll = [&](size_t count) {
      FrameSeal out(k, mode);
      kj::Vector<kj::Array<kj::byte>> frames;
      for (size_t i = 0; i < count; ++i) {
        auto frame = frameOf(4 + i);
        auto wire = kj::heapArray<kj::byte>(frame.size() + 16);
        memcpy(wire.begin(), frame.begin(), frame.size());
        if (mode == FrameSeal::AUTHENTICATE) {
          kj::ArrayPtr<const kj::byte> pieces[] = {frame};
          out.tag(pieces, wire.begin() + frame.size());
        } else {
          out.seal(wire.slice(0, frame.size()), 8, wire.begin() + frame.size());
        }
        frames.add(kj::mv(wire));
      }
      return frames;
    };
    auto openAt = [&](FrameSeal& in, kj::Array<kj::byte>& wire) {
      auto copy = kj::heapArray(wire.asPtr());
      return in.open(copy.slice(0, copy.size() - 16), 8, copy.end() - 16);
    };
    {
      auto frames = sealAll(3);
      FrameSeal in(k, mode);
      for (auto& f : frames) EXPECT_TRUE(openAt(in, f));
    }
    {  // one bit flipped
      auto frames = sealAll(1);
      frames[0][frames[0].size() - 20] ^= 1;
      FrameSeal in(k, mode);
      EXPECT_FALSE(openAt(in, frames[0]));
    }
    {  // the first dropped
      auto frames = sealAll(2);
      FrameSeal in(k, mode);
      EXPECT_FALSE(openAt(in, frames[1]));
    }
    {  // reordered
      auto frames = sealAll(2);
      FrameSeal in(k, mode);
      EXPECT_FALSE(openAt(in, frames[1]));
      EXPECT_FALSE(openAt(in, frames[0]));  // and nothing opens after a failure
    }
    {  // replayed
      auto frames = sealAll(2);
      FrameSeal in(k, mode);
      EXPECT_TRUE(openAt(in, frames[0]));
      EXPECT_FALSE(openAt(in, frames[0]));
    }
    {  // another key (another channel, or the other direction of this one)
      auto frames = sealAll(1);
      FrameSeal in(key(2), mode);
      EXPECT_FALSE(openAt(in, frames[0]));
    }
  }
}

// Two channels over a socket pair, each sealing what it sends for the other.
ChannelOptions withPort(kj::AsyncIoContext& io) {
  ChannelOptions options;
  options.eventPort = io.unixEventPort;
  return options;
}
struct SealedPair {
  SealedPair(kj::AsyncIoContext& io, FrameSeal::Mode mode)
      : pipe(io.provider->newTwoWayPipe()), a(kj::mv(pipe.ends[0]), withPort(io)),
        b(kj::mv(pipe.ends[1]), withPort(io)) {
    a.protectFrames(kj::heap<FrameSeal>(key(1), mode), kj::heap<FrameSeal>(key(2), mode));
    b.protectFrames(kj::heap<FrameSeal>(key(2), mode), kj::heap<FrameSeal>(key(1), mode));
  }
  kj::TwoWayPipe pipe;
  Channel a;
  Channel b;
};

TEST(FrameSealTest, AChannelWhosePeerFrameFailsItsTagEndsReadingWithAuthenticationFailed) {
  auto io = kj::setupAsyncIo();
  ChannelOptions options;
  options.eventPort = io.unixEventPort;
  for (auto mode : {FrameSeal::AUTHENTICATE, FrameSeal::ENCRYPT}) {
    SealedPair pair(io, mode);
    auto& a = pair.a;
    auto& b = pair.b;
    for (int i = 0; i < 3; ++i) {
      capnp::MallocMessageBuilder message;
      message.initRoot<capnp::AnyPointer>().setAs<capnp::Text>(kj::str("hello ", i));
      a.send(message);
    }
    for (int i = 0; i < 3; ++i) {
      auto received = KJ_ASSERT_NONNULL(b.receive().wait(io.waitScope));
      EXPECT_EQ(kj::str("hello ", i), received->getRoot<capnp::AnyPointer>().getAs<capnp::Text>());
    }
    // A frame that did not come from a's seal: b's read side ends, its write side still works.
    auto raw = io.provider->newTwoWayPipe();
    Channel injector(kj::mv(raw.ends[0]), options);
    Channel victim(kj::mv(raw.ends[1]), options);
    victim.protectFrames(kj::heap<FrameSeal>(key(2), mode), kj::heap<FrameSeal>(key(1), mode));
    injector.protectFrames(kj::heap<FrameSeal>(key(3), mode), kj::heap<FrameSeal>(key(4), mode));
    capnp::MallocMessageBuilder forged;
    forged.initRoot<capnp::AnyPointer>().setAs<capnp::Text>("cancel");
    injector.send(forged);
    auto failure = KJ_ASSERT_NONNULL(kj::runCatchingExceptions([&]() {
      victim.receive().wait(io.waitScope);
    }));
    EXPECT_TRUE(isMalformedFrame(failure)) << failure.getDescription().cStr();
    EXPECT_TRUE(is(failure, ErrorKind::AUTHENTICATION_FAILED)) << failure.getDescription().cStr();
    victim.send(forged);
  }
}

// A message of several segments (a small first segment, fixed-size growth), so that a frame is
// a table and many pieces; `padding` bytes in each of its five texts (a frame of over 1 KiB is
// sealed in pieces, a smaller one copied whole).
kj::Own<capnp::MallocMessageBuilder> severalSegments(int i, size_t padding = 0) {
  auto message = kj::heap<capnp::MallocMessageBuilder>(4, capnp::AllocationStrategy::FIXED_SIZE);
  auto texts = message->initRoot<capnp::AnyPointer>().initAs<capnp::List<capnp::Text>>(5);
  for (uint j = 0; j < texts.size(); ++j) {
    texts.set(j, kj::str(kj::repeat('.', padding), "item ", i, ".", j, " of many"));
  }
  EXPECT_GT(message->getSegmentsForOutput().size(), 2u);
  return message;
}

TEST(FrameSealTest, FramesOfManySegmentsCheckOutWhicheverWayTheyAreSent) {
  auto io = kj::setupAsyncIo();
  for (auto mode : {FrameSeal::AUTHENTICATE, FrameSeal::ENCRYPT}) {
    SealedPair pair(io, mode);
    auto& a = pair.a;
    auto& b = pair.b;
    for (int i = 0; i < 8; ++i) {
      auto message = severalSegments(i, i < 4 ? 0 : 400);
      if (i % 2 == 0) {
        a.send(*message);  // copied
      } else {
        a.send(kj::mv(message));  // kept, its segments written where they are
      }
    }
    for (int i = 0; i < 8; ++i) {
      auto received = KJ_ASSERT_NONNULL(b.receive().wait(io.waitScope));
      auto texts = received->getRoot<capnp::AnyPointer>().getAs<capnp::List<capnp::Text>>();
      ASSERT_EQ(5u, texts.size());
      EXPECT_EQ(kj::str(kj::repeat('.', i < 4 ? 0 : 400), "item ", i, ".4 of many"), texts[4]);
    }
  }
}

TEST(FrameSealTest, ATaggedFrameCostsNoAllocationAPlainOneDoesNot) {
  auto io = kj::setupAsyncIo();
  ChannelOptions options;
  options.eventPort = io.unixEventPort;
  auto plainPipe = io.provider->newTwoWayPipe();
  auto taggedPipe = io.provider->newTwoWayPipe();
  Channel plain(kj::mv(plainPipe.ends[0]), options);
  Channel tagged(kj::mv(taggedPipe.ends[0]), options);
  tagged.protectFrames(kj::heap<FrameSeal>(key(1), FrameSeal::AUTHENTICATE),
                       kj::heap<FrameSeal>(key(2), FrameSeal::AUTHENTICATE));
  // Allocations of one send (the second of the loop turn: the write is scheduled already).
  auto allocationsOfSend = [&](Channel& channel, bool copied, size_t padding) {
    auto first = severalSegments(0, padding);
    channel.send(kj::mv(first));
    auto message = severalSegments(1, padding);
    allocationCount = 0;
    countingAllocations = true;
    if (copied) {
      channel.send(*message);
    } else {
      channel.send(kj::mv(message));
    }
    countingAllocations = false;
    return allocationCount.load();
  };
  for (bool copied : {false, true}) {
    for (size_t padding : {0, 400}) {
      size_t plainCount = allocationsOfSend(plain, copied, padding);
      size_t taggedCount = allocationsOfSend(tagged, copied, padding);
      EXPECT_EQ(plainCount, taggedCount)
          << (copied ? "send(message&)" : "send(kj::Own)") << " padding " << padding;
    }
  }
}

}  // namespace
}  // namespace harrow
