// A Kv actor in a child process, called from the root: a program that uses harrow the way any
// project outside harrow's tree does — <harrow/harrow.h> and the bindings capnpc-harrow generated
// from kv.capnp.
//
// The program is its own child: harrow::main re-executes it to serve the "kv" implementation.

#include "kv.capnp.harrow.h"

#include <harrow/harrow.h>

#include <map>
#include <stdio.h>
#include <string>
#include <unistd.h>

namespace {

using harrow::Co;
using Schema = KvActor::Schema;

void say(kj::StringPtr who, kj::StringPtr what) {
  printf("[%s %d] %s\n", who.cStr(), getpid(), what.cStr());
  fflush(stdout);
}

// Runs in the child process.
class KvImpl final : public KvActor::Server {
public:
  KvImpl() { say("kv", "serving"); }

  Co<void> put(PutCall call) override {
    auto [entry, inserted] = entries.insert_or_assign(std::string(call.params().getKey().cStr()),
                                                      std::string(call.params().getValue().cStr()));
    call.results().setReplaced(!inserted);
    co_return;
  }

  Co<void> get(GetCall call) override {
    auto entry = entries.find(std::string(call.params().getKey().cStr()));
    if (entry != entries.end()) {
      call.results().setFound(true);
      call.results().setValue(entry->second);
    }
    co_return;
  }

  Co<void> remove(RemoveCall call) override {
    auto entry = entries.find(std::string(call.params().getKey().cStr()));
    if (entry == entries.end()) {
      // Raised here; the caller gets a RemoteActorError whose trace starts at this line.
      KJ_FAIL_REQUIRE("no such key", call.params().getKey());
    }
    entries.erase(entry);
    co_return;
  }

  Co<void> scan(ScanCall call) override {
    std::string prefix = call.params().getPrefix().cStr();
    // std::map iterators survive inserts, so a put arriving while this stream waits for credit
    // does not invalidate the walk.
    for (auto entry = entries.lower_bound(prefix);
         entry != entries.end() && entry->first.compare(0, prefix.size(), prefix) == 0; ++entry) {
      co_await call.yield([&](Schema::Entry::Builder item) {
        item.setKey(entry->first);
        item.setValue(entry->second);
      });
    }
  }

private:
  std::map<std::string, std::string> entries;
};

// Runs in the root process.
Co<void> run(harrow::Actor& root) {
  co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> Co<void> {
    KvActor::Portal kv = co_await an.startActor<KvActor>("kv-1", "kv");
    say("root", "spawned actor kv-1");

    for (auto [key, value] : {std::pair{"fruit/apple", "red"}, {"fruit/banana", "yellow"},
                              {"veg/leek", "green"}, {"fruit/apple", "green"}}) {
      auto put = co_await kv.put(key, value);
      say("root", kj::str("put ", key, "=", value, put->getReplaced() ? " (replaced)" : ""));
    }

    auto got = co_await kv.get("fruit/apple");
    say("root", kj::str("get fruit/apple -> ", got->getFound() ? got->getValue() : "(none)"));
    auto missing = co_await kv.get("fruit/cherry");
    say("root", kj::str("get fruit/cherry -> ", missing->getFound() ? "found" : "(none)"));

    // A handler's error comes back whole: its message, where it was raised, and its trace.
    KJ_IF_MAYBE(e, co_await harrow::errorOf([&]() { return kv.remove("fruit/cherry"); })) {
      say("root", kj::str("remove fruit/cherry failed: ", e->getDescription()));
    }

    co_await kv.scan("fruit/", [&](KvActor::Portal::ScanStream& entries) -> Co<void> {
      while (auto entry = co_await entries.receive()) {
        say("root", kj::str("scan fruit/: ", entry->getKey(), "=", entry->getValue()));
      }
    });
  });
  say("root", "nursery closed: kv-1 cancelled and reaped");
}

}  // namespace

int main(int argc, char** argv) {
  harrow::Implementations implementations;
  implementations.add<KvImpl>("kv");
  return harrow::main(argc, argv, implementations, run);
}
