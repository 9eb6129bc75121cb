// Event: trio's Event, for one task to tell others that something happened.
//
//   harrow::Event ready;
//   nursery.startSoon([&]() -> Co<void> { co_await ready.wait(); ... });
//   ...
//   ready.set();  // every waiter, present and future, goes on
//
// An Event is set once and stays set (trio's has no clear() either: make a new one). wait() is a
// checkpoint like any co_await of a promise: a cancelled scope is noticed there, set or not.
// Single-threaded, like everything on a KJ event loop.

#pragma once

#include <kj/async.h>

namespace harrow {

class Event {
public:
  Event();
  KJ_DISALLOW_COPY(Event);

  // Wakes every task waiting now and lets every later wait() through at once. Idempotent.
  void set();
  bool isSet() const { return setAlready; }

  // Resolves once set() has been called.
  [[nodiscard]] kj::Promise<void> wait() { return done.addBranch(); }

private:
  bool setAlready = false;
  kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  kj::ForkedPromise<void> done;
};

}  // namespace harrow
