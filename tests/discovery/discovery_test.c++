// Discovery: the registry, finding actors by name, the channel server's robustness. Every test
// runs for each transport (TCP on loopback, Unix socket files, abstract Unix sockets): the
// registry, every actor's own listen address and every channel between them use that transport.
//
// This test binary is itself a harrow program: run with --harrow-child it is a Service actor
// (see main() at the bottom). The test's root actor hosts the registry (on an ephemeral or
// unique address, never the default port) and serves a Service too, so children can call it.
//
// Every test runs under failure guards (failAfter on the root's timer, and an alarm); after every
// test no process of ours may remain.

#include <harrow/spawn/actor_nursery.h>
#include <harrow/discovery/discovery.h>
#include <harrow/main.h>
#include <harrow/discovery/registry.h>
#include <harrow/engine/auth.h>
#include "tests/names.h"
#include "tests/root_test.h"
#include "tests/discovery/service_impl.h"

#include <gtest/gtest.h>
#include <capnp/any.h>
#include <capnp/serialize.h>
#include <harrow/wire.capnp.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

namespace harrow {
namespace {

using testing::ServiceImpl;
using testing::serviceImplementations;

// ---------------------------------------------------------------------------------------------
// Transports

std::string kindName(TransportKind kind) {
  switch (kind) {
    case TransportKind::TCP: return "Tcp";
    case TransportKind::UNIX: return "UnixFile";
    case TransportKind::UNIX_ABSTRACT: return "UnixAbstract";
  }
  return "?";
}

// A registry address of `kind` that no other test, and no other copy of this one, uses.
kj::String uniqueRegistryAddress(TransportKind kind) {
  switch (kind) {
    case TransportKind::TCP: return kj::str("tcp:127.0.0.1:0");
    case TransportKind::UNIX: return testing::uniqueSocketFileAddress("registry");
    case TransportKind::UNIX_ABSTRACT: return testing::uniqueAbstractAddress("registry");
  }
  KJ_UNREACHABLE;
}

Address::Kind addressKindOf(TransportKind kind) {
  switch (kind) {
    case TransportKind::TCP: return Address::Kind::TCP;
    case TransportKind::UNIX: return Address::Kind::UNIX;
    case TransportKind::UNIX_ABSTRACT: return Address::Kind::UNIX_ABSTRACT;
  }
  KJ_UNREACHABLE;
}

constexpr kj::Duration HANDSHAKE_TIMEOUT = 1 * kj::SECONDS;

DiscoveryOptions rootOptions(TransportKind kind, kj::StringPtr name, kj::StringPtr registry) {
  DiscoveryOptions options;
  options.isRoot = true;
  options.mayHostRegistry = true;
  options.registryRequired = true;
  options.registryAddress = kj::heapString(registry);
  options.childTransport = kind;
  options.bindAddresses.add(newBindAddress(kind, name));
  options.handshakeTimeout = HANDSHAKE_TIMEOUT;
  return options;
}

bool fileExists(kj::StringPtr path) {
  struct stat st;
  return lstat(path.cStr(), &st) == 0;
}

bool contains(const kj::Exception& e, kj::StringPtr what) {
  return std::string(e.getDescription().cStr()).find(what.cStr()) != std::string::npos;
}

std::string text(const kj::Exception& e) { return kj::str(e).cStr(); }

// ---------------------------------------------------------------------------------------------
// The fixture

class DiscoveryTest : public testing::RootTest<::testing::TestWithParam<TransportKind>> {
protected:
  DiscoveryTest()
      : RootTest("discovery-root", serviceImplementations(), {.watchdogSeconds = 120}) {}

  kj::String registryAddress = uniqueRegistryAddress(GetParam());

  void SetUp() override {
    RootTest::SetUp();
    harrow::setDiscovery(root, rootOptions(GetParam(), "discovery-root", registryAddress));
    root.addServer(kj::heap<ServiceImpl>());
  }

  void expectOk(kj::Maybe<kj::Exception> failure) {
    KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  }

  // Spawns a Service child. Once it has answered report(), it is registered (a child registers
  // before it serves its parent's first message).
  Co<ServiceActor::Portal> startService(ActorNursery& nursery, kj::StringPtr name,
                                        pid_t* pidOut = nullptr) {
    auto service = co_await nursery.startActor<ServiceActor>(name, "service");
    auto report = co_await service.report();
    pid_t pid = report->getPid();
    known.insert(pid);
    EXPECT_NE(pid, getpid());
    if (pidOut != nullptr) *pidOut = pid;
    co_return service;
  }

