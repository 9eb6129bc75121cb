#include "tests/cluster/hop.h"

#include <harrow/discovery/discovery.h>
#include <harrow/spawn/actor_nursery.h>
#include <harrow/spawn/ssh.h>
#include "tests/cluster/hop.capnp.harrow.h"

#include <kj/debug.h>

#include <stdlib.h>
#include <unistd.h>

namespace hop {

kj::String place(kj::StringPtr name) {
  // /proc/self/ns/net reads "net:[INODE]".
  char link[64] = {};
  ssize_t n = readlink("/proc/self/ns/net", link, sizeof(link) - 1);
  kj::StringPtr text = n > 0 ? link : "net:[?]";
  kj::String inode = kj::heapString(text.slice(5).begin(), text.size() - 6);
  return kj::str(name, " ns=", inode, " pid=", getpid());
}

namespace {

using harrow::Co;

// "b,c" -> "b" and "c"; "b" -> "b" and "".
struct Next {
  kj::String node;
  kj::String rest;
};

Next split(kj::StringPtr nodes) {
  KJ_IF_MAYBE(comma, nodes.findFirst(',')) {
    return {kj::heapString(nodes.begin(), *comma), kj::heapString(nodes.slice(*comma + 1))};
  }
  return {kj::heapString(nodes), kj::str()};
}

class HopImpl final : public HopActor::Server {
public:
  HopImpl() : name(kj::str(harrow::currentActor().identity().name)) {}

  Co<void> where(WhereCall call) override {
    auto nodes = kj::heapString(call.params().getNodes());
    auto places = place(name);
    if (nodes.size() > 0) {
      co_await withChild(nodes, [&](HopActor::Portal& child, kj::StringPtr rest) -> Co<void> {
        auto below = co_await child.where(rest);
        places = kj::str(places, ";", below->getPlaces());
      });
    }
    call.results().setPlaces(places);
  }

  Co<void> fail(FailCall call) override {
    auto nodes = kj::heapString(call.params().getNodes());
    if (nodes.size() == 0) {
      co_await kj::Promise<void>(kj::READY_NOW);
      kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                            kj::str("hop.Failed: leaf ", name, " failed")));
    }
    co_await withChild(nodes, [&](HopActor::Portal& child, kj::StringPtr rest) -> Co<void> {
      co_await child.fail(rest);
    });
  }

  Co<void> ticks(TicksCall call) override {
    auto nodes = kj::heapString(call.params().getNodes());
    if (nodes.size() == 0) {
      auto here = place(name);
      for (uint32_t seq = 0;; ++seq) {
        co_await call.yield([&](HopActor::Schema::Tick::Builder tick) {
          tick.setSeq(seq);
          tick.setPlaces(here);
        });
        co_await harrow::currentActor().timer().afterDelay(20 * kj::MILLISECONDS);
      }
    }
    co_await withChild(nodes, [&](HopActor::Portal& child, kj::StringPtr rest) -> Co<void> {
      co_await child.ticks(rest, [&](HopActor::Portal::TicksStream& ticks) -> Co<void> {
        auto here = place(name);
        while (auto tick = co_await ticks.receive()) {
          co_await call.yield([&](HopActor::Schema::Tick::Builder out) {
            out.setSeq(tick->getSeq());
            out.setPlaces(kj::str(here, ";", tick->getPlaces()));
          });
        }
      });
    });
  }

  Co<void> hold(HoldCall call) override {
    auto nodes = kj::heapString(call.params().getNodes());
    auto places = place(name);
    if (nodes.size() == 0) {
      co_await call.started([&](HopActor::Schema::Held::Builder held) { held.setPlaces(places); });
      co_await kj::Promise<void>(kj::NEVER_DONE);
    }
    co_await withChild(nodes, [&](HopActor::Portal& child, kj::StringPtr rest) -> Co<void> {
      co_await child.hold(rest, [&](HopActor::Portal::HoldContext&,
                                    HopActor::Schema::Held::Reader below) -> Co<void> {
        auto all = kj::str(places, ";", below.getPlaces());
        co_await call.started([&](HopActor::Schema::Held::Builder held) { held.setPlaces(all); });
        co_await kj::Promise<void>(kj::NEVER_DONE);
      });
    });
  }

  Co<void> find(FindCall call) override {
    auto found = co_await harrow::waitForActor<HopActor>(call.params().getName());
    auto where = co_await found.where("");
    call.results().setPlaces(where->getPlaces());
  }

private:
  kj::String name;

  // Starts a Hop named "<name>.<node>" on the first node of `nodes` and runs `body` with it and
  // the remaining nodes.
  template <typename Body>
  Co<void> withChild(kj::StringPtr nodes, Body body) {
    auto next = split(nodes);
    co_await harrow::openActorNursery([&](harrow::ActorNursery& nursery) -> Co<void> {
      harrow::SpawnOptions options;
      // A host of --harrow-hosts runs it through ssh; otherwise a node of --harrow-nodes.
      const char* hosts = getenv("HARROW_HOSTS");
      if (harrow::namedEntry(hosts != nullptr ? hosts : "", next.node) != nullptr) {
        options.host = next.node;
      } else {
        options.node = next.node;
      }
      auto child = co_await nursery.startActor<HopImpl>(kj::str(name, ".", next.node), options);
      co_await body(child, next.rest);
    });
  }
};

}  // namespace

void registerHop(harrow::Implementations& implementations) {
  implementations.add<HopImpl>("hop");
}

}  // namespace hop
