// What an actor under test has done, in order, and a way to wait for an entry: the event the
// multi-process tests synchronise on instead of sleeping.

#pragma once

#include <harrow/co/co.h>

#include <kj/async.h>
#include <kj/string.h>
#include <kj/vector.h>

namespace harrow::testing {

class EventLog {
public:
  void add(kj::StringPtr entry) {
    log.add(kj::str(entry));
    auto waiting = kj::mv(watchers);
    for (auto& watcher : waiting) watcher->fulfill();
  }

  kj::ArrayPtr<const kj::String> entries() const { return log; }

  // The first entry starting with `prefix`, once there is one.
  Co<kj::String> waitFor(kj::StringPtr prefixParam) {
    auto prefix = kj::str(prefixParam);  // the caller's string may not outlive a suspension
    for (;;) {
      for (auto& entry : log) {
        if (entry.startsWith(prefix)) co_return kj::str(entry);
      }
      auto paf = kj::newPromiseAndFulfiller<void>();
      watchers.add(kj::mv(paf.fulfiller));
      co_await kj::mv(paf.promise);
    }
  }

private:
  kj::Vector<kj::String> log;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> watchers;
};

}  // namespace harrow::testing
