// The decode boundary: received data is checked against the schema it is read as, once, before
// anything reads it.
//
// Cap'n Proto reads lazily: a frame that passed the channel's validation (bounds, traversal and
// nesting limits, no capabilities; runtime/ipc/channel.c++) can still hold a pointer of the wrong
// kind (a list where a struct is expected, a struct where Text is), and the typed reader throws
// only when it gets there. Reads of peer data happen all over the engine and the handlers, so a
// throw there would surface far from the channel, e.g. in the actor's service nursery. Instead,
// the engine checks each message's envelope (wire::Message) when it is routed, and each payload
// against the type it is read as when the typed layer first asks for it (IncomingMessage::get);
// a failure is a protocol violation of that task or channel.

#pragma once

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/schema.h>
#include <kj/array.h>
#include <kj/string.h>

namespace harrow {

// Reads every field of the struct `value` points to as `schema` declares it, recursively
// (structs, groups, lists, Text, Data; AnyPointer fields are left alone: their reader checks
// them when it knows their type). Null is a valid (default) struct. Returns what is wrong, or
// nullptr if every read succeeds, in which case no typed read of the same data can fail on a
// pointer's kind or bounds.
//
// `value` must come from a reader of its own (see decodeReader()): the walk charges that
// reader's traversal limit, which must not be taken from the application's reader.
kj::Maybe<kj::String> checkStruct(capnp::StructSchema schema, capnp::AnyPointer::Reader value);

// A second reader over the segments of `message`, with its own traversal budget: the smaller of
// `options`' limit / `reads` and AMPLIFICATION × the message's size + SLACK_WORDS. A message that
// a walk reads more than that (aliased pointers, lists of zero-sized elements) does not decode.
// `reads`: how many times the caller will read what passes through the application's reader
// (whose limit `options` is): each read is charged to that limit again, so a walk that passes
// must leave room for them all, or a message that decodes could still not read.
constexpr uint64_t AMPLIFICATION = 4;
constexpr uint64_t SLACK_WORDS = 1024;
kj::Own<capnp::MessageReader> decodeReader(capnp::MessageReader& message,
                                           capnp::ReaderOptions options = {}, uint64_t reads = 1);

namespace _ {
// The segment list a DecodeReader reads: inline for a message of up to INLINE segments.
struct DecodeSegments {
  static constexpr size_t INLINE = 4;
  explicit DecodeSegments(capnp::MessageReader& message);
  kj::ArrayPtr<const capnp::word> inlineSegments[INLINE];
  kj::Array<kj::ArrayPtr<const capnp::word>> heapSegments;
  kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments;
  uint64_t words = 0;
};
}  // namespace _

// decodeReader()'s reader built in place, where it is used (the engine checks every received
// envelope and payload with one): no allocation for a message of up to four segments. As an Own
// it cost four allocations, twice per stream item (bench/README.md, "Streams").
//
//   DecodeReader fresh(reader, reader.getOptions());
//   checkStruct(schema, fresh.getRoot<capnp::AnyPointer>());
class DecodeReader final : private _::DecodeSegments, public capnp::SegmentArrayMessageReader {
public:
  DecodeReader(capnp::MessageReader& message, capnp::ReaderOptions options = {},
               uint64_t reads = 1);
  KJ_DISALLOW_COPY(DecodeReader);
};

// The `reads` of an envelope (wire::Message, checkEnvelope()): the engine reads the root and the
// struct under it at each step of routing a message (the receive loop, route(), the task's
// route), and converts an error by reading each of its pointers once more (toException()); each
// of those reads costs at most one walk. Envelopes are small (the payload's value is not part
// of one), so the default limit (8 Mi words) leaves them 1 Mi words.
constexpr uint64_t ENVELOPE_READS = 8;

}  // namespace harrow
