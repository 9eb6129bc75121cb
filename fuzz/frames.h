// Fuzz inputs as sequences of Cap'n Proto frames, and a structure-aware mutator over them.
//
// Input format of the frame-based harnesses: one flags byte (what the harness does around the
// frames, e.g. whether it sends a valid hello first), then raw channel bytes, normally a sequence
// of frames in the standard stream framing (docs/PROTOCOL.md, "Transport and framing"). libFuzzer's
// byte-level mutations mostly break the framing, so the custom mutator below parses the frames,
// mutates inside one of them (its words, with the segment table kept right), or duplicates, drops
// or reorders whole frames, or gives starts short deadlines; a third of the time it leaves the job
// to libFuzzer's own mutator, so the framing itself is fuzzed as well.

#pragma once

#include <harrow/wire.capnp.h>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/exception.h>
#include <kj/vector.h>

#include <random>
#include <stdint.h>
#include <string.h>
#include <string>
#include <vector>

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t maxSize);

namespace harrow::fuzz {

using Frame = std::vector<std::string>;  // segments, each a whole number of words

inline uint32_t le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

inline void putLe32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(char(v >> (8 * i)));
}

// Splits `bytes` into frames; false if they are not a clean sequence of small frames.
inline bool parseFrames(const uint8_t* data, size_t size, std::vector<Frame>& frames) {
  size_t at = 0;
  while (at < size) {
    if (size - at < 8) return false;
    uint64_t count = uint64_t(le32(data + at)) + 1;
    if (count > 16) return false;
    size_t table = (count / 2 + 1) * 8;
    if (size - at < table) return false;
    size_t body = 0;
    std::vector<size_t> sizes;
    for (uint64_t i = 0; i < count; ++i) {
      size_t words = le32(data + at + 4 + 4 * i);
      if (words > (1u << 16)) return false;
      sizes.push_back(words * 8);
      body += words * 8;
    }
    if (size - at - table < body) return false;
    Frame frame;
    size_t offset = at + table;
    for (size_t s : sizes) {
      frame.emplace_back(reinterpret_cast<const char*>(data + offset), s);
      offset += s;
    }
    frames.push_back(std::move(frame));
    at = offset;
  }
  return true;
}

inline std::string serializeFrame(const Frame& frame) {
  std::string out;
  putLe32(out, uint32_t(frame.size() - 1));
  for (auto& segment : frame) putLe32(out, uint32_t(segment.size() / 8));
  if (frame.size() % 2 == 0) putLe32(out, 0);
  for (auto& segment : frame) out += segment;
  return out;
}

inline std::string frameOf(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

// Gives the `start` in `frame` (if it is one) a deadline of at most 2 ms (Start.timeoutNanos,
// docs/PROTOCOL.md, "Deadlines"): the handler's scope then expires at any point of the task's life,
// racing the peer's other messages, its EOF and the channel's end. The deadline is the one timer a
// peer sets in the victim; byte-level mutation almost never produces a short one. Returns false if
// the frame is not a readable start.
inline bool shortenDeadline(Frame& frame, std::minstd_rand& rng) {
  std::vector<kj::Array<capnp::word>> words;  // aligned copies
  std::vector<kj::ArrayPtr<const capnp::word>> segments;
  for (auto& s : frame) {
    auto copy = kj::heapArray<capnp::word>(s.size() / 8);
    if (s.size() > 0) memcpy(copy.begin(), s.data(), s.size());
    segments.push_back(copy);
    words.push_back(kj::mv(copy));
  }
  std::string rewritten;
  auto failure = kj::runCatchingExceptions([&]() {
    capnp::SegmentArrayMessageReader reader(
        kj::arrayPtr(segments.data(), segments.size()));
    auto message = reader.getRoot<harrow::wire::Message>();
    if (!message.isStart()) return;
    capnp::MallocMessageBuilder builder;
    builder.setRoot(message);
    auto start = builder.getRoot<harrow::wire::Message>().getStart();
    // Mostly within the first 2 ms (the handler's first awaits), sometimes 1 ns (expired when
    // the handler first waits).
    start.setTimeoutNanos(rng() % 4 == 0 ? 1 : rng() % 2000000 + 1);
    rewritten = frameOf(builder);
  });
  if (failure != nullptr || rewritten.empty()) return false;
  std::vector<Frame> parsed;
  if (!parseFrames(reinterpret_cast<const uint8_t*>(rewritten.data()), rewritten.size(), parsed) ||
      parsed.size() != 1) {
    return false;
  }
  frame = std::move(parsed[0]);
  return true;
}

// The custom mutator shared by the frame-based harnesses (flags byte + frames).
inline size_t mutateFrames(uint8_t* data, size_t size, size_t maxSize, unsigned seed) {
  std::minstd_rand rng(seed);
  std::vector<Frame> frames;
  if (size < 1 || rng() % 3 == 0 || !parseFrames(data + 1, size - 1, frames) || frames.empty()) {
    return LLVMFuzzerMutate(data, size, maxSize);
  }
  uint8_t flags = data[0];
  switch (rng() % 7) {
    case 0:
    case 1:
    case 2: {  // mutate the words of one segment of one frame
      auto& frame = frames[rng() % frames.size()];
      auto& segment = frame[rng() % frame.size()];
      std::string buffer = segment;
      size_t room = buffer.size() + 64;
      buffer.resize(room);
      size_t n = LLVMFuzzerMutate(reinterpret_cast<uint8_t*>(&buffer[0]), segment.size(), room);
      n = (n + 7) & ~size_t(7);
      if (n == 0) n = 8;
      buffer.resize(n, '\0');
      segment = buffer;
      break;
    }
    case 3:  // duplicate a frame somewhere
      if (frames.size() < 64) {
        auto copy = frames[rng() % frames.size()];
        frames.insert(frames.begin() + rng() % (frames.size() + 1), std::move(copy));
      }
      break;
    case 4:  // drop a frame
      if (frames.size() > 1) frames.erase(frames.begin() + rng() % frames.size());
      break;
    case 5:  // swap two frames, or flip a flag
      if (frames.size() > 1 && rng() % 2) {
        std::swap(frames[rng() % frames.size()], frames[rng() % frames.size()]);
      } else {
        flags ^= uint8_t(1u << (rng() % 8));
      }
      break;
    case 6: {  // a short deadline on one start (or on every start)
      bool every = rng() % 2;
      size_t first = rng() % frames.size();
      for (size_t i = 0; i < frames.size(); ++i) {
        size_t at = (first + i) % frames.size();
        if (shortenDeadline(frames[at], rng) && !every) break;
      }
      break;
    }
  }
  std::string out(1, char(flags));
  for (auto& frame : frames) out += serializeFrame(frame);
  if (out.size() > maxSize) return LLVMFuzzerMutate(data, size, maxSize);
  memcpy(data, out.data(), out.size());
  return out.size();
}

}  // namespace harrow::fuzz
