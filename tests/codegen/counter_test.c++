// The generated bindings for examples/counter/counter.capnp, driven through in-memory fakes of
// the engine (fakes.h): the server's dispatch glue and the portal's request building.

#include "examples/counter/counter.capnp.harrow.h"
#include "tests/codegen/fakes.h"

#include <gtest/gtest.h>

namespace harrow::codegen_test {
namespace {

class TestCounter final : public CounterActor::Server {
public:
  int64_t total = 0;
  kj::String lastLabel;

  Co<void> add(AddCall call) override {
    total += call.params().getN();
    call.results().setTotal(total);
    co_return;
  }

  Co<void> count(CountCall call) override {
    for (uint32_t i = 0; i < call.params().getUpTo(); ++i) {
      co_await call.yield(i);  // the value shortcut (Tick has one field)
    }
  }

  Co<void> session(SessionCall call) override {
    lastLabel = kj::str(call.params().getLabel());
    co_await call.started(total);
    co_await call.openStream([&](auto& stream) -> Co<void> {
      while (auto delta = co_await stream.receive()) {
        total += delta->getBy();
        co_await stream.send([&](Counter::Total::Builder t) { t.setValue(total); });
      }
    });
    call.results().setTotal(total);
  }
};

class CounterTest : public ::testing::Test {
protected:
  ~CounterTest() noexcept override {}
  kj::EventLoop loop;
  kj::WaitScope waitScope{loop};
};

// Value shortcuts: generated for the one-field structs sent as items and started values, with the
// field's flattened type; a fill of another struct is not a fill of this one.
static_assert(harrow::HasOneField<Counter::Tick> && harrow::HasOneField<Counter::Ready> &&
              harrow::HasOneField<Counter::Delta> && harrow::HasOneField<Counter::Total>);
static_assert(std::is_same_v<harrow::OneField<Counter::Tick>::Value, int64_t>);
static_assert(!harrow::HasOneField<Counter::SessionResults>);  // results are not sent
static_assert(harrow::FillsStruct<void (*)(Counter::Tick::Builder), Counter::Tick>);
static_assert(!harrow::FillsStruct<void (*)(Counter::Delta::Builder), Counter::Tick>);

TEST_F(CounterTest, TiesTheSchemaToHarrow) {
  static_assert(std::is_same_v<CounterActor::Schema, Counter>);
  static_assert(CounterActor::INTERFACE_ID == capnp::typeId<Counter>());
  EXPECT_STREQ(CounterActor::NAME, "Counter");
  static_assert(std::is_abstract_v<CounterActor::Server>);
  static_assert(std::is_base_of_v<ActorServer, CounterActor::Server>);
}

TEST_F(CounterTest, ServerDescribesItsMethods) {
  TestCounter counter;
  ActorServer& server = counter;
  EXPECT_EQ(server.interfaceId(), capnp::typeId<Counter>());
  EXPECT_EQ(server.interfaceName(), "Counter");
  EXPECT_EQ(server.methodKind(0), MethodKind::CALL);
  EXPECT_EQ(server.methodKind(1), MethodKind::STREAM);
  EXPECT_EQ(server.methodKind(2), MethodKind::CONTEXT);
  EXPECT_EQ(server.methodKind(3), nullptr);
  EXPECT_EQ(server.methodName(0), "add");
  EXPECT_EQ(server.methodName(1), "count");
  EXPECT_EQ(server.methodName(2), "session");
  EXPECT_EQ(server.methodName(3), "");
}

TEST_F(CounterTest, DispatchRunsACall) {
  TestCounter counter;
  counter.total = 10;
  FakeTask task(MethodKind::CALL,
                incoming<Counter::AddParams>([](auto params) { params.setN(5); }));
  counter.dispatch(0, task).wait(waitScope);
  EXPECT_EQ(task.resultsMessage.as<Counter::AddResults>().getTotal(), 15);
}

TEST_F(CounterTest, DispatchRunsAStream) {
  TestCounter counter;
  FakeTask task(MethodKind::STREAM,
                incoming<Counter::CountParams>([](auto params) { params.setUpTo(3); }));
  counter.dispatch(1, task).wait(waitScope);
  ASSERT_EQ(task.items.size(), 3u);
  EXPECT_EQ(task.item<Counter::Tick>(2).getValue(), 2);
}

TEST_F(CounterTest, DispatchRunsAContext) {
  TestCounter counter;
  counter.total = 7;
  FakeTask task(MethodKind::CONTEXT,
                incoming<Counter::SessionParams>([](auto params) { params.setLabel("demo"); }));
  counter.dispatch(2, task).wait(waitScope);
  EXPECT_EQ(counter.lastLabel, "demo");
  EXPECT_EQ(task.started<Counter::Ready>().getStart(), 7);
  EXPECT_TRUE(task.stopped);
  EXPECT_EQ(task.resultsMessage.as<Counter::SessionResults>().getTotal(), 7);
}

TEST_F(CounterTest, DispatchRejectsAnUnknownMethod) {
  TestCounter counter;
  FakeTask task(MethodKind::CALL, incoming<Counter::AddParams>([](auto) {}));
  EXPECT_NE(failureOf(counter.dispatch(9, task), waitScope).find("no method"),
            std::string::npos);
}

TEST_F(CounterTest, PortalCallsWithArguments) {
  FakePortal raw;
  raw.reply = [](FakeOutgoing& start) -> kj::Own<IncomingMessage> {
    int64_t n = start.as<Counter::AddParams>().getN();
    return incoming<Counter::AddResults>([&](auto results) { results.setTotal(n * 2); });
  };
  CounterActor::Portal portal(raw);
  EXPECT_EQ(&portal.raw(), &raw);

  auto result = portal.add(21).wait(waitScope);
  EXPECT_EQ(result->getTotal(), 42);
  EXPECT_EQ(raw.interfaceId, CounterActor::INTERFACE_ID);
  EXPECT_EQ(raw.methodId, 0);
}

TEST_F(CounterTest, PortalCallsWithAFill) {
  FakePortal raw;
  raw.reply = [](FakeOutgoing& start) -> kj::Own<IncomingMessage> {
    int64_t n = start.as<Counter::AddParams>().getN();
    return incoming<Counter::AddResults>([&](auto results) { results.setTotal(n + 1); });
  };
  CounterActor::Portal portal(raw);
  auto result = portal.add([](Counter::AddParams::Builder params) { params.setN(1); });
  EXPECT_EQ(result.wait(waitScope)->getTotal(), 2);
}

TEST_F(CounterTest, PortalOpensAStream) {
  FakePortal raw;
  CounterActor::Portal portal(raw);
  bool ran = false;
  auto promise = portal.count(3, [&](CounterActor::Portal::CountStream&) -> Co<void> {
    ran = true;
    co_return;
  });
  EXPECT_NE(failureOf(kj::mv(promise), waitScope), "");  // FakePortal opens nothing
  EXPECT_FALSE(ran);
  EXPECT_EQ(raw.methodId, 1);
  EXPECT_EQ(raw.openedKind, MethodKind::STREAM);
  EXPECT_EQ(raw.lastStart().as<Counter::CountParams>().getUpTo(), 3u);
}

TEST_F(CounterTest, PortalOpensAContext) {
  FakePortal raw;
  CounterActor::Portal portal(raw);
  auto promise = portal.session(
      "demo", [&](CounterActor::Portal::SessionContext& context,
                  Counter::Ready::Reader ready) -> Co<void> { co_return; });
  EXPECT_NE(failureOf(kj::mv(promise), waitScope), "");
  EXPECT_EQ(raw.methodId, 2);
  EXPECT_EQ(raw.openedKind, MethodKind::CONTEXT);
  EXPECT_EQ(raw.lastStart().as<Counter::SessionParams>().getLabel(), "demo");
}

}  // namespace
}  // namespace harrow::codegen_test