  // Makes sure every call sent to the registry on the root's channel before this one has reached
  // the registry (it serves a channel's messages in order, and starts each handler at once).
  Co<void> registryBarrier() { co_await queryActor(root, "no-such-actor"); }
};

// ---------------------------------------------------------------------------------------------

TEST_P(DiscoveryTest, RegisterFindQueryAndDeregister) {
  std::vector<uint8_t> uuid;
  kj::Maybe<Departure> departure;
  kj::Vector<kj::String> childAddresses;
  expectOk(runRoot([&]() -> Co<void> {
    EXPECT_TRUE(harrow::hostsRegistry(root));
    kj::StringPtr bound = KJ_ASSERT_NONNULL(harrow::registryAddress(root));
    EXPECT_EQ(Address::parse(bound).kind, addressKindOf(GetParam())) << bound.cStr();
    if (GetParam() == TransportKind::TCP) {
      EXPECT_NE(Address::parse(bound).port, 0) << "the real port is reported";
    }

    // The root registered itself.
    auto roots = co_await queryActor(root, "discovery-root");
    KJ_ASSERT(roots.size() == 1, roots.size());
    EXPECT_TRUE(roots[0].uuid.asPtr() == root.identity().uuid.asPtr());
    EXPECT_EQ(roots[0].pid, uint32_t(getpid()));

    co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
      co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
        pid_t pid = 0;
        co_await startService(nursery, "svc-a", &pid);

        // find: a typed portal on a channel of our own to the actor (not the spawn channel).
        auto found = co_await findActor<ServiceActor>(root, "svc-a");
        KJ_IF_MAYBE(svc, found) {
          auto reply = co_await svc->echo("hi");
          EXPECT_EQ(std::string(reply->getText().cStr()), "svc-a: hi");
          EXPECT_EQ((co_await svc->report())->getPid(), pid);
        } else {
          ADD_FAILURE() << "svc-a was not found";
        }
        // Nothing under an unknown name.
        EXPECT_TRUE((co_await findActor<ServiceActor>(root, "nobody")) == nullptr);

        // query: the entry, with its pid and its addresses (of the test's transport).
        auto entries = co_await queryActor(root, "svc-a");
        KJ_ASSERT(entries.size() == 1, entries.size());
        EXPECT_EQ(entries[0].pid, uint32_t(pid));
        KJ_ASSERT(entries[0].addresses.size() == 1);
        EXPECT_EQ(Address::parse(entries[0].addresses[0]).kind, addressKindOf(GetParam()))
            << entries[0].addresses[0].cStr();
        for (auto& a : entries[0].addresses) childAddresses.add(kj::str(a));
        uuid.assign(entries[0].uuid.begin(), entries[0].uuid.end());
        auto everyone = co_await queryActor(root, "");
        EXPECT_EQ(everyone.size(), 2u);

        // From inside a child: it finds another actor by name and calls it, and it reaches the
        // root of its tree.
        co_await startService(nursery, "svc-b");
        auto svcA = co_await nursery.startActor<ServiceActor>("svc-c", "service");
        known.insert((co_await svcA.report())->getPid());
        auto looked = co_await svcA.lookup([](auto params) {
          params.setName("svc-b");
          params.setText("via svc-c");
        });
        EXPECT_TRUE(looked->getFound());
        EXPECT_EQ(std::string(looked->getReply().cStr()), "svc-b: via svc-c");
        auto missing = co_await svcA.lookup([](auto params) {
          params.setName("nobody");
          params.setText("?");
        });
        EXPECT_FALSE(missing->getFound());
        auto fromRoot = co_await svcA.callRoot("up the tree");
        EXPECT_EQ(std::string(fromRoot->getReply().cStr()), "discovery-root: up the tree");

        // Leaving the nursery cancels svc-a, which deregisters on its way out.
        tasks.startSoon([&]() -> Co<void> {
          departure = co_await waitForDeparture(
              root, kj::arrayPtr(reinterpret_cast<const kj::byte*>(uuid.data()), uuid.size()));
        });
        co_await registryBarrier();
      });
    });
    EXPECT_EQ((co_await queryActor(root, "svc-a")).size(), 0u);
    EXPECT_EQ((co_await queryActor(root, "")).size(), 1u) << "only the root is left";
  }));
  KJ_IF_MAYBE(how, departure) {
    EXPECT_EQ(*how, Departure::DEREGISTERED);
  } else {
    ADD_FAILURE() << "no departure seen";
  }
  EXPECT_EQ(known.size(), 3u);
  if (GetParam() == TransportKind::UNIX) {
    for (auto& address : childAddresses) {
      auto path = Address::parse(address).path;
      EXPECT_FALSE(fileExists(path)) << "socket file left behind: " << path.cStr();
    }
    EXPECT_FALSE(fileExists(Address::parse(registryAddress).path)) << "registry socket left";
  }
}

