// The control: a pool over a context method, its items given as values (a one-field item) or
// filled, its results in order, taken as values, or as they come.
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

#include <vector>

class CounterImpl : public CounterActor::Server {};  // abstract here: only its type matters

harrow::Co<void> use(harrow::Actor& root) {
  std::vector<int64_t> deltas = {1, 2, 3};
  co_await harrow::openWorkerPool<CounterImpl>(root, 2, &CounterActor::Server::session,
      [&](harrow::WorkerPool<CounterActor::Server::SessionCall>& pool) -> harrow::Co<void> {
    kj::Array<harrow::Received<Counter::Total>> totals = co_await pool.map(deltas);
    kj::Array<int64_t> values = co_await pool.map(deltas,
        [](Counter::Delta::Builder delta, int64_t n) { delta.setBy(n); },
        [](Counter::Total::Reader total) { return total.getValue(); });
    co_await pool.mapUnordered(deltas,
        [](Counter::Delta::Builder delta, int64_t n) { delta.setBy(n); },
        [](size_t, Counter::Total::Reader) {}, [](size_t, kj::Exception&&) {});
    (void)totals;
    (void)values;
  }, {.inFlight = 8});
}
