#include "tests/spawn/supervision/worker.h"

#include <harrow/spawn/actor_nursery.h>
#include "tests/spawn/supervision/worker.capnp.harrow.h"
#include "tests/event_log.h"

#include <kj/debug.h>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace sup {

[[noreturn]] void raise(kj::StringPtr what) { kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str("sup.Failed: ", what))); }
const uint32_t FAIL_LINE = __LINE__ - 1;
const char* const FAIL_FILE = __FILE__;

void logEvent(kj::StringPtr actor, kj::StringPtr event) {
  const char* path = getenv(LOG_ENV);
  if (path == nullptr) return;
  auto line = kj::str(actor, " ", getpid(), " ", event, "\n");
  // O_APPEND: one write per line, so lines of concurrent processes do not mix.
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t ignored = write(fd, line.begin(), line.size());
  (void)ignored;
  close(fd);
}

std::vector<LogEntry> readLog(const std::string& path) {
  std::vector<LogEntry> entries;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    LogEntry entry;
    fields >> entry.actor >> entry.pid;
    std::getline(fields >> std::ws, entry.event);
    entries.push_back(entry);
  }
  return entries;
}

namespace {

using harrow::Co;
using Tick = WorkerActor::Schema::Tick;
using Grown = WorkerActor::Schema::Grown;

kj::String how(const kj::Exception& e) {
  if (harrow::isCancelled(e)) return kj::str("cancelled");
  return kj::str("failed: ", e.getDescription());
}

void setPids(capnp::List<int32_t>::Builder list, const std::vector<int32_t>& pids) {
  for (size_t i = 0; i < pids.size(); ++i) list.set(i, pids[i]);
}

class WorkerImpl final : public WorkerActor::Server {
public:
  WorkerImpl() {
    harrow::Actor& actor = harrow::currentActor();
    name = kj::str(actor.identity().name);
    note("started");
    watchCancel = actor.whenCancelled().then([this, &actor]() {
      note(actor.cancelRequester() != nullptr ? "cancel-actor received"
                                              : "cancelled without cancel-actor");
    }).eagerlyEvaluate(nullptr);
    actor.atExit([this]() { note("exit"); });
  }

  Co<void> info(InfoCall call) override {
    call.results().setPid(getpid());
    co_return;
  }

  Co<void> fail(FailCall call) override {
    co_await kj::Promise<void>(kj::READY_NOW);
    raise(call.params().getText());
  }

  Co<void> grow(GrowCall call) override {
    uint32_t depth = call.params().getDepth();
    uint32_t width = call.params().getWidth();
    bool failLeaves = call.params().getFailLeaves();
    if (depth == 0 || width == 0) {
      if (failLeaves) raise(kj::str("leaf ", name, " failed"));
      co_return;
    }
    // Every child's answer is awaited (a failing child does not cancel its siblings before their
    // own errors arrive); the errors are raised together.
    kj::Vector<kj::Exception> errors;
    co_await harrow::openActorNursery([&](harrow::ActorNursery& nursery) -> Co<void> {
      auto children = co_await startChildren(nursery, width);
      co_await harrow::openNursery([&](harrow::TaskNursery& calls) -> Co<void> {
        for (auto& each : children) {
          calls.startSoon([&, child = &each]() -> Co<void> {
            kj::Maybe<kj::Exception> error;
            try {
              co_await child->grow(depth - 1, width, failLeaves);
            } catch (...) {
              error = harrow::currentException();
            }
            KJ_IF_MAYBE(e, error) {
              if (harrow::isCancelled(*e)) kj::throwFatalException(kj::mv(*e));
              errors.add(kj::mv(*e));
            }
          });
        }
        co_return;
      });
    });
    if (errors.size() > 0) kj::throwFatalException(harrow::makeMultiError(errors.releaseAsArray()));
  }

