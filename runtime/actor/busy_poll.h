// Busy polling: an event loop that keeps polling for I/O for a while after it runs out of work,
// before it sleeps in epoll_wait().
//
// A message between two actors on different CPUs costs a wakeup, and waking a process whose CPU
// has gone idle is slow on many machines (tens of microseconds on a VM, where the idle vCPU is
// descheduled by the hypervisor). An actor that expects the next message soon (a call's reply,
// the next request of a chatty peer) gets it faster by not sleeping: bench/README.md ("Round
// two") measures the unpinned typed call both ways. The price is CPU: each actor spins for up to
// the given time after its last received message, on every idle period.
//
// Off by default. `--harrow-busy-poll=MICROSECONDS` (harrow::main) or HARROW_BUSY_POLL_US sets it
// for a whole tree: harrow::main's root and every child use waitPolling() for their event loop.

#pragma once

#include <kj/async-io.h>
#include <kj/function.h>
#include <kj/time.h>

namespace harrow {

// HARROW_BUSY_POLL_US: 0 (unset) to 100000 microseconds. Throws for anything else.
kj::Duration busyPollFromEnvironment();

namespace _ {  // internal
// Runs the loop until `ready()` (which polls the loop) says done; sleeps in the event port only
// after `spin` has passed without a read on this thread.
void pollUntil(kj::Function<bool()> ready, kj::UnixEventPort& port, kj::Duration spin);
}  // namespace _

// promise.wait(io.waitScope), busy polling for `spin` (0: the plain wait).
template <typename T>
T waitPolling(kj::Promise<T>&& promise, kj::AsyncIoContext& io, kj::Duration spin) {
  if (spin > 0 * kj::NANOSECONDS) {
    _::pollUntil([&]() { return promise.poll(io.waitScope); }, io.unixEventPort, spin);
  }
  return promise.wait(io.waitScope);
}

}  // namespace harrow
