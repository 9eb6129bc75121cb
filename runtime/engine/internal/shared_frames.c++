#include "runtime/engine/internal/shared_frames.h"

#include "runtime/engine/internal/wire_message.h"

#include <kj/debug.h>

namespace harrow {
namespace {

// A channel-level message (call id 0, as every shared-memory message is) whose content `init`
// sets on the root.
template <typename Init>
kj::Own<capnp::MessageBuilder> channelMessage(Init&& init) {
  auto builder = kj::heap<capnp::MallocMessageBuilder>(64);
  auto root = builder->initRoot<wire::Message>();
  root.setCallId(0);
  init(root);
  return builder;
}

class WireSharedFrameCodec final : public SharedFrameCodec {
public:
  kj::Own<capnp::MessageBuilder> ringMessage(uint64_t capacity) override {
    return channelMessage([&](wire::Message::Builder root) { root.setSharedMemoryRing(capacity); });
  }
  kj::Own<capnp::MessageBuilder> frameMessage(uint64_t start, uint64_t length) override {
    return channelMessage([&](wire::Message::Builder root) {
      auto frame = root.initSharedMemoryFrame();
      frame.setStart(start);
      frame.setLength(length);
    });
  }
  kj::Own<capnp::MessageBuilder> fileMessage(uint64_t start, uint64_t length) override {
    return channelMessage([&](wire::Message::Builder root) {
      auto file = root.initSharedMemoryFile();
      file.setStart(start);
      file.setLength(length);
    });
  }
};

kj::Exception malformed(kj::StringPtr why) {
  // The channel's own prefix: serve() answers it as a malformed frame (a protocol violation of
  // the whole channel, which then closes), since the ring is out of step for good.
  return makeError(ErrorKind::MALFORMED_FRAME, why);
}

}  // namespace

kj::Own<SharedFrameCodec> newWireSharedFrameCodec() { return kj::heap<WireSharedFrameCodec>(); }

bool isSharedMemoryMessage(wire::Message::Reader message) {
  switch (message.which()) {
    case wire::Message::SHARED_MEMORY_RING:
    case wire::Message::SHARED_MEMORY_FRAME:
    case wire::Message::SHARED_MEMORY_FREED:
    case wire::Message::SHARED_MEMORY_FILE: return true;
    default:
      return false;
  }
}

kj::Maybe<kj::Own<capnp::MessageReader>> takeSharedMemoryMessage(Peer& peer,
                                                                 wire::Message::Reader message) {
  if (message.getCallId() != 0) {
    kj::throwFatalException(malformed("a shared-memory message with a call id"));
  }
  switch (message.which()) {
    case wire::Message::SHARED_MEMORY_RING:
      peer.channel().adoptSharedRing(message.getSharedMemoryRing());
      return nullptr;
    case wire::Message::SHARED_MEMORY_FREED:
      peer.channel().sharedSpaceFreed();
      return nullptr;
    case wire::Message::SHARED_MEMORY_FRAME:
    case wire::Message::SHARED_MEMORY_FILE: {
      kj::Own<capnp::MessageReader> frame;
      if (message.isSharedMemoryFile()) {
        auto file = message.getSharedMemoryFile();
        frame = peer.channel().receiveSealedFrame(file.getStart(), file.getLength());
      } else {
        auto reference = message.getSharedMemoryFrame();
        bool notify = false;
        frame = peer.channel().receiveShared(reference.getStart(), reference.getLength(), notify);
        if (notify && !peer.isClosed()) {
          auto freed = peer.newControlMessage();
          freed->getRoot<wire::Message>().setSharedMemoryFreed();
          peer.send(kj::mv(freed));
        }
      }
      // A frame may not stand for another reference (that would nest without bound).
      auto root = frame->getRoot<capnp::AnyPointer>();
      if (!root.isNull() && root.getPointerType() == capnp::PointerType::STRUCT) {
        if (checkEnvelope(*frame) == nullptr &&
            isSharedMemoryMessage(frame->getRoot<wire::Message>())) {
          kj::throwFatalException(malformed("a shared-memory frame holding another reference"));
        }
      }
      return kj::mv(frame);
    }
    default:
      KJ_FAIL_REQUIRE("not a shared-memory message");
  }
}

}  // namespace harrow
