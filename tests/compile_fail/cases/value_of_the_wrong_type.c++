// A one-field item takes a value of its field's type only: Tick.value is an Int64, not Text.
// expect-error: no matching function for call to .*yield
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

class Impl final : public CounterActor::Server {
  harrow::Co<void> add(AddCall call) override { co_return; }
  harrow::Co<void> count(CountCall call) override { co_await call.yield("seven"); }
  harrow::Co<void> session(SessionCall call) override { co_return; }
};
