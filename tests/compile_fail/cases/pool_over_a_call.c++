// A worker pool runs a context (the caller streams items, the callee one result each): a plain
// call cannot feed it.
// expect-error: a worker pool runs a context method
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

class CounterImpl : public CounterActor::Server {};

harrow::Co<void> use(harrow::Actor& root) {
  co_await harrow::openWorkerPool<CounterImpl>(root, 2, &CounterActor::Server::add,
                                               [&](auto&) -> harrow::Co<void> { co_return; });
}
