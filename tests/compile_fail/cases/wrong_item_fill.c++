// A fill for another struct than the stream's item fails at the caller's line, naming the concept.
// expect-error: FillsStruct
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

class Impl final : public CounterActor::Server {
  harrow::Co<void> add(AddCall call) override { co_return; }
  harrow::Co<void> count(CountCall call) override {
    co_await call.yield([](Counter::Delta::Builder d) { d.setBy(1); });  // Tick is the item
  }
  harrow::Co<void> session(SessionCall call) override { co_return; }
};
