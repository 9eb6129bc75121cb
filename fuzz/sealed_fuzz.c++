// Harness 5: the authenticated frame layer (docs/PROTOCOL.md, "Frame protection"): a Channel whose
// frames carry tags (or are encrypted), fed a stream that the harness seals itself, frame by frame,
// with the channel's key, so that the input gets past the tag to the framing and validation behind
// it; optionally with one bit flipped somewhere after sealing, as a man in the middle would. Never
// a crash, a hang or a leak; and:
//  - an untouched stream never fails a tag, and every frame it delivers is the frame that was
//    sealed (decrypted, with ENCRYPT);
//  - a stream with a flipped bit never delivers the frame the bit is in, nor any after it.
//
// Input: a flags byte (bit 0: ENCRYPT; bit 1: flip a bit, at the offset in the next 2 bytes;
// bits 2-4: receive buffer size; bit 5: a small frame limit), then frames (capnp stream framing,
// without tags; the harness appends them). Bytes after the last complete frame go as they are.

#include "fuzz/harness.h"

#include <harrow/ipc/channel.h>
#include <harrow/ipc/frame_seal.h>

#include <string.h>

#include <string>
#include <vector>

using namespace harrow;
using namespace harrow::fuzz;

namespace {

const kj::byte KEY[FrameSeal::KEY_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                            17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
                                            30, 31, 32};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  auto& context = io();
  uint8_t flags = data[0];
  auto mode = (flags & 1) ? FrameSeal::ENCRYPT : FrameSeal::AUTHENTICATE;
  bool flip = flags & 2;
  size_t flipAt = size_t(data[1]) | size_t(data[2]) << 8;
  data += 3;
  size -= 3;

  // Seal every complete frame of the input, as the sending side would.
  std::string stream;
  std::vector<std::string> sent;         // the frames as sealed, in the clear
  std::vector<size_t> frameEnds;         // where each sealed frame (with its tag) ends in `stream`
  FrameSeal out(KEY, mode);
  size_t at = 0;
  while (size - at >= 8) {
    uint64_t segments = uint64_t(le32(data + at)) + 1;
    if (segments > 512) break;
    size_t table = (segments / 2 + 1) * 8;
    if (size - at < table) break;
    uint64_t length = table;
    for (uint64_t i = 0; i < segments; ++i) length += uint64_t(le32(data + at + 4 + 4 * i)) * 8;
    if (length > size - at) break;
    std::string frame(reinterpret_cast<const char*>(data + at), length);
    sent.push_back(frame);
    kj::byte tag[FrameSeal::TAG_BYTES];
    if (mode == FrameSeal::AUTHENTICATE) {
      kj::ArrayPtr<const kj::byte> pieces[] = {
          kj::arrayPtr(reinterpret_cast<const kj::byte*>(frame.data()), frame.size())};
      out.tag(pieces, tag);
    } else {
      out.seal(kj::arrayPtr(reinterpret_cast<kj::byte*>(&frame[0]), frame.size()), table, tag);
    }
    stream += frame;
    stream.append(reinterpret_cast<const char*>(tag), sizeof(tag));
    frameEnds.push_back(stream.size());
    at += length;
  }
  stream.append(reinterpret_cast<const char*>(data + at), size - at);
  // The first frame a flipped bit lands in (frameEnds.size(): after every sealed frame).
  size_t flipped = frameEnds.size();
  if (flip && !stream.empty()) {
    flipAt %= stream.size();
    stream[flipAt] ^= 1;
    flipped = 0;
    while (flipped < frameEnds.size() && frameEnds[flipped] <= flipAt) ++flipped;
  }

  ChannelOptions options;
  options.readBufferBytes = size_t(64) << ((flags >> 2) & 7);
  if (flags & 32) options.maxFrameBytes = 4096;
  auto pipe = kj::newTwoWayPipe();
  Rogue rogue(kj::mv(pipe.ends[0]));
  auto channel = kj::heap<Channel>(kj::mv(pipe.ends[1]), options);
  channel->protectFrames(kj::heap<FrameSeal>(kj::arrayPtr(KEY, sizeof(KEY)), mode),
                         kj::heap<FrameSeal>(kj::arrayPtr(KEY, sizeof(KEY)), mode));
  auto bytes = kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(stream.data()),
                                       stream.size());
  rogue.send(bytes);

  size_t received = 0;
  for (;;) {
    kj::Maybe<kj::Own<capnp::MessageReader>> next;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      next = channel->receive().wait(context.waitScope);
    })) {
      if (!isTransportClosed(*e) && !isMalformedFrame(*e)) {
        KJ_LOG(FATAL, "receive() failed with an unexpected error", *e);
        abort();
      }
      bool tagFailed = e->getDescription().startsWith("harrow.AuthenticationFailed");
      if (tagFailed && !flip && received < sent.size()) {
        KJ_LOG(FATAL, "an untouched sealed frame failed its tag", received, *e);
        abort();
      }
      break;
    }
    KJ_IF_MAYBE(reader, next) {
      if (received >= flipped) {
        KJ_LOG(FATAL, "a frame with a flipped bit (or one after it) was delivered", received,
               flipped);
        abort();
      }
      if (received < sent.size()) {
        // What arrived is what was sealed, segment by segment.
        auto& frame = sent[received];
        uint64_t segments = uint64_t(le32(reinterpret_cast<const uint8_t*>(frame.data()))) + 1;
        size_t offset = (segments / 2 + 1) * 8;
        for (uint i = 0; i < segments; ++i) {
          auto segment = (*reader)->getSegment(i).asBytes();
          if (memcmp(segment.begin(), frame.data() + offset, segment.size()) != 0) {
            KJ_LOG(FATAL, "a delivered frame differs from the one sealed", received, i);
            abort();
          }
          offset += segment.size();
        }
      }
      ++received;
    } else {
      break;
    }
  }
  channel = nullptr;
  rogue.writing.wait(context.waitScope);
  rogue.draining.wait(context.waitScope);
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t maxSize,
                                          unsigned int seed) {
  // The frames start after the flags byte and the flip offset: mutate them as frames.
  if (size < 3 || maxSize < 3) return LLVMFuzzerMutate(data, size, maxSize);
  return 2 + mutateFrames(data + 2, size - 2, maxSize - 2, seed);
}
