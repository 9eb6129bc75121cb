// The control: an implementation started by its type gives a portal of its own interface.
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

class CounterImpl : public CounterActor::Server {};  // abstract here: only its type matters

harrow::Co<void> use(harrow::ActorNursery& nursery) {
  CounterActor::Portal counter = co_await nursery.startActor<CounterImpl>("c");
  (void)counter;
}
