#include <harrow/actor/busy_poll.h>
#include <harrow/ipc/fd_stream.h>

#include <kj/debug.h>

#include <sched.h>
#include <stdlib.h>

namespace harrow {

kj::Duration busyPollFromEnvironment() {
  const char* text = getenv("HARROW_BUSY_POLL_US");
  if (text == nullptr || *text == '\0') return 0 * kj::NANOSECONDS;
  char* end = nullptr;
  unsigned long long micros = strtoull(text, &end, 10);
  if (*end != '\0' || *text == '-' || micros > 100000) {
    kj::throwFatalException(KJ_EXCEPTION(FAILED,
        kj::str("HARROW_BUSY_POLL_US (--harrow-busy-poll) must be microseconds, 0 to 100000, not '",
                text, "'")));
  }
  return micros * kj::MICROSECONDS;
}

void _::pollUntil(kj::Function<bool()> ready, kj::UnixEventPort& port, kj::Duration spin) {
  const kj::MonotonicClock& clock = kj::systemPreciseMonotonicClock();
  for (;;) {
    // Each poll runs every queued event, then checks for I/O without sleeping.
    if (ready()) return;
    uint64_t reads = _::fdReadsOnThisThread();
    kj::TimePoint idleSince = clock.now();
    while (clock.now() - idleSince < spin) {
      // Whoever else is runnable on this CPU goes first: often the very peer we wait for (two
      // actors on one CPU), which a spinning loop would otherwise hold up for its whole slice.
      sched_yield();
      if (ready()) return;
      uint64_t now = _::fdReadsOnThisThread();
      if (now != reads) {  // still receiving: keep spinning
        reads = now;
        idleSince = clock.now();
      }
    }
    // Nothing read for `spin`: sleep until an event (I/O, a timer, a signal, another thread's
    // wake) is queued, then run it above. The loop has nothing runnable: ready() just ran it dry.
    if (port.wait()) {
      // Another thread woke us (kj::Executor). KJ's own loop would now take that thread's
      // events; it does so only when its port reports the wake, which this wait consumed: wake
      // the port again, so that the next poll hands them over.
      port.wake();
    }
  }
}

}  // namespace harrow
