// A received wire::Error is a peer's data like any other: whatever its shape (relay paths of a
// million hops, MultiErrors nested in MultiErrors, megabytes of message), turning it into
// exceptions costs no more than reading the frame did, and what is cut is counted, not hidden.

#include <harrow/co/multi_error.h>
#include <harrow/engine/remote_error.h>

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <string>

namespace harrow {
namespace {

size_t count(kj::StringPtr text, kj::StringPtr what) {
  size_t n = 0;
  for (auto at = std::string_view(text.cStr()).find(what.cStr()); at != std::string_view::npos;
       at = std::string_view(text.cStr()).find(what.cStr(), at + 1)) {
    ++n;
  }
  return n;
}

void fill(wire::Error::Builder error, kj::StringPtr name) {
  error.setType("test.Boom");
  error.setMessage(kj::str("boom in ", name));
  error.getOrigin().setName(name);
  const kj::byte zero[16] = {};
  error.getOrigin().setUuid(kj::arrayPtr(zero, 16));
}

// Each level: three causes, each a MultiError of the level below; the leaves are plain errors.
void nest(wire::Error::Builder error, uint levels) {
  fill(error, kj::str("level", levels));
  error.initRelayPath(1)[0].setName(kj::str("carrier", levels));
  if (levels == 0) return;
  error.setType("harrow.MultiError");
  auto causes = error.initCauses(3);
  for (auto cause : causes) nest(cause, levels - 1);
}

TEST(RemoteErrorTest, ItsPredicatesMatchAKindAsIsDoesNotByABarePrefix) {
  auto plain = [](kj::StringPtr text) {
    return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str(text));
  };
  EXPECT_FALSE(isRemoteActorError(plain("harrow.RemoteActorErrors are many")));
  EXPECT_FALSE(isContextCancelled(plain("harrow.ContextCancelledTwice: no such kind")));
  EXPECT_FALSE(isProtocolViolation(plain("harrow.ProtocolViolations: no such kind")));
  EXPECT_TRUE(isContextCancelled(plain("harrow.ContextCancelled: by the caller")));
  EXPECT_TRUE(isProtocolViolation(protocolViolation("a bad frame")));
  EXPECT_TRUE(isMessageTooLarge(messageTooLarge("a 70 MiB call")));
}

// An error with a stack trace goes with the trace symbolized; a cancellation goes without it:
// symbolizing loads the binary's debug information, and a tree's graceful teardown (every actor
// answering its cancelled calls) spent most of its time there.
TEST(RemoteErrorTest, ACancellationIsSentWithoutASymbolizedStack) {
  kj::Exception exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                          kj::str("test.Boom: with a stack"));
  exception.extendTrace(0);
  ASSERT_GT(exception.getStackTrace().size(), 0u);
  ActorIdentity self = ActorIdentity::random("self");
  capnp::MallocMessageBuilder failed, cancelled;
  fillWireError(failed.initRoot<wire::Error>(), exception, self, wire::ErrorKind::FAILED);
  fillWireError(cancelled.initRoot<wire::Error>(), exception, self,
                wire::ErrorKind::CONTEXT_CANCELLED);
  EXPECT_EQ(count(failed.getRoot<wire::Error>().getRemoteTrace(), "stack:"), 1u);
  EXPECT_EQ(count(cancelled.getRoot<wire::Error>().getRemoteTrace(), "stack:"), 0u);
}

TEST(RemoteErrorTest, AMillionRelayHopsAreCountedNotListed) {
  capnp::MallocMessageBuilder builder;
  auto error = builder.initRoot<wire::Error>();
  fill(error, "leaf");
  auto hops = error.initRelayPath(1'000'000);
  for (auto hop : hops) hop.setName("hop");

  auto e = toException(error.asReader());
  EXPECT_TRUE(isRemoteActorError(e));
  EXPECT_EQ(count(e.getDescription(), "relayed by 'hop'"), 64u);
  EXPECT_EQ(count(e.getDescription(), "relayed by 999936 more actors (not shown)"), 1u);
}