TEST_P(DiscoveryTest, StaleEntryIsRemovedWhenAnActorIsKilled) {
  kj::Maybe<Departure> departure;
  kj::Vector<kj::String> addresses;
  kj::Maybe<kj::Exception> failure;
  bool foundAfter = true;
  expectOk(runRoot([&]() -> Co<void> {
    co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
      try {
        co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
          pid_t pid = 0;
          co_await startService(nursery, "svc-doomed", &pid);
          auto entries = co_await queryActor(root, "svc-doomed");
          KJ_ASSERT(entries.size() == 1);
          for (auto& a : entries[0].addresses) addresses.add(kj::str(a));
          auto uuid = kj::heapArray<kj::byte>(entries[0].uuid);
          tasks.startSoon([&, uuid = kj::mv(uuid)]() -> Co<void> {
            departure = co_await waitForDeparture(root, uuid);
          });
          co_await registryBarrier();
          KJ_SYSCALL(kill(pid, SIGKILL));  // no deregistration: the registry must notice
          // The nursery sees its child die and cancels this body.
          co_await kj::Promise<void>(kj::NEVER_DONE);
        });
      } catch (...) {
        failure = currentException();
      }
    });  // joins the departure
    auto found = co_await findActor<ServiceActor>(root, "svc-doomed");
    foundAfter = found != nullptr;
  }));
  EXPECT_FALSE(foundAfter) << "the stale entry is still found";
  // The nursery reports the child's death, as it should.
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(contains(*e, "harrow.ActorDied")) << text(*e);
    EXPECT_TRUE(contains(*e, "killed by signal 9")) << text(*e);
  } else {
    ADD_FAILURE() << "the nursery did not report the killed child";
  }
  KJ_IF_MAYBE(how, departure) {
    EXPECT_EQ(*how, Departure::CHANNEL_LOST);
  } else {
    ADD_FAILURE() << "no departure seen";
  }
  if (GetParam() == TransportKind::UNIX) {
    // The killed actor left its socket file behind; it does not block a new listener there.
    KJ_ASSERT(addresses.size() == 1);
    auto path = Address::parse(addresses[0]).path;
    EXPECT_TRUE(fileExists(path)) << "expected a stale socket file";
    auto rebound = kj::runCatchingExceptions([&]() {
      auto listener = Listener::bind(io.provider->getNetwork(), addresses[0]).wait(io.waitScope);
      EXPECT_EQ(listener->getAddress(), addresses[0]);
    });
    KJ_IF_MAYBE(e, rebound) ADD_FAILURE() << "the stale socket file blocked a bind: " << text(*e);
    EXPECT_FALSE(fileExists(path)) << "the new listener removes its file";
  }
}

TEST_P(DiscoveryTest, WaitingForAnActorBeforeItExists) {
  expectOk(runRoot([&]() -> Co<void> {
    bool arrived = false;
    kj::Maybe<kj::String> reply;
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
        tasks.startSoon([&]() -> Co<void> {
          auto late = co_await waitForActor<ServiceActor>(root, "svc-late");
          arrived = true;
          reply = kj::str((co_await late.echo("finally"))->getText());
        });
        co_await registryBarrier();  // the waitFor is at the registry now
        EXPECT_FALSE(arrived);
        co_await startService(nursery, "svc-late");
      });
    });
    EXPECT_TRUE(arrived);
    KJ_IF_MAYBE(r, reply) {
      EXPECT_EQ(std::string(r->cStr()), "svc-late: finally");
    } else {
      ADD_FAILURE() << "no reply from the late actor";
    }
  }));
}