  Co<void> endless(EndlessCall call) override {
    uint32_t depth = call.params().getDepth();
    uint32_t width = call.params().getWidth();
    std::vector<int32_t> pids{getpid()};
    try {
      if (depth == 0 || width == 0) {
        co_await tickForever(call, pids);
      } else {
        co_await harrow::openActorNursery([&](harrow::ActorNursery& nursery) -> Co<void> {
          auto children = co_await startChildren(nursery, width);
          uint32_t up = 0;
          auto allUp = kj::newPromiseAndFulfiller<void>();
          co_await harrow::openNursery([&](harrow::TaskNursery& streams) -> Co<void> {
            for (auto& each : children) {
              streams.startSoon([&, child = &each]() -> Co<void> {
                co_await child->endless(depth - 1, width,
                    [&](WorkerActor::Portal::EndlessStream& ticks) -> Co<void> {
                      bool first = true;
                      while (auto tick = co_await ticks.receive()) {
                        if (!first) continue;
                        first = false;
                        for (auto pid : tick->getPids()) pids.push_back(pid);
                        if (++up == width) allUp.fulfiller->fulfill();
                      }
                    });
              });
            }
            co_await kj::mv(allUp.promise);
            co_await tickForever(call, pids);
          });
        });
      }
    } catch (...) {
      note(kj::str("endless ended: ", how(harrow::currentException())));
      throw;
    }
  }

  Co<void> hold(HoldCall call) override {
    uint32_t depth = call.params().getDepth();
    uint32_t width = call.params().getWidth();
    std::vector<int32_t> pids{getpid()};
    try {
      if (depth == 0 || width == 0) {
        co_await call.started([&](Grown::Builder grown) { setPids(grown.initPids(1), pids); });
        co_await kj::Promise<void>(kj::NEVER_DONE);
      }
      // A generous grace of its own: what bounds it is 3/4 of this actor's (grace periods nest).
      harrow::ActorNurseryOptions options{30 * kj::SECONDS};
      co_await harrow::openActorNursery([&](harrow::ActorNursery& nursery) -> Co<void> {
        auto children = co_await startChildren(nursery, width);
        uint32_t up = 0;
        auto allUp = kj::newPromiseAndFulfiller<void>();
        co_await harrow::openNursery([&](harrow::TaskNursery& holds) -> Co<void> {
          for (auto& each : children) {
            holds.startSoon([&, child = &each]() -> Co<void> {
              co_await child->hold(depth - 1, width,
                  [&](WorkerActor::Portal::HoldContext&, Grown::Reader grown) -> Co<void> {
                    for (auto pid : grown.getPids()) pids.push_back(pid);
                    if (++up == width) allUp.fulfiller->fulfill();
                    co_return;
                  });
            });
          }
          co_await kj::mv(allUp.promise);
          co_await call.started([&](Grown::Builder grown) {
            setPids(grown.initPids(pids.size()), pids);
          });
          co_await kj::Promise<void>(kj::NEVER_DONE);
        });
      }, options);
    } catch (...) {
      note(kj::str("hold ended: ", how(harrow::currentException())));
      throw;
    }
  }

  Co<void> block(BlockCall call) override {
    co_await kj::Promise<void>(kj::READY_NOW);
    note("blocking");
    int fifo = open(kj::str(call.params().getFifo()).cStr(), O_WRONLY | O_CLOEXEC);
    KJ_SYSCALL(fifo);
    char byte = 'b';
    KJ_SYSCALL(write(fifo, &byte, 1));
    int fds[2];
    KJ_SYSCALL(pipe(fds));
    for (;;) {
      ssize_t n = read(fds[0], &byte, 1);  // nobody writes; fds[1] stays open: blocks for good
      (void)n;
    }
  }

  Co<void> waitFor(WaitForCall call) override {
    call.results().setEntry(co_await events.waitFor(call.params().getPrefix()));
  }

private:
  kj::String name;
  harrow::testing::EventLog events;
  kj::Promise<void> watchCancel = nullptr;

  void note(kj::StringPtr entry) {
    logEvent(name, entry);
    events.add(entry);
  }

  Co<kj::Vector<WorkerActor::Portal>> startChildren(harrow::ActorNursery& nursery,
                                                     uint32_t width) {
    kj::Vector<WorkerActor::Portal> children;
    for (uint32_t i = 0; i < width; ++i) {
      children.add(co_await nursery.startActor<WorkerActor>(kj::str(name, ".", i), "worker"));
    }
    co_return kj::mv(children);
  }

  Co<void> tickForever(EndlessCall& call, const std::vector<int32_t>& pids) {
    for (uint32_t seq = 0;; ++seq) {
      co_await call.yield([&](Tick::Builder tick) {
        tick.setSeq(seq);
        if (seq == 0) setPids(tick.initPids(pids.size()), pids);
      });
      // A pace, not a synchronisation: streams should not spin the CPU of a 2-core machine.
      co_await harrow::currentActor().timer().afterDelay(20 * kj::MILLISECONDS);
    }
  }
};

}  // namespace

void registerWorker(harrow::Implementations& implementations) {
  implementations.add<WorkerImpl>("worker");
}

}  // namespace sup