TEST(RemoteErrorTest, NestedMultiErrorsKeepAtMost256ErrorsAndCountTheRest) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<wire::Error>();
  nest(root, 10);  // 3^10 leaves
  capnp::ReaderOptions generous{1ull << 30, 64};
  capnp::SegmentArrayMessageReader reader(builder.getSegmentsForOutput(), generous);

  auto all = failuresIn(toException(reader.getRoot<wire::Error>()));
  ASSERT_EQ(all.size(), 257u);
  // Past eight levels a MultiError is shown as one error, its own fields.
  EXPECT_TRUE(all[0].getDescription().startsWith(
      "harrow.RemoteActorError: harrow.MultiError from actor 'level2'"))
      << all[0].getDescription().cStr();
  EXPECT_EQ(count(all[0].getDescription(), "relayed by 'carrier"), 9u);
  EXPECT_STREQ(all[256].getDescription().cStr(),
               "harrow.RemoteActorError: 6305 more errors of a MultiError from actor 'level10' "
               "(00000000000000000000000000000000) (not shown; at most 256 are kept)");
}

// Reading an error is charged to the reader's traversal limit like any read, and the decode
// check (docs/PROTOCOL.md, "Flow control") allows for about one walk of it. A MultiError's relay
// path is shown under each of its errors; read once per error, a path of 64 hops with 8 KiB
// names under 256 errors (a frame of half a megabyte) cost 17 Mi words, over the default limit
// of 8 Mi: the conversion threw, and the call the error answered was never failed.
TEST(RemoteErrorTest, AMultiErrorsRelayPathIsReadOnceNotOncePerError) {
  capnp::MallocMessageBuilder builder;
  auto error = builder.initRoot<wire::Error>();
  fill(error, "multi");
  error.setType("harrow.MultiError");
  std::string name(8192, 'n');
  for (auto hop : error.initRelayPath(64)) hop.setName(name);
  for (auto cause : error.initCauses(256)) fill(cause, "leaf");
  capnp::SegmentArrayMessageReader reader(builder.getSegmentsForOutput());  // the default limit

  auto all = failuresIn(toException(reader.getRoot<wire::Error>()));
  ASSERT_EQ(all.size(), 256u);
  EXPECT_EQ(count(all[255].getDescription(), "relayed by 'nnnn"), 64u)
      << all[255].getDescription().cStr();
}

TEST(RemoteErrorTest, MessagesShareAFourMegabyteBudget) {
  capnp::MallocMessageBuilder builder;
  auto error = builder.initRoot<wire::Error>();
  fill(error, "leaf");
  auto text = kj::heapArray<char>((8 << 20) + 1);
  memset(text.begin(), 'x', text.size() - 1);
  text.back() = '\0';
  error.setMessage(capnp::Text::Reader(text.begin(), text.size() - 1));
  error.setRemoteTrace("at somewhere");
  capnp::ReaderOptions generous{1ull << 30, 64};
  capnp::SegmentArrayMessageReader reader(builder.getSegmentsForOutput(), generous);

  auto e = toException(reader.getRoot<wire::Error>());
  KJ_IF_MAYBE(info, remoteErrorInfo(e)) {
    EXPECT_TRUE(info->message.endsWith(kj::str("... (", (8 << 20) - ((4 << 20) - 9),
                                               " more bytes not shown)")))
        // Not slice(size() - 60): GCC 12 at -O1 (TSan) follows the inlined path where the text is
        // a short constant and fails the build with a false -Werror=array-bounds in kj::String.
        << std::string(info->message.cStr()).substr(info->message.size() - 60);
    // The budget went to the type and the message.
    EXPECT_EQ(info->remoteTrace, "... (12 more bytes not shown)"_kj);
  } else {
    ADD_FAILURE() << e.getDescription().cStr();
  }
}

}  // namespace
}  // namespace harrow