TEST_P(DiscoveryTest, DuplicateNamesAreDistinctEntries) {
  expectOk(runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      pid_t first = 0, second = 0;
      co_await startService(nursery, "twin", &first);
      co_await startService(nursery, "twin", &second);
      auto entries = co_await queryActor(root, "twin");
      KJ_ASSERT(entries.size() == 2, entries.size());
      EXPECT_FALSE(entries[0].uuid.asPtr() == entries[1].uuid.asPtr());
      std::set<uint32_t> pids = {entries[0].pid, entries[1].pid};
      EXPECT_EQ(pids, (std::set<uint32_t>{uint32_t(first), uint32_t(second)}));
      auto found = co_await findActor<ServiceActor>(root, "twin");
      auto twin = KJ_ASSERT_NONNULL(found);
      auto pid = (co_await twin.report())->getPid();
      EXPECT_EQ(pid, first) << "find returns the earliest registered";
    });
  }));
}

// ---- robustness of every actor's channel server ----

// A connection to `address` over the kj network (not a harrow channel).
Co<kj::Own<kj::AsyncIoStream>> rawConnect(kj::Network& network, kj::StringPtr address) {
  auto target = co_await network.parseAddress(Address::parse(address).toKjAddress());
  co_return co_await target->connect();
}

// Reads until the server closes the connection (EOF or reset): it has cut us off.
Co<void> readUntilClosed(kj::AsyncIoStream& stream) {
  kj::byte buffer[4096];
  for (;;) {
    size_t n = 0;
    bool reset = false;
    try {
      n = co_await stream.tryRead(buffer, 1, sizeof(buffer));
    } catch (...) {
      auto e = currentException();
      if (isCancelled(e)) throw;
      reset = true;  // ECONNRESET: closed with our bytes unread
    }
    if (reset || n == 0) co_return;
  }
}

kj::Array<kj::byte> frameOf(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  return kj::heapArray(words.asBytes());
}

// Garbage of several kinds; the server must close each connection (never hang on it, never
// disturb its actor).
kj::Array<kj::Array<kj::byte>> garbageSamples() {
  kj::Vector<kj::Array<kj::byte>> samples;
  {  // random-looking bytes
    auto bytes = kj::heapArray<kj::byte>(1024);
    uint32_t x = 12345;
    for (auto& b : bytes) {
      x = x * 1103515245 + 12345;
      b = kj::byte(x >> 16);
    }
    samples.add(kj::mv(bytes));
  }
  {  // an HTTP request
    kj::StringPtr http = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    samples.add(kj::heapArray(http.asBytes()));
  }
  {  // a frame header claiming a huge segment
    auto bytes = kj::heapArray<kj::byte>(8);
    uint32_t header[2] = {0, 0x0fffffff};
    memcpy(bytes.begin(), header, 8);
    samples.add(kj::mv(bytes));
  }
  {  // a well-formed harrow message that is not hello: refused
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<wire::Message>();
    root.setCallId(1);
    root.initStart().setInterfaceId(1);
    samples.add(frameOf(message));
  }
  {  // a hello of another protocol version: refused
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<wire::Message>();
    auto hello = root.initHello();
    hello.getId().setName("impostor");
    hello.setProtocolVersion(999);
    samples.add(frameOf(message));
  }
  return samples.releaseAsArray();
}

