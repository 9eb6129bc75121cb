// Corners of capnpc-harrow (tests/codegen/edge.capnp): what it resolves annotation names to,
// which methods get flattened overloads and how they pick among overloads, C++ keywords,
// named param structs, contexts without streams, and an actor nested in a struct.

#include "tests/codegen/edge.capnp.harrow.h"
#include "tests/codegen/edge_common.capnp.harrow.h"  // a schema without actors: only a comment
#include "tests/codegen/fakes.h"

#include <gtest/gtest.h>

namespace harrow::codegen_test {
namespace {

using edge::Color;
using edge::Edge;
using edge::EdgeActor;
using edge::Outer_InnerActor;
using edge::Point;
using edge::Top;

// Annotation names resolve through the interface, the file, dotted scopes and imports.
static_assert(std::is_same_v<EdgeActor::Portal::SharedStream, ReceiveStream<::Shared>>);
static_assert(std::is_same_v<EdgeActor::Portal::NestedStream, ReceiveStream<Top::Nested>>);
static_assert(std::is_same_v<EdgeActor::Portal::DeepStream, ReceiveStream<::Shared::Inner>>);
static_assert(std::is_same_v<EdgeActor::Portal::OwnStream, ReceiveStream<Edge::Local>>);
static_assert(
    std::is_same_v<EdgeActor::Portal::QuietContext, CallerContext<Edge::Local, void, void>>);
static_assert(
    std::is_same_v<EdgeActor::Portal::OneWayContext, CallerContext<Edge::Local, Top, void>>);
static_assert(std::is_same_v<EdgeActor::Server::MoveCall, ServerCall<Point, Point>>);
static_assert(
    std::is_same_v<EdgeActor::Server::QuietCall,
                   ServerContext<Edge::QuietParams, Edge::QuietResults, Edge::Local, void, void>>);

// Flattened overloads exist exactly for params of primitives, enums, Text and Data.
template <typename Portal>
concept FlattensSum = requires(Portal portal) { portal.sum(kj::ArrayPtr<const int32_t>()); };
static_assert(!FlattensSum<EdgeActor::Portal>);

class TestEdge final : public EdgeActor::Server {
public:
  Co<void> ping(PingCall call) override { co_return; }
  Co<void> paint(PaintCall call) override {
    call.results().setOk(call.params().getColor() == Color::GREEN);
    co_return;
  }
  Co<void> toggle(ToggleCall call) override {
    call.results().setOn(!call.params().getOn());
    co_return;
  }
  Co<void> delete_(DeleteCall call) override { co_return; }
  Co<void> move(MoveCall call) override {
    call.results().setX(call.params().getY());
    call.results().setY(call.params().getX());
    co_return;
  }
  Co<void> sum(SumCall call) override { co_return; }
  Co<void> shared(SharedCall call) override {
    co_await call.yield([](::Shared::Builder shared) { shared.setV(1); });
  }
  Co<void> nested(NestedCall call) override { co_return; }
  Co<void> deep(DeepCall call) override {
    co_await call.yield([](::Shared::Inner::Builder inner) { inner.setW(2); });
  }
  Co<void> quiet(QuietCall call) override {
    co_await call.started([](Edge::Local::Builder) {});
    call.results().setN(3);
  }
  Co<void> oneWay(OneWayCall call) override { co_return; }
  Co<void> own(OwnCall call) override { co_return; }
};

class EdgeTest : public ::testing::Test {
protected:
  ~EdgeTest() noexcept override {}
  kj::EventLoop loop;
  kj::WaitScope waitScope{loop};
};

TEST_F(EdgeTest, KeywordsAndKinds) {
  TestEdge server;
  EXPECT_EQ(server.methodName(3), "delete");  // the schema's name; the C++ member is delete_
  EXPECT_EQ(server.methodKind(4), MethodKind::CALL);
  EXPECT_EQ(server.methodKind(8), MethodKind::STREAM);
  EXPECT_EQ(server.methodKind(10), MethodKind::CONTEXT);
  EXPECT_EQ(server.methodKind(12), nullptr);
  EXPECT_EQ(server.interfaceId(), capnp::typeId<Edge>());
}

TEST_F(EdgeTest, NestedActor) {
  EXPECT_STREQ(Outer_InnerActor::NAME, "Outer.Inner");
  static_assert(Outer_InnerActor::INTERFACE_ID == capnp::typeId<edge::Outer::Inner>());
  static_assert(std::is_abstract_v<Outer_InnerActor::Server>);
}

TEST_F(EdgeTest, DispatchUsesNamedStructsAndImportedItems) {
  TestEdge server;
  FakeTask move(MethodKind::CALL, incoming<Point>([](auto point) {
                  point.setX(1);
                  point.setY(2);
                }));
  server.dispatch(4, move).wait(waitScope);
  EXPECT_EQ(move.resultsMessage.as<Point>().getX(), 2);

  FakeTask deep(MethodKind::STREAM, incoming<Edge::DeepParams>([](auto) {}));
  server.dispatch(8, deep).wait(waitScope);
  ASSERT_EQ(deep.items.size(), 1u);
  EXPECT_EQ(deep.item<::Shared::Inner>(0).getW(), 2);

  FakeTask quiet(MethodKind::CONTEXT, incoming<Edge::QuietParams>([](auto) {}));
  server.dispatch(9, quiet).wait(waitScope);
  EXPECT_EQ(quiet.resultsMessage.as<Edge::QuietResults>().getN(), 3);
}

// A FakePortal answering every call with `Results` (all defaults).
template <typename Results>
void answerWithDefaults(FakePortal& raw) {
  raw.reply = [](FakeOutgoing&) -> kj::Own<IncomingMessage> {
    return incoming<Results>([](auto) {});
  };
}

TEST_F(EdgeTest, FlattenedCallsSetEveryField) {
  FakePortal raw;
  EdgeActor::Portal portal(raw);

  answerWithDefaults<Edge::PaintResults>(raw);
  kj::byte bytes[] = {1, 2, 3};
  portal.paint(Color::GREEN, bytes, "note", true, 0.5).wait(waitScope);
  auto paint = raw.lastStart().as<Edge::PaintParams>();
  EXPECT_EQ(paint.getColor(), Color::GREEN);
  EXPECT_EQ(paint.getBytes().size(), 3u);
  EXPECT_EQ(paint.getNote(), "note");
  EXPECT_TRUE(paint.getFlag());
  EXPECT_EQ(paint.getRatio(), 0.5);
  EXPECT_EQ(raw.methodId, 1);

  answerWithDefaults<Edge::DeleteResults>(raw);
  portal.delete_("body", 7).wait(waitScope);
  EXPECT_EQ(raw.lastStart().as<Edge::DeleteParams>().getBody(), "body");
  EXPECT_EQ(raw.lastStart().as<Edge::DeleteParams>().getRequest(), 7);

  answerWithDefaults<Point>(raw);
  portal.move(4, 5).wait(waitScope);
  EXPECT_EQ(raw.lastStart().as<Point>().getY(), 5);

  answerWithDefaults<Edge::PingResults>(raw);
  portal.ping().wait(waitScope);
  EXPECT_EQ(raw.methodId, 0);
}

TEST_F(EdgeTest, ALambdaPicksTheFillFormEvenForABool) {
  // A captureless lambda converts to bool (through a function pointer); the constrained fill
  // form must still win over toggle(bool).
  FakePortal raw;
  EdgeActor::Portal portal(raw);
  answerWithDefaults<Edge::ToggleResults>(raw);
  portal.toggle([](Edge::ToggleParams::Builder params) { params.setOn(true); }).wait(waitScope);
  EXPECT_TRUE(raw.lastStart().as<Edge::ToggleParams>().getOn());
  portal.toggle(false).wait(waitScope);
  EXPECT_FALSE(raw.lastStart().as<Edge::ToggleParams>().getOn());
}

TEST_F(EdgeTest, FlattenedStreamsAndContexts) {
  FakePortal raw;
  EdgeActor::Portal portal(raw);
  auto body = [](auto&) -> Co<void> { co_return; };

  EXPECT_NE(failureOf(portal.nested(9, body), waitScope), "");
  EXPECT_EQ(raw.lastStart().as<Edge::NestedParams>().getFrom(), 9);
  EXPECT_EQ(raw.openedKind, MethodKind::STREAM);

  EXPECT_NE(failureOf(portal.shared(body), waitScope), "");
  EXPECT_EQ(raw.methodId, 6);

  auto contextBody = [](auto&, Edge::Local::Reader) -> Co<void> { co_return; };
  EXPECT_NE(failureOf(portal.quiet(contextBody), waitScope), "");
  EXPECT_EQ(raw.openedKind, MethodKind::CONTEXT);
  EXPECT_EQ(raw.methodId, 9);
}

}  // namespace
}  // namespace harrow::codegen_test
