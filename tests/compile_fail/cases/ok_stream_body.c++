// The control: a stream's block that takes the stream compiles, generic or not.
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

harrow::Co<void> use(CounterActor::Portal& counter) {
  co_await counter.count(3, [](CounterActor::Portal::CountStream& ticks) -> harrow::Co<void> {
    while (auto tick = co_await ticks.receive()) (void)tick->getValue();
  });
  co_await counter.count(3, [](auto& ticks) -> harrow::Co<void> {
    while (auto tick = co_await ticks.receive()) (void)tick->getValue();
  });
}