TEST_P(DiscoveryTest, ConnectAndDropsAndGarbageDoNotDisturbAnyActor) {
  constexpr int DROPS = 1000;
  constexpr int PARALLEL = 10;
  expectOk(runRoot([&]() -> Co<void> {
    auto& network = io.provider->getNetwork();
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      pid_t pid = 0;
      co_await startService(nursery, "svc-target", &pid);
      auto entries = co_await queryActor(root, "svc-target");
      KJ_ASSERT(entries.size() == 1);
      auto childAddress = kj::str(entries[0].addresses[0]);
      auto registry = kj::str(KJ_ASSERT_NONNULL(harrow::registryAddress(root)));
      auto targetFound = co_await findActor<ServiceActor>(root, "svc-target");
      auto target = KJ_ASSERT_NONNULL(targetFound);

      bool done = false;
      int calls = 0;
      int drops = 0;
      int garbage = 0;
      co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
        // Calls keep flowing through it all: to the child and to the registry.
        tasks.startSoon([&]() -> Co<void> {
          while (!done) {
            auto reply = co_await target.echo(kj::str(calls));
            EXPECT_EQ(std::string(reply->getText().cStr()),
                      std::string(kj::str("svc-target: ", calls).cStr()));
            auto found = co_await queryActor(root, "svc-target");
            EXPECT_EQ(found.size(), 1u);
            ++calls;
          }
        });
        co_await openNursery([&](TaskNursery& attackers) -> Co<void> {
          // Bare connect-and-drops, half to the child's address, half to the registry's.
          for (int p = 0; p < PARALLEL; ++p) {
            attackers.startSoon([&, p]() -> Co<void> {
              for (int i = p; i < DROPS; i += PARALLEL) {
                auto stream = co_await rawConnect(network, i % 2 ? childAddress : registry);
                stream = nullptr;  // drop at once
                ++drops;
              }
            });
          }
          // Garbage, to both; each connection must be closed by the server.
          for (auto address : {childAddress.asPtr(), registry.asPtr()}) {
            attackers.startSoon([&, address]() -> Co<void> {
              for (auto& sample : garbageSamples()) {
                auto stream = co_await rawConnect(network, address);
                co_await stream->write(sample.begin(), sample.size());
                co_await readUntilClosed(*stream);
                ++garbage;
              }
            });
          }
          co_return;
        });
        done = true;
      });
      EXPECT_EQ(drops, DROPS);
      EXPECT_EQ(garbage, 10);
      EXPECT_GT(calls, 0);

      // Nothing was disturbed: the same child, still registered, still answering.
      auto again = co_await target.report();
      EXPECT_EQ(again->getPid(), pid);
      EXPECT_EQ((co_await queryActor(root, "svc-target")).size(), 1u);
      auto freshFound = co_await findActor<ServiceActor>(root, "svc-target");
      auto fresh = KJ_ASSERT_NONNULL(freshFound);
      EXPECT_EQ(std::string((co_await fresh.echo("still here"))->getText().cStr()),
                "svc-target: still here");
    });
  }));
}

// Connects to `address`, completes the handshake (it knows the tree's secret: a buggy member of
// the tree, not a stranger), sends a start whose params pointer is a list, and expects a protocol
// violation for it.
Co<void> sendJunkStart(kj::Network& network, kj::StringPtr address, uint64_t interfaceId,
                       const TreeSecret& secret) {
  auto stream = co_await rawConnect(network, address);
  Channel channel(kj::mv(stream));
  capnp::MallocMessageBuilder hello;
  auto h = hello.initRoot<wire::Message>().initHello();
  ActorIdentity::random("junk").toWire(h.initId());
  h.setProtocolVersion(wire::PROTOCOL_VERSION);
  setHelloNonce(h);
  channel.send(hello);
  {
    auto theirs = co_await channel.receive();
    auto& reader = KJ_ASSERT_NONNULL(theirs, "the victim closed the channel");
    auto theirHello = reader->getRoot<wire::Message>().getHello();
    auto proof = handshakeProof(secret, HandshakeRole::OPENER, h.asReader(), theirHello);
    capnp::MallocMessageBuilder authenticate;
    authenticate.initRoot<wire::Message>().setAuthenticate(
        capnp::Data::Reader(proof.begin(), proof.size()));
    channel.send(authenticate);
    // Over TCP every frame after the proofs carries a tag (docs/PROTOCOL.md, "Frame protection").
    auto theirProof = co_await channel.receive();
    KJ_ASSERT(KJ_ASSERT_NONNULL(theirProof)->getRoot<wire::Message>().isAuthenticate());
    protectFrames(channel, secret, /*initiator=*/true, h.asReader(), theirHello);
  }
  capnp::MallocMessageBuilder junk;
  auto start = junk.initRoot<wire::Message>();
  start.setCallId(1);
  start.initStart().setInterfaceId(interfaceId);
  capnp::AnyStruct::Builder(start.getStart()).getPointerSection()[0]
      .initAs<capnp::List<uint32_t>>(3);  // params: a list, not a Payload
  channel.send(junk);
  for (;;) {
    // (No co_await inside KJ_ASSERT_NONNULL: GCC 12 has an ICE on co_await in its expression.)
    auto next = co_await channel.receive();
    auto& reader = KJ_ASSERT_NONNULL(next, "the victim closed the channel");
    auto m = reader->getRoot<wire::Message>();
    if (m.isHello() || m.isAuthenticate()) continue;
    EXPECT_EQ(m.getCallId(), 1u);
    EXPECT_TRUE(m.isError() && m.getError().getKind() == wire::ErrorKind::PROTOCOL_VIOLATION);
    co_return;
  }
}

