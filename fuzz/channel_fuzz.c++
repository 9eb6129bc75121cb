// Harness 1: the channel's framing. Bytes in, frames or a clean error out: never a crash, a
// hang or a leak, and a frame that passes validation and the decode check can be read through
// the generated readers without an exception (the decode boundary's promise).
//
// Input: a flags byte (receive buffer size, a small frame limit), then the raw stream bytes.

#include "fuzz/harness.h"
#include "runtime/engine/internal/wire_message.h"

#include <harrow/ipc/channel.h>

namespace harrow::fuzz {
namespace {

// Reads what the engine reads of a message whose envelope passed the decode check; any exception
// here means the check let something through.
void readEnvelope(wire::Message::Reader m) {
  switch (m.which()) {
    case wire::Message::HELLO:
      ActorIdentity::fromWire(m.getHello().getId());
      return;
    case wire::Message::SPAWN_SPEC: {
      auto spec = m.getSpawnSpec();
      for (auto address : spec.getBindAddresses()) address.size();
      kj::str(spec.getImplementation(), spec.getRegistryAddress(), spec.getRootAddress(),
              spec.getLogLevel());
      return;
    }
    case wire::Message::START:
      m.getStart().getParams().getValue().isNull();
      return;
    case wire::Message::ERROR:
      toException(m.getError());
      return;
    case wire::Message::STARTED: m.getStarted().getValue().isNull(); return;
    case wire::Message::YIELD: m.getYield().getValue().isNull(); return;
    case wire::Message::RETURN: m.getReturn().getValue().isNull(); return;
    default:
      return;
  }
}

}  // namespace
}  // namespace harrow::fuzz

using namespace harrow;
using namespace harrow::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto& context = io();
  uint8_t flags = data[0];
  ChannelOptions options;
  options.readBufferBytes = size_t(64) << (flags & 7);
  if (flags & 8) options.maxFrameBytes = 4096;
  options.readerOptions.traversalLimitInWords = (flags & 16) ? 1024 : 8 << 20;

  auto pipe = kj::newTwoWayPipe();
  Rogue rogue(kj::mv(pipe.ends[0]));
  auto channel = kj::heap<Channel>(kj::mv(pipe.ends[1]), options);
  auto input = kj::heapArray<kj::byte>(data + 1, size - 1);
  rogue.send(input);

  kj::Maybe<kj::Exception> failure;
  for (;;) {
    kj::Maybe<kj::Own<capnp::MessageReader>> next;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      next = channel->receive().wait(context.waitScope);
    })) {
      failure = kj::mv(*e);
      break;
    }
    KJ_IF_MAYBE(reader, next) {
      if (checkEnvelope(**reader) == nullptr) {
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
          readEnvelope((*reader)->getRoot<wire::Message>());
        })) {
          KJ_LOG(FATAL, "a message passed the decode check but did not read", *e);
          abort();
        }
      }
    } else {
      break;
    }
  }
  KJ_IF_MAYBE(e, failure) {
    if (!isTransportClosed(*e) && !isMalformedFrame(*e)) {
      KJ_LOG(FATAL, "receive() failed with an unexpected error", *e);
      abort();
    }
    // The read side stays failed with the same error.
    auto again = kj::runCatchingExceptions([&]() { channel->receive().wait(context.waitScope); });
    if (again == nullptr || KJ_ASSERT_NONNULL(again).getDescription() != e->getDescription()) {
      abort();
    }
  }
  channel = nullptr;
  rogue.writing.wait(context.waitScope);
  rogue.draining.wait(context.waitScope);
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t maxSize,
                                          unsigned int seed) {
  return mutateFrames(data, size, maxSize, seed);
}
