#include "runtime/engine/internal/wire_message.h"

#include <harrow/engine/remote_error.h>
#include "runtime/engine/internal/decode.h"

#include <capnp/schema.h>
#include <kj/debug.h>

#include <string.h>
#include <typeinfo>

namespace harrow {

kj::Maybe<kj::String> checkEnvelope(capnp::MessageReader& reader) {
  DecodeReader fresh(reader, reader.getOptions(), ENVELOPE_READS);
  return checkStruct(capnp::Schema::from<wire::Message>(), fresh.getRoot<capnp::AnyPointer>());
}

bool hasStructRoot(capnp::MessageReader& reader) {
  auto root = reader.getRoot<capnp::AnyPointer>();
  return root.isNull() || root.getPointerType() == capnp::PointerType::STRUCT;
}

WireOutgoing& asWire(OutgoingMessage& message) {
  // WireOutgoing is final: an exact type test, inline, where a dynamic_cast (once per message
  // sent) walks the hierarchy in a library call.
  KJ_REQUIRE(typeid(message) == typeid(WireOutgoing), "message was not created by this channel");
  return static_cast<WireOutgoing&>(message);
}

FirstSegment::FirstSegment(capnp::uint words) {
  if (words <= INLINE_WORDS) {
    segment = kj::arrayPtr(inlineWords, kj::max(words, 1u));
  } else {
    heapWords = kj::heapArray<capnp::word>(words);
    segment = heapWords;
  }
  memset(segment.begin(), 0, segment.asBytes().size());
}

WireOutgoing::WireOutgoing(Peer& peer, uint64_t callId, wire::Message::Which which,
                           kj::StringPtr task, capnp::uint expectedWords)
    : FirstSegment(expectedWords), FrameFileBuilder(FirstSegment::words()), peer(peer),
      callId(callId), task(task), payloadBuilder(initPayload(which)) {}

wire::Payload::Builder WireOutgoing::initPayload(wire::Message::Which which) {
  // A large value goes into a memfd as it is built: the channel passes it without a copy.
  allocateLargeSegmentsInFiles(peer.channel().sealedFrameBytes());
  auto root = initRoot<wire::Message>();
  root.setCallId(callId);
  switch (which) {
    case wire::Message::START: return root.initStart().initParams();
    case wire::Message::STARTED: return root.initStarted();
    case wire::Message::YIELD: return root.initYield();
    case wire::Message::RETURN: return root.initReturn();
    default: KJ_FAIL_REQUIRE("this message carries no payload", which);
  }
}

kj::Own<capnp::MallocMessageBuilder> WireOutgoing::release(kj::Own<OutgoingMessage> message) {
  asWire(*message);
  return message.downcast<WireOutgoing>();
}

kj::StringPtr WireOutgoing::typeName() const {
  KJ_IF_MAYBE(schema, payloadSchema) {
    // The display name is "path/file.capnp:Outer.Inner"; the part after the file names the type.
    kj::StringPtr name = schema->getProto().getDisplayName();
    KJ_IF_MAYBE(colon, name.findLast(':')) return name.slice(*colon + 1);
    return name;
  }
  return "";
}

kj::ArrayPtr<capnp::word> WireOutgoing::allocateSegment(capnp::uint minimumSize) {
  requestedWords += minimumSize;
  ++segments;
  // The segment table (a count, a size per segment, padded to a word) and what is asked for.
  uint64_t atLeast = (segments / 2 + 1 + requestedWords) * sizeof(capnp::word);
  peer.refuseOverLimit(*this, atLeast, true);
  return FrameFileBuilder::allocateSegment(minimumSize);
}

kj::String WireOutgoing::describe(Peer& peer) {
  auto ofType = [&](kj::StringPtr what) {
    kj::StringPtr type = typeName();
    return kj::str(what, type.size() > 0 ? kj::str(" (", type, ")") : kj::str(), " of ", task);
  };
  switch (root().which()) {
    case wire::Message::START:
      return kj::str("the start of ", peer.describeOutgoing(*this, startKind));
    case wire::Message::RETURN:
      return kj::str("the result of ", task);
    case wire::Message::STARTED:
      return ofType("the started value");
    default:
      return ofType("a stream item");
  }
}

kj::Maybe<kj::String> methodOfPayloadType(kj::StringPtr typeName) {
  for (kj::StringPtr suffix : {"$Params"_kj, "$Results"_kj}) {
    if (typeName.endsWith(suffix)) {
      return kj::heapString(typeName.begin(), typeName.size() - suffix.size());
    }
  }
  return nullptr;
}

kj::String methodOfParams(kj::Maybe<capnp::Schema> params) {
  KJ_IF_MAYBE(schema, params) {
    kj::StringPtr name = schema->getProto().getDisplayName();
    KJ_IF_MAYBE(colon, name.findLast(':')) name = name.slice(*colon + 1);
    KJ_IF_MAYBE(method, methodOfPayloadType(name)) return kj::mv(*method);
  }
  return kj::str();
}

WireIncoming::WireIncoming(kj::Own<capnp::MessageReader> reader, wire::Payload::Reader payload,
                           kj::Maybe<DecodeSink&> sink)
    : reader(kj::mv(reader)), payloadReader(payload) {
  KJ_IF_MAYBE(s, sink) this->sink = kj::addRef(*s);
}

void WireIncoming::check(capnp::StructSchema expected) {
  uint64_t expectedId = expected.getProto().getId();
  if (checkedType == expectedId) return;
  kj::Maybe<kj::String> problem;
  if (payloadReader.getTypeId() != expectedId) {
    problem = kj::str("payload has type id ", kj::hex(payloadReader.getTypeId()), ", expected ",
                      expected.getShortDisplayName(), " (", kj::hex(expectedId), ")");
  } else {
    // The envelope was checked when the message was routed, so the payload's location reads;
    // its value is walked through a reader of its own (a fresh traversal budget).
    auto value = payloadReader.getValue();
    if (!value.isNull()) {
      DecodeReader fresh(*reader, reader->getOptions());
      problem = checkStruct(expected, payloadOf(fresh.getRoot<wire::Message>()).getValue());
    }
  }
  KJ_IF_MAYBE(what, problem) {
    KJ_IF_MAYBE(s, sink) {
      KJ_IF_MAYBE(route, (*s)->route) route->malformed(*what);
    }
    kj::throwFatalException(protocolViolation(*what));
  }
  checkedType = expectedId;
}

wire::Payload::Reader payloadOf(wire::Message::Reader message) {
  switch (message.which()) {
    case wire::Message::START: return message.getStart().getParams();
    case wire::Message::STARTED: return message.getStarted();
    case wire::Message::YIELD: return message.getYield();
    case wire::Message::RETURN: return message.getReturn();
    default: KJ_FAIL_REQUIRE("message carries no payload", messageName(message));
  }
}

kj::StringPtr messageName(wire::Message::Reader message) {
  auto which = static_cast<uint16_t>(message.which());
  KJ_IF_MAYBE (field, capnp::Schema::from<wire::Message>().getFieldByDiscriminant(which)) {
    return field->getProto().getName();
  }
  return "a message of a kind this side does not know";
}

}  // namespace harrow
