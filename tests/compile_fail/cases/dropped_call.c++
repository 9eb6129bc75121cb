// A call that is not awaited would be started and cancelled at once: Co is [[nodiscard]].
// expect-error: ignoring returned value of type .harrow::Co<.*nodiscard
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

harrow::Co<void> use(CounterActor::Portal& counter) {
  counter.add(5);
  co_return;
}
