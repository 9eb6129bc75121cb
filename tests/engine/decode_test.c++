// The decode check (runtime/engine/internal/decode.c++) reads a received struct as its schema
// declares, with a plan compiled once per type. Here it is compared with the straightforward
// reading through capnp's dynamic API on the same bytes: on valid messages of every field kind
// both pass, and on tens of thousands of corrupted copies they must agree message by message.
// A plan that skipped a field (a wrong pointer index, a union member, a group, an element type)
// passes messages the dynamic reading rejects.

#include "runtime/engine/internal/decode.h"
#include "tests/engine/decode_test.capnp.h"

#include <capnp/dynamic.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <kj/debug.h>

#include <random>

namespace harrow {
namespace {

// The reference: every field read through the dynamic API (what the check did before plans).
void readValue(capnp::DynamicValue::Reader value);

void readField(capnp::DynamicStruct::Reader value, capnp::StructSchema::Field field) {
  // A null pointer reads as the default, which is valid; reading into it would not end for a
  // type that contains itself (Everything.tail.extra).
  switch (field.getType().which()) {
    case capnp::schema::Type::TEXT:
    case capnp::schema::Type::DATA:
    case capnp::schema::Type::LIST:
    case capnp::schema::Type::STRUCT:
      if (!field.getProto().isGroup() && !value.has(field)) return;
      readValue(value.get(field));
      return;
    default:
      return;
  }
}

void readStruct(capnp::DynamicStruct::Reader value) {
  for (auto field : value.getSchema().getNonUnionFields()) readField(value, field);
  KJ_IF_MAYBE(active, value.which()) readField(value, *active);
}

void readValue(capnp::DynamicValue::Reader value) {
  switch (value.getType()) {
    case capnp::DynamicValue::STRUCT: readStruct(value.as<capnp::DynamicStruct>()); return;
    case capnp::DynamicValue::LIST:
      for (auto element : value.as<capnp::DynamicList>()) readValue(element);
      return;
    default: return;
  }
}

kj::Maybe<kj::Exception> dynamicFailure(kj::ArrayPtr<const capnp::word> words) {
  capnp::FlatArrayMessageReader flat(words);
  auto fresh = decodeReader(flat);
  return kj::runCatchingExceptions([&]() {
    auto root = fresh->getRoot<capnp::AnyPointer>();
    if (root.isNull()) return;
    KJ_REQUIRE(root.getPointerType() == capnp::PointerType::STRUCT);
    readStruct(root.getAs<capnp::DynamicStruct>(capnp::Schema::from<test::Everything>()));
  });
}

kj::String failingFields(kj::ArrayPtr<const capnp::word> words) {
  capnp::FlatArrayMessageReader flat(words);
  auto fresh = decodeReader(flat);
  auto root = fresh->getRoot<capnp::DynamicStruct>(capnp::Schema::from<test::Everything>());
  kj::Vector<kj::String> names;
  for (auto field : root.getSchema().getFields()) {
    if (kj::runCatchingExceptions([&]() { readField(root, field); }) != nullptr) {
      names.add(kj::str(field.getProto().getName()));
    }
  }
  return kj::strArray(names, ",");
}

kj::String describe(kj::Maybe<kj::Exception> failure) {
  KJ_IF_MAYBE(e, failure) return kj::str(e->getDescription());
  return kj::str("(no failure)");
}

bool dynamicReads(kj::ArrayPtr<const capnp::word> words) { return dynamicFailure(words) == nullptr; }

bool checkPasses(kj::ArrayPtr<const capnp::word> words) {
  capnp::FlatArrayMessageReader flat(words);
  auto fresh = decodeReader(flat);
  return checkStruct(capnp::Schema::from<test::Everything>(),
                     fresh->getRoot<capnp::AnyPointer>()) == nullptr;
}

void fill(test::Everything::Builder e, int depth) {
  e.setText("text");
  e.initData(3)[1] = 7;
  e.initPoint().setX(1);
  auto tree = e.initTree();
  tree.setName("root");
  auto children = tree.initChildren(2);
  children[0].setName("a");
  children[1].initChildren(1)[0].setName("b");
  e.initBools(9).set(3, true);
  e.initBytes(5);
  e.initShorts(3);
  e.initColours(2).set(1, test::Colour::BLUE);
  e.initInts(4);
  e.initFloats(2);
  e.initVoids(6);
  auto texts = e.initTexts(3);
  texts.set(0, "x");
  texts.set(2, "zz");
  e.initBlobs(2).set(1, kj::StringPtr("blob").asBytes());
  e.initPoints(3)[2].setY(5);
  auto nested = e.initNested(2);
  nested.init(0, 2).set(1, "deep");
  auto nestedPoints = e.initNestedPoints(1);
  nestedPoints.init(0, 2)[0].setX(3);
  e.getOpaque().setAs<capnp::Text>("opaque");
  e.initDeepBlobs(1).init(0, 2).init(1, 1).set(0, kj::StringPtr("o").asBytes());
  e.setNumber(42);
  switch (depth % 4) {
    case 0: e.getShape().initPolygon(2)[1].setX(9); break;
    case 1: e.getShape().setLabel("label"); break;
    case 2: {
      auto named = e.getShape().initNamed();
      named.setName("named");
      auto tagged = named.getKind().initTagged(2);
      tagged.set(0, "t");
      break;
    }
    default: e.getShape().initCircle().setX(2); break;
  }
  e.getTail().setNote("note");
  if (depth > 0) fill(e.getTail().initExtra(), depth - 1);
}

kj::Array<capnp::word> valid(int depth) {
  capnp::MallocMessageBuilder message;
  fill(message.initRoot<test::Everything>(), depth);
  return capnp::messageToFlatArray(message);
}

TEST(DecodeCheck, PassesValidMessagesOfEveryFieldKind) {
  for (int depth = 0; depth < 6; ++depth) {
    auto words = valid(depth);
    EXPECT_TRUE(dynamicReads(words)) << depth;
    EXPECT_TRUE(checkPasses(words)) << depth;
  }
}

// A struct that contains itself: null means the default, and the check does not read into it
// (before plans, the dynamic reading did, and recursed until the stack ran out).
TEST(DecodeCheck, EndsOnATypeThatContainsItself) {
  capnp::MallocMessageBuilder message;
  message.initRoot<test::Everything>().getTail().setNote("no extra");
  auto words = capnp::messageToFlatArray(message);
  EXPECT_TRUE(checkPasses(words));
}

// The check walks through a reader of its own; the application then reads through its reader,
// whose traversal limit is charged again for every read (capnp counts a pointer read twice
// twice). Asked to leave room for `reads` reads, the check passes only messages that many walks
// of which fit in the application's limit. A list of 1,000 Voids costs 1,000 words to read and
// none to send; the application's limit here is 3,000 words. (The channel fuzz harness found an
// error whose causes the engine read twice: the check had passed it within a 1,024-word limit.)
TEST(DecodeCheck, AMessageThatPassesForNReadsCanBeReadNTimes) {
  capnp::MallocMessageBuilder message;
  message.initRoot<test::Everything>().initVoids(1000);
  auto words = capnp::messageToFlatArray(message);
  capnp::ReaderOptions options{3000, 64};
  for (uint64_t reads = 1; reads <= 4; ++reads) {
    capnp::FlatArrayMessageReader application(words, options);
    auto fresh = decodeReader(application, options, reads);
    bool passes = checkStruct(capnp::Schema::from<test::Everything>(),
                              fresh->getRoot<capnp::AnyPointer>()) == nullptr;
    EXPECT_EQ(passes, reads <= 2) << reads;
    if (!passes) continue;
    auto failure = kj::runCatchingExceptions([&]() {
      for (uint64_t i = 0; i < reads; ++i) application.getRoot<test::Everything>().getVoids();
    });
    EXPECT_TRUE(failure == nullptr) << reads << ": " << describe(kj::mv(failure)).cStr();
  }
}

TEST(DecodeCheck, NamesTheTypeAndTheWrongPointerKind) {
  capnp::MallocMessageBuilder message;
  message.initRoot<capnp::AnyPointer>().initAs<capnp::List<uint32_t>>(3);
  auto words = capnp::messageToFlatArray(message);
  capnp::FlatArrayMessageReader flat(words);
  auto fresh = decodeReader(flat);
  KJ_IF_MAYBE(problem, checkStruct(capnp::Schema::from<test::Everything>(),
                                   fresh->getRoot<capnp::AnyPointer>())) {
    EXPECT_EQ(*problem, "expected a Everything struct, got a list pointer");
  } else {
    ADD_FAILURE() << "a list root passed as a struct";
  }
}

template <typename Builder>
capnp::List<capnp::AnyPointer>::Builder pointersOf(Builder b) {
  return capnp::AnyStruct::Builder(kj::mv(b)).getPointerSection();
}

// A text field holding a struct pointer, a list of structs where Text is expected, a union
// member's pointer of the wrong kind, a group's: each is found, whichever field it is in.
TEST(DecodeCheck, FindsAWrongPointerInEachKindOfField) {
  auto broken = [](auto&& breakIt) {
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<test::Everything>();
    fill(root, 2);
    breakIt(root);
    auto words = capnp::messageToFlatArray(message);
    EXPECT_FALSE(dynamicReads(words));
    return checkPasses(words);
  };
  EXPECT_FALSE(broken([](auto e) {
    pointersOf(e)[0].template initAs<test::Point>();
  }));
  EXPECT_FALSE(broken([](auto e) {  // texts: a list of structs where List(Text) is expected
    pointersOf(e)[11].template initAs<capnp::List<test::Point>>(2);
  }));
  EXPECT_FALSE(broken([](auto e) {  // shape.label holding a list of Int32
    e.getShape().setLabel("x");
    auto shape = capnp::Schema::from<test::Everything>().getFieldByName("shape");
    auto label = shape.getType().asStruct().getFieldByName("label");
    pointersOf(e)[label.getProto().getSlot().getOffset()].template initAs<capnp::List<uint32_t>>(4);
  }));
  EXPECT_FALSE(broken([](auto e) {  // tail.extra.text (a group's struct, then a text)
    auto extra = e.getTail().getExtra();
    pointersOf(extra)[0].template initAs<test::Point>();
  }));
}

// Tens of thousands of corrupted copies of valid messages: flipped bits and overwritten words
// anywhere after the segment table. The plan and the dynamic reading agree on every one.
TEST(DecodeCheck, AgreesWithTheDynamicReadingOnCorruptedMessages) {
  std::mt19937_64 random(20261129);
  size_t rejected = 0, total = 0;
  for (int depth = 0; depth < 4; ++depth) {
    auto original = valid(depth);
    for (int round = 0; round < 8000; ++round) {
      auto words = kj::heapArray<capnp::word>(original.asPtr());
      auto bytes = words.asBytes();
      int edits = 1 + random() % 4;
      for (int i = 0; i < edits; ++i) {
        size_t at = 8 + random() % (bytes.size() - 8);  // keep the one-segment table
        if (random() % 2) {
          bytes[at] ^= kj::byte(1u << (random() % 8));
        } else {
          uint64_t word = random();
          memcpy(bytes.begin() + (at & ~size_t(7)), &word, 8);
        }
      }
      bool reference = dynamicReads(words);
      ASSERT_EQ(checkPasses(words), reference)
          << "depth " << depth << ", round " << round << ": the plan says "
          << (reference ? "no" : "yes") << ", the dynamic reading "
          << (reference ? "yes" : "no") << ": "
          << describe(dynamicFailure(words)).cStr() << " in " << failingFields(words).cStr();
      rejected += !reference;
      ++total;
    }
  }
  // Not a test that cannot fail the other way: many of the copies must actually be broken.
  EXPECT_GT(rejected, total / 10);
}

}  // namespace
}  // namespace harrow