// A well-framed start whose params pointer is a list (docs/PROTOCOL.md, "Flow control", its
// paragraph "Decoding") sent to a child's channel server and to the root's registry listener:
// before the decode boundary it failed the victim's service nursery and killed the process (the
// root: the whole tree).
TEST_P(DiscoveryTest, JunkStartsDoNotKillAChildOrTheRegistry) {
  expectOk(runRoot([&]() -> Co<void> {
    auto& network = io.provider->getNetwork();
    co_await openActorNursery(root, [&](ActorNursery& nursery) -> Co<void> {
      pid_t pid = 0;
      co_await startService(nursery, "svc-junk", &pid);
      auto entries = co_await queryActor(root, "svc-junk");
      KJ_ASSERT(entries.size() == 1);
      auto childAddress = kj::str(entries[0].addresses[0]);
      auto registry = kj::str(KJ_ASSERT_NONNULL(harrow::registryAddress(root)));
      co_await sendJunkStart(network, childAddress, ServiceActor::INTERFACE_ID,
                             root.treeSecret());
      co_await sendJunkStart(network, registry, RegistryActor::INTERFACE_ID,
                             root.treeSecret());
      // Both still serve: the same child answers, the registry still knows it.
      auto found = co_await findActor<ServiceActor>(root, "svc-junk");
      auto service = KJ_ASSERT_NONNULL(found);
      auto again = co_await service.report();
      EXPECT_EQ(again->getPid(), pid);
      EXPECT_EQ((co_await queryActor(root, "svc-junk")).size(), 1u);
    });
  }));
}

TEST_P(DiscoveryTest, SilentConnectionIsCutOffAfterTheHandshakeTimeout) {
  expectOk(runRoot([&]() -> Co<void> {
    auto& network = io.provider->getNetwork();
    auto registry = kj::str(KJ_ASSERT_NONNULL(harrow::registryAddress(root)));
    // Half-open: connected, nothing sent. And a frame begun but never finished.
    auto silent = co_await rawConnect(network, registry);
    auto partial = co_await rawConnect(network, root.addresses()[0]);
    kj::byte half[4] = {0, 0, 0, 0};
    co_await partial->write(half, sizeof(half));
    auto start = root.timer().now();
    co_await readUntilClosed(*silent);
    co_await readUntilClosed(*partial);
    auto waited = root.timer().now() - start;
    EXPECT_GE(waited, HANDSHAKE_TIMEOUT - 100 * kj::MILLISECONDS);
    EXPECT_LT(waited, HANDSHAKE_TIMEOUT * 10);
    // Meanwhile the registry served on.
    EXPECT_EQ((co_await queryActor(root, "discovery-root")).size(), 1u);
  }));
}

// ---- the probe, and several roots on one registry ----

// A second root in this process, on the same event loop: serves a Service until `stop`.
struct SecondRoot {
  Actor actor;
  kj::Own<kj::PromiseFulfiller<void>> stop;
  kj::Own<kj::PromiseFulfiller<void>> startedFulfiller;
  kj::ForkedPromise<void> startedPromise;
  kj::Maybe<kj::Exception> failure;
  bool started = false;

  SecondRoot(kj::AsyncIoContext& io, kj::StringPtr name, DiscoveryOptions options)
      : actor(io, ActorIdentity::random(name)), startedPromise(nullptr) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    startedFulfiller = kj::mv(paf.fulfiller);
    startedPromise = paf.promise.fork();
    harrow::setDiscovery(actor, kj::mv(options));
    actor.addServer(kj::heap<ServiceImpl>(name));
  }

  // Resolves once the actor is up (bound, registered), i.e. its body runs.
  kj::Promise<void> whenStarted() { return startedPromise.addBranch(); }

  // Runs the actor until stop is fulfilled; resolves when it is done (failure recorded).
  Co<void> run() {
    auto paf = kj::newPromiseAndFulfiller<void>();
    stop = kj::mv(paf.fulfiller);
    try {
      co_await actor.serve([&]() -> Co<void> {
        started = true;
        startedFulfiller->fulfill();
        co_await kj::mv(paf.promise);
      });
    } catch (...) {
      failure = currentException();
    }
  }
};

