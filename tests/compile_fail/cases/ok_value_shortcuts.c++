// One-field items and started values take the value itself (generated harrow::OneField).
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

class Impl final : public CounterActor::Server {
  harrow::Co<void> add(AddCall call) override { co_return; }
  harrow::Co<void> count(CountCall call) override {
    co_await call.yield(int64_t{1});
    co_await call.yield(2);
  }
  harrow::Co<void> session(SessionCall call) override {
    co_await call.started(0);
    co_await call.openStream([&](auto& stream) -> harrow::Co<void> { co_await stream.send(3); });
  }
};
