// The control: a received stream's subscribers, each with its own options, compile.
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

harrow::Co<void> use(CounterActor::Portal& counter) {
  co_await counter.count(3, [](CounterActor::Portal::CountStream& ticks) -> harrow::Co<void> {
    harrow::Subscriber<CounterActor::Schema::Tick> all = ticks.subscribe();
    auto recent = ticks.subscribe({.capacity = 4, .onLag = harrow::OnLag::SKIP});
    auto every = all.subscribe({.onLag = harrow::OnLag::BACKPRESSURE});
    while (auto tick = co_await all.receive()) (void)tick->getValue();
    (void)recent.missed();
    (void)every.buffered();
  });
}
