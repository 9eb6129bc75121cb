// The root of the cluster tests' trees (run in host a's namespace): one scenario per run.
//
//   cluster_program --scenario=tree  --chain=b,c   a call, a stream and a context down a chain
//                                                   of Hops on nodes b and c; prints their places
//   cluster_program --scenario=fail  --chain=b,c   the last Hop fails; prints the error's origin
//                                                   and relay path
//   cluster_program --scenario=hold  --chain=b,c   holds a context open; prints "ready"; SIGINT
//   cluster_program --scenario=ticks --chain=b,c   streams until the stream fails; prints the
//                                                   error's kind
//   cluster_program --scenario=find  --chain=b,c   holds the chain open; finds its last Hop by
//                                                   name, which finds the first; prints both
//                                                   places, then "ready"; SIGINT
// Plus harrow's flags (--harrow-nodes=..., --harrow-cookie=...). A chain's names that
// --harrow-hosts lists are reached through ssh, the others through harrow-nodes.

#include "tests/cluster/hop.h"
#include "tests/cluster/hop.capnp.harrow.h"

#include <harrow/harrow.h>

#include <stdio.h>
#include <stdlib.h>

namespace {

using harrow::Co;

void say(kj::StringPtr line) {
  printf("%s\n", line.cStr());
  fflush(stdout);
}

kj::String relayPathOf(const kj::Exception& e) {
  kj::Vector<kj::String> names;
  KJ_IF_MAYBE(info, harrow::remoteErrorInfo(e)) {
    for (auto& hop : info->relayPath) names.add(kj::heapString(hop.name));
    return kj::str("origin=", info->origin.name, " relay=", kj::strArray(names, ","));
  }
  return kj::str("origin=? relay=?");
}

// The first error of its kind inside `e` (a MultiError's causes included).
kj::String kindsOf(const kj::Exception& e) {
  kj::Vector<kj::String> kinds;
  for (auto& each : harrow::failuresIn(e)) {
    kinds.add(kj::str(harrow::errorKindName(harrow::errorKind(each))));
  }
  return kj::strArray(kinds, ",");
}

}  // namespace

int main(int argc, char** argv) {
  kj::StringPtr scenario = "tree";
  kj::StringPtr chain = "b,c";
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (arg.startsWith("--scenario=")) scenario = arg.slice(11);
    if (arg.startsWith("--chain=")) chain = arg.slice(8);
  }
  harrow::Implementations impls;
  hop::registerHop(impls);
  return harrow::main(argc, argv, impls, [&](harrow::Actor& root) -> Co<void> {
    auto next = kj::str(chain);
    kj::String first;
    kj::String rest;
    KJ_IF_MAYBE(comma, next.findFirst(',')) {
      first = kj::heapString(next.begin(), *comma);
      rest = kj::heapString(next.slice(*comma + 1));
    } else {
      first = kj::mv(next);
    }
    co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& nursery) -> Co<void> {
      harrow::SpawnOptions options;
      // A host of --harrow-hosts runs it through ssh; otherwise a node of --harrow-nodes.
      const char* hosts = getenv("HARROW_HOSTS");
      if (harrow::namedEntry(hosts != nullptr ? hosts : "", first) != nullptr) {
        options.host = first;
      } else {
        options.node = first;
      }
      auto child = co_await nursery.startActor<HopActor>(kj::str("hop.", first), "hop", options);
      if (scenario == "tree") {
        auto where = co_await child.where(rest);
        say(kj::str("where ", hop::place(root.identity().name), ";", where->getPlaces()));
        uint32_t count = 0;
        co_await child.ticks(rest, [&](HopActor::Portal::TicksStream& ticks) -> Co<void> {
          while (auto tick = co_await ticks.receive()) {
            if (++count == 10) {
              say(kj::str("ticks ", count, " ", tick->getPlaces()));
              break;  // leaving the body cancels the stream, down the chain
            }
          }
        });
        co_await child.hold(rest, [&](HopActor::Portal::HoldContext& context,
                                      HopActor::Schema::Held::Reader held) -> Co<void> {
          say(kj::str("held ", held.getPlaces()));
          context.cancel();
          co_return;
        });
        say("done");
      } else if (scenario == "fail") {
        auto failure = co_await harrow::errorOf([&]() -> Co<void> { co_await child.fail(rest); });
        KJ_IF_MAYBE(e, failure) {
          say(kj::str("error ", relayPathOf(*e), " kind=", kindsOf(*e)));
          auto text = kj::str(e->getDescription());
          KJ_IF_MAYBE(newline, text.findFirst('\n')) text = kj::heapString(text.begin(), *newline);
          say(kj::str("text ", text));
        } else {
          say("no error");
        }
      } else if (scenario == "hold") {
        co_await child.hold(rest, [&](HopActor::Portal::HoldContext&,
                                      HopActor::Schema::Held::Reader held) -> Co<void> {
          say(kj::str("ready ", held.getPlaces()));
          co_await kj::Promise<void>(kj::NEVER_DONE);
        });
      } else if (scenario == "find") {
        co_await child.hold(
            rest, [&](HopActor::Portal::HoldContext&, HopActor::Schema::Held::Reader) -> Co<void> {
              // The chain's Hops are all up: the last one by name from here, then the first one by
              // name from the last (each on another host).
              auto last = kj::str("hop.", chain);
              for (char& c : last) c = c == ',' ? '.' : c;
              auto leaf = co_await harrow::waitForActor<HopActor>(last);
              auto where = co_await leaf.where("");
              say(kj::str("root found ", where->getPlaces()));
              auto found = co_await leaf.find(kj::str("hop.", first));
              say(kj::str("leaf found ", found->getPlaces()));
              say("ready");
              co_await kj::Promise<void>(kj::NEVER_DONE);
            });
      } else if (scenario == "ticks") {
        auto failure = co_await harrow::errorOf([&]() -> Co<void> {
          bool first = true;
          co_await child.ticks(rest, [&](HopActor::Portal::TicksStream& ticks) -> Co<void> {
            while (auto tick = co_await ticks.receive()) {
              if (first) say(kj::str("streaming ", tick->getPlaces()));
              first = false;
            }
          });
        });
        KJ_IF_MAYBE(e, failure) {
          say(kj::str("stream error kind=", kindsOf(*e)));
          kj::throwFatalException(kj::mv(*e));
        }
      }
    });
  });
}
