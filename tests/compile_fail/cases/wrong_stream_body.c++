// A stream's block must take the stream: a block for something else fails at this line, naming
// what a stream body is.
// expect-error: requires  StreamBody<Body, harrow::MsgStream<void, Counter::Tick> >
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

harrow::Co<void> use(CounterActor::Portal& counter) {
  co_await counter.count(3, [](int ticks) -> harrow::Co<void> { co_return; });
}
