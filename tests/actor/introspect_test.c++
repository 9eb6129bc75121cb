// Introspection (runtime/actor/introspect.h), which every actor serves: its parent link, the
// schema of what it serves (type ids and nodes a SchemaLoader accepts) for a generated server and
// a hand-written one, over the trusted parent-child channel of two actors in this process.

#include <harrow/actor/actor.h>
#include <harrow/actor/introspect.h>
#include <harrow/co/nursery.h>
#include "examples/counter/counter.capnp.harrow.h"

#include <capnp/schema-loader.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <unistd.h>

namespace harrow {
namespace {

using introspect::Introspect;

class CounterImpl final : public CounterActor::Server {
public:
  Co<void> add(AddCall call) override {
    call.results().setTotal(call.params().getN());
    co_return;
  }
  Co<void> count(CountCall) override { co_return; }
  Co<void> session(SessionCall call) override {
    co_await call.started([](auto ready) { ready.setStart(0); });
  }
};

// Without capnpc-harrow: no type information to give.
class HandWritten final : public ActorServer {
public:
  uint64_t interfaceId() const override { return 0x4242; }
  kj::StringPtr interfaceName() const override { return "HandWritten"; }
  kj::Maybe<MethodKind> methodKind(uint16_t id) const override {
    if (id == 0) return MethodKind::CALL;
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t) const override { return "ping"; }
  Co<void> dispatch(uint16_t, IncomingTask&) override { co_return; }
};

uint64_t idOf(capnp::Schema schema) { return schema.getProto().getId(); }

TEST(IntrospectTest, ParentLinkAndTheSchemaOfWhatTheActorServes) {
  auto io = kj::setupAsyncIo();
  Actor parent(io, ActorIdentity::random("parent"));
  Actor child(io, ActorIdentity::random("child"));
  child.addServer(kj::heap<CounterImpl>());
  child.addServer(kj::heap<HandWritten>());
  auto pipe = io.provider->newTwoWayPipe();
  auto childSide = handshakeWithParent(kj::heap<Channel>(kj::mv(pipe.ends[0])), child);
  auto parentSide = handshakeWithChild(kj::heap<Channel>(kj::mv(pipe.ends[1])), parent);
  kj::Own<Peer> toParent = childSide.wait(io.waitScope);
  kj::Own<Peer> toChild = parentSide.wait(io.waitScope);

  auto body = [&]() -> Co<void> {
    IntrospectActor::Portal portal(*toChild);

    auto received = co_await portal.info();
    auto info = received->getInfo();
    EXPECT_EQ(kj::StringPtr(info.getName()), "child");
    EXPECT_EQ(kj::StringPtr(info.getParentName()), "parent");
    EXPECT_TRUE(info.getParentUuid() == parent.identity().uuid.asPtr());
    EXPECT_EQ(info.getPid(), uint32_t(getpid()));
    EXPECT_GT(info.getResidentBytes(), 0u);
    EXPECT_EQ(info.getChannels(), 1u);
    EXPECT_EQ(info.getTasksInFlight(), 0u);  // introspection's own task is left out

    // The parent is a root here: no parent of its own.
    auto rootInfo = co_await IntrospectActor::Portal(*toParent).info();
    EXPECT_EQ(rootInfo->getInfo().getParentName().size(), 0u);

    auto schema = co_await portal.schema();
    capnp::SchemaLoader loader;
    for (auto node : schema->getNodes()) loader.load(node);
    auto interfaces = schema->getInterfaces();
    EXPECT_EQ(interfaces.size(), 2u);  // Introspect itself is not listed
    bool counterSeen = false, handWrittenSeen = false;
    for (auto interface : interfaces) {
      if (interface.getName() == "Counter") {
        counterSeen = true;
        EXPECT_EQ(interface.getId(), CounterActor::INTERFACE_ID);
        auto methods = interface.getMethods();
        EXPECT_EQ(methods.size(), 3u);
        if (methods.size() != 3) continue;
        EXPECT_EQ(kj::StringPtr(methods[0].getName()), "add");
        EXPECT_EQ(methods[0].getKind(), Introspect::Kind::CALL);
        EXPECT_EQ(methods[0].getParamsType(), idOf(capnp::Schema::from<Counter::AddParams>()));
        EXPECT_EQ(methods[0].getItemType(), 0u);
        EXPECT_EQ(methods[1].getKind(), Introspect::Kind::STREAM);
        EXPECT_EQ(methods[1].getItemType(), idOf(capnp::Schema::from<Counter::Tick>()));
        EXPECT_EQ(methods[2].getKind(), Introspect::Kind::CONTEXT);
        EXPECT_EQ(methods[2].getStartedType(), idOf(capnp::Schema::from<Counter::Ready>()));
        EXPECT_EQ(methods[2].getCallerSendsType(), idOf(capnp::Schema::from<Counter::Delta>()));
        EXPECT_EQ(methods[2].getCalleeSendsType(), idOf(capnp::Schema::from<Counter::Total>()));
        // Every type id names a node that was sent: the schema loads without stubs.
        for (auto method : methods) {
          for (uint64_t id : {method.getParamsType(), method.getResultsType(),
                              method.getItemType(), method.getStartedType(),
                              method.getCallerSendsType(), method.getCalleeSendsType()}) {
            if (id != 0) {
              EXPECT_TRUE(loader.tryGet(id) != nullptr) << kj::str(kj::hex(id)).cStr();
            }
          }
        }
        auto params = loader.get(methods[0].getParamsType()).asStruct();
        EXPECT_TRUE(params.findFieldByName("n") != nullptr);
      } else if (interface.getName() == "HandWritten") {
        handWrittenSeen = true;
        auto methods = interface.getMethods();
        EXPECT_EQ(methods.size(), 1u);
        if (methods.size() != 1) continue;
        EXPECT_EQ(kj::StringPtr(methods[0].getName()), "ping");
        EXPECT_EQ(methods[0].getParamsType(), 0u);  // no type information
      }
    }
    EXPECT_TRUE(counterSeen && handWrittenSeen);
  };

  // Both ends served while `body` runs; then the parent closes its write side.
  child.serve([&]() -> Co<void> {
    co_await openNursery([&](TaskNursery& n) -> Co<void> {
      n.startSoon([&]() { return toParent->serve(); });
      co_await parent.serve([&]() -> Co<void> {
        co_await openNursery([&](TaskNursery& p) -> Co<void> {
          p.startSoon([&]() -> Co<void> {
            try {
              co_await toChild->serve();
            } catch (const kj::Exception& e) {
              if (!isCancelled(e)) throw;
            }
          });
          co_await body();
          co_await toChild->channel().shutdownWrite();
          p.cancel();
        });
      });
    });
  }).wait(io.waitScope);
}

}  // namespace
}  // namespace harrow
