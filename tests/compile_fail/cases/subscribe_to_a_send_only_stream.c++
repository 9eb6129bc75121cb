// A stream direction that receives nothing has nothing to broadcast: subscribe() is not there.
// expect-error: (constraints not satisfied|no matching function).*subscribe|subscribe.*(constraints not satisfied|no matching)
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

void use(harrow::MsgStream<CounterActor::Schema::Tick, void>& stream) {
  auto subscriber = stream.subscribe();
}
