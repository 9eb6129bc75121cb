// The root process of one fault-campaign run (fault_campaign.c++ drives it): a depth-3 tree with
// a call, a stream and a context in flight, then one fault, then a report of what every waiting
// caller got and when.
//
//   root ── c            a call in flight (Worker.waitFor, which never resolves)
//        ── s ─ s.0 ─ s.0.0   a stream in flight through the whole subtree (Worker.endless)
//        ── h ─ h.0 ─ h.0.0   a context in flight through the whole subtree (Worker.hold)
//
// Prints "ready name=pid ..." once all three are flowing. Then it reads one line from stdin:
// "fault <kind>" says the driver has just injected a fault (the clock starts there); "fault close"
// asks the root itself to close its channel to s under the stream. Every caller prints
//
//   caller <c|s|h> <error kind> <ms after the fault>
//
// as its call ends (with an error: none of them can end otherwise). One second after the fault
// (or once all three have ended) the root leaves the nursery, which cancels and reaps what is
// left; the nursery's own error is printed as "nursery <kind>", then "done".

#include <harrow/harrow.h>
#include "tests/spawn/supervision/worker.capnp.harrow.h"
#include "tests/spawn/supervision/worker.h"

#include <kj/debug.h>

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <string>

using harrow::Co;
using harrow::ErrorKind;

namespace {

std::string kindOf(const kj::Exception& e) {
  auto kind = harrow::errorKind(e);
  if (kind == ErrorKind::NONE) return "untyped(" + std::string(e.getDescription().cStr()) + ")";
  return harrow::errorKindName(kind).cStr();
}

void say(const std::string& line) {
  printf("%s\n", line.c_str());
  fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  harrow::Implementations implementations;
  sup::registerWorker(implementations);

  return harrow::main(argc, argv, implementations, [&](harrow::Actor& root) -> Co<void> {
    kj::Maybe<kj::TimePoint> faultAt;
    auto sinceFault = [&]() -> long {
      KJ_IF_MAYBE(at, faultAt) return (root.timer().now() - *at) / kj::MILLISECONDS;
      return 0;  // it ended before we heard of the fault: at once
    };
    harrow::Event allUp, allEnded, faultHeard;
    int up = 0, ended = 0;
    std::string pids;
    auto arrived = [&](const char* name, capnp::List<int32_t>::Reader tree) {
      for (size_t i = 0; i < tree.size(); ++i) {
        std::string actor = name;
        for (size_t d = 0; d < i; ++d) actor += ".0";
        pids += " " + actor + "=" + std::to_string(tree[i]);
      }
      if (++up == 3) allUp.set();
    };
    // Runs one caller's call and reports how it ended. A cancellation (the root tearing the tree
    // down once the window is over) is reported too, then goes on up as it must.
    auto caller = [&](const char* name, auto body) -> Co<void> {
      kj::Maybe<kj::Exception> error;
      try {
        co_await body();
      } catch (...) {
        error = harrow::currentException();
      }
      KJ_IF_MAYBE(e, error) {
        say(std::string("caller ") + name + " " + kindOf(*e) + " " + std::to_string(sinceFault()));
      } else {
        say(std::string("caller ") + name + " returned");
      }
      if (++ended == 3) allEnded.set();
      KJ_IF_MAYBE(e, error) {
        if (harrow::isCancelled(*e)) kj::throwFatalException(kj::mv(*e));
      }
    };

    auto failure = co_await harrow::errorOf([&]() {
      return harrow::openActorNursery(root, [&](harrow::ActorNursery& nursery) -> Co<void> {
        auto c = co_await nursery.startActor<WorkerActor>("c", "worker");
        auto s = co_await nursery.startActor<WorkerActor>("s", "worker");
        auto h = co_await nursery.startActor<WorkerActor>("h", "worker");
        co_await harrow::openNursery([&](harrow::TaskNursery& calls) -> Co<void> {
          calls.startSoon([&]() {
            return caller("c", [&]() -> Co<void> {
              auto pid = (co_await c.info())->getPid();
              pids += " c=" + std::to_string(pid);
              if (++up == 3) allUp.set();
              co_await c.waitFor("never-logged");
            });
          });
          calls.startSoon([&]() {
            return caller("s", [&]() {
              return s.endless(2, 1, [&](WorkerActor::Portal::EndlessStream& ticks) -> Co<void> {
                bool first = true;
                while (auto tick = co_await ticks.receive()) {
                  if (first) arrived("s", tick->getPids());
                  first = false;
                }
              });
            });
          });
          calls.startSoon([&]() {
            return caller("h", [&]() {
              return h.hold(2, 1, [&](auto&, WorkerActor::Schema::Grown::Reader grown) -> Co<void> {
                arrived("h", grown.getPids());
                co_return;
              });
            });
          });
          co_await allUp.wait();
          say("ready" + pids);

          // The driver's word that the fault is in.
          KJ_SYSCALL(fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK));
          kj::UnixEventPort::FdObserver input(root.eventPort(), STDIN_FILENO,
                                              kj::UnixEventPort::FdObserver::OBSERVE_READ);
          std::string line;
          for (;;) {
            char buffer[64];
            ssize_t n = read(STDIN_FILENO, buffer, sizeof(buffer));
            if (n > 0) {
              line.append(buffer, n);
              if (line.find('\n') != std::string::npos) break;
            } else if (n == 0) {
              break;
            } else if (errno == EAGAIN) {
              co_await input.whenBecomesReadable();
            } else if (errno != EINTR) {
              KJ_FAIL_SYSCALL("read(stdin)", errno);
            }
          }
          faultAt = root.timer().now();
          if (line.rfind("fault close", 0) == 0) {
            auto* peer = dynamic_cast<harrow::Peer*>(&s.raw());
            KJ_ASSERT(peer != nullptr);
            co_await peer->channel().shutdownWrite();
          }
          co_await harrow::moveOnAfter(root.timer(), 1 * kj::SECONDS,
                                       [&]() { return allEnded.wait(); });
          calls.cancel();
        });
      }, {2 * kj::SECONDS});
    });
    KJ_IF_MAYBE(e, failure) {
      say("nursery " + kindOf(*e));
    } else {
      say("nursery ok");
    }
    say("done");
  });
}