TEST_P(DiscoveryTest, ProbeJoinsALiveRegistryAndRootsFindEachOther) {
  expectOk(runRoot([&]() -> Co<void> {
    auto registry = kj::str(KJ_ASSERT_NONNULL(harrow::registryAddress(root)));
    SecondRoot second(io, "second-root", rootOptions(GetParam(), "second-root", registry));
    co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
      tasks.startSoon([&]() { return second.run(); });
      auto peer = co_await waitForActor<ServiceActor>(root, "second-root");
      EXPECT_TRUE(second.started);
      EXPECT_FALSE(harrow::hostsRegistry(second.actor)) << "it joined instead of hosting";
      EXPECT_EQ(KJ_ASSERT_NONNULL(harrow::registryAddress(second.actor)), registry);
      EXPECT_EQ(std::string((co_await peer.echo("x"))->getText().cStr()), "second-root: x");
      // And the other way round.
      auto firstFound = co_await findActor<ServiceActor>(second.actor, "discovery-root");
      auto first = KJ_ASSERT_NONNULL(firstFound);
      EXPECT_EQ(std::string((co_await first.echo("y"))->getText().cStr()), "discovery-root: y");
      // It leaves in order: deregistered.
      auto uuid = kj::heapArray<kj::byte>(second.actor.identity().uuid);
      kj::Maybe<Departure> how;
      co_await openNursery([&](TaskNursery& waits) -> Co<void> {
        waits.startSoon([&]() -> Co<void> { how = co_await waitForDeparture(root, uuid); });
        co_await registryBarrier();
        second.stop->fulfill();
      });
      KJ_IF_MAYBE(h, how) {
        EXPECT_EQ(*h, Departure::DEREGISTERED);
      } else {
        ADD_FAILURE() << "no departure";
      }
    });
    KJ_IF_MAYBE(e, second.failure) ADD_FAILURE() << text(*e);
  }));
}

TEST_P(DiscoveryTest, ProbeRefusesAnAddressHeldByAnythingButARegistry) {
  if (GetParam() == TransportKind::TCP) {
    // Port 0 is never probed; the explicit-address cases run for the Unix transports.
    GTEST_SKIP() << "covered with fixed addresses by the Unix transports";
  }
  expectOk(runRoot([&]() -> Co<void> {
    // (1) A harrow actor that serves no registry.
    DiscoveryOptions plainOptions;
    plainOptions.bindAddresses.add(uniqueRegistryAddress(GetParam()));
    auto plainAddress = kj::str(plainOptions.bindAddresses[0]);
    SecondRoot plain(io, "plain", kj::mv(plainOptions));
    // (2) Something that accepts and never says a word.
    auto mute = co_await Listener::bind(io.provider->getNetwork(),
                                        uniqueRegistryAddress(GetParam()));
    auto muteAddress = kj::str(mute->getAddress());
    kj::Vector<kj::Own<Channel>> muteAccepted;

    co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
      tasks.startSoon([&]() { return plain.run(); });
      co_await plain.whenStarted();
      co_await openNursery([&](TaskNursery& muteTasks) -> Co<void> {
        muteTasks.startSoon([&]() -> Co<void> {
          for (;;) muteAccepted.add(co_await mute->accept());
        });
        for (auto address : {plainAddress.asPtr(), muteAddress.asPtr()}) {
          auto options = rootOptions(GetParam(), "prober", address);
          options.handshakeTimeout = 300 * kj::MILLISECONDS;
          SecondRoot prober(io, "prober", kj::mv(options));
          co_await prober.run();
          KJ_IF_MAYBE(e, prober.failure) {
            EXPECT_TRUE(contains(*e, "harrow.RegistryAddressInUse")) << text(*e);
            EXPECT_TRUE(contains(*e, address)) << text(*e);
          } else {
            ADD_FAILURE() << "the prober started on " << address.cStr();
          }
          EXPECT_FALSE(prober.started);
        }
        muteTasks.cancel();
      });
      plain.stop->fulfill();
    });
    KJ_IF_MAYBE(e, plain.failure) ADD_FAILURE() << text(*e);
  }));
}

