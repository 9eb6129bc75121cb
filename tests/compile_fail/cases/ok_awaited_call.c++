// The control: the same call, awaited, compiles.
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

harrow::Co<void> use(CounterActor::Portal& counter) {
  auto total = co_await counter.add(5);
  (void)total;
}