TEST_P(DiscoveryTest, RegistryHostExitingUnderAClientIsAnErrorNotAHang) {
  // The host here is a second root; the test's root joins its registry as a client would.
  auto hostAddress = uniqueRegistryAddress(GetParam());
  kj::Maybe<kj::Exception> pendingWait;
  kj::Maybe<kj::Exception> laterFind;
  kj::Maybe<kj::Exception> clientFailure;
  SecondRoot host(io, "registry-host", rootOptions(GetParam(), "registry-host", hostAddress));
  auto failure = runRoot([&]() -> Co<void> {
    co_await openNursery([&](TaskNursery& outer) -> Co<void> {
      outer.startSoon([&]() { return host.run(); });
      co_await host.whenStarted();
      auto registry = kj::str(KJ_ASSERT_NONNULL(harrow::registryAddress(host.actor)));
      SecondRoot client(io, "client", rootOptions(GetParam(), "client", registry));
      co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
        tasks.startSoon([&]() { return client.run(); });
        co_await waitForActor<ServiceActor>(host.actor, "client");
        EXPECT_FALSE(harrow::hostsRegistry(client.actor));
        co_await openNursery([&](TaskNursery& waits) -> Co<void> {
          waits.startSoon([&]() -> Co<void> {
            try {
              co_await waitForActor<ServiceActor>(client.actor, "never");
            } catch (...) {
              pendingWait = currentException();
            }
          });
          // The client's waitFor is at the host's registry before the host goes.
          co_await queryActor(client.actor, "no-one");
          host.stop->fulfill();
        });  // joins the pending wait: it must fail, not hang
        try {
          co_await findActor<ServiceActor>(client.actor, "anyone");
        } catch (...) {
          laterFind = currentException();
        }
        client.stop->fulfill();
      });
      clientFailure = kj::mv(client.failure);
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  KJ_IF_MAYBE(e, host.failure) ADD_FAILURE() << text(*e);
  KJ_IF_MAYBE(e, clientFailure) ADD_FAILURE() << "the client's teardown failed: " << text(*e);
  for (auto* raised : {&pendingWait, &laterFind}) {
    KJ_IF_MAYBE(e, *raised) {
      EXPECT_TRUE(isTransportClosed(*e)) << text(*e);
      EXPECT_TRUE(contains(*e, "registry")) << text(*e);
      EXPECT_FALSE(isTooSlow(*e)) << text(*e);
    } else {
      ADD_FAILURE() << "a registry call succeeded after the registry's host left";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, DiscoveryTest,
                         ::testing::Values(TransportKind::TCP, TransportKind::UNIX,
                                           TransportKind::UNIX_ABSTRACT),
                         [](const auto& info) { return kindName(info.param); });

// ---- the registry server itself, in one process ----

TEST(RegistryAddressTest, NewBindAddressesAreUniqueAndValid) {
  std::set<std::string> seen;
  for (auto kind : {TransportKind::TCP, TransportKind::UNIX, TransportKind::UNIX_ABSTRACT}) {
    for (int i = 0; i < 3; ++i) {
      auto address = newBindAddress(kind, "a name/with odd chars");
      auto parsed = Address::parse(address);
      EXPECT_EQ(parsed.kind, addressKindOf(kind));
      if (kind != TransportKind::TCP) {
        EXPECT_TRUE(seen.insert(address.cStr()).second) << address.cStr();
        EXPECT_EQ(parsed.path.asPtr().findFirst('/') == nullptr,
                  kind == TransportKind::UNIX_ABSTRACT)
            << address.cStr();
      }
    }
  }
  auto dir = runtimeDirectory();
  struct stat st;
  ASSERT_EQ(lstat(dir.cStr(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

}  // namespace
}  // namespace harrow

// ---------------------------------------------------------------------------------------------

namespace {


}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && kj::StringPtr(argv[1]) == "--harrow-child") {
    return harrow::main(argc, argv, harrow::testing::serviceImplementations(),
                        [](harrow::Actor&) -> kj::Promise<void> { return kj::READY_NOW; });
  }
  kj::UnixEventPort::captureChildExit();
  harrow::testing::installWatchdog("discovery_test");
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
