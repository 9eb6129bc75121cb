#include <harrow/discovery/discovery.h>

#include <harrow/actor/log.h>
#include <harrow/discovery/etcd.h>
#include <harrow/discovery/registry.h>

#include <kj/debug.h>

#include <stdlib.h>
#include <unistd.h>

namespace harrow {

// ---------------------------------------------------------------------------------------------
// Options

kj::String defaultRegistryAddress() {
  return kj::str("unix:", runtimeDirectory(), "/registry.sock");
}

DiscoveryOptions DiscoveryOptions::forRoot(kj::StringPtr name) {
  DiscoveryOptions options;
  options.isRoot = true;
  options.mayHostRegistry = true;
  const char* transport = getenv("HARROW_TRANSPORT");
  if (transport != nullptr && *transport != '\0') {
    options.childTransport = parseTransportKind(transport);
  }
  options.bindAddresses.add(newBindAddress(options.childTransport, name));
  const char* registry = getenv("HARROW_REGISTRY");
  if (registry == nullptr || *registry == '\0') {
    // The default address: if it cannot be had, the program still runs, without a registry.
    options.registryAddress = defaultRegistryAddress();
    options.registryRequired = false;
  } else if (kj::StringPtr(registry) == "none") {
    options.registryAddress = nullptr;
  } else if (EtcdAddress::matches(registry)) {
    EtcdAddress::parse(registry);  // a malformed address fails here, naming it
    options.registryAddress = kj::heapString(registry);
    options.registryRequired = true;
  } else {
    Address::parse(registry);  // a malformed address fails here, naming it
    options.registryAddress = kj::heapString(registry);
    options.registryRequired = true;
  }
  options.handshakeTimeout = handshakeTimeoutFromEnvironment();
  return options;
}

kj::Maybe<DiscoveryOptions> DiscoveryOptions::forChild(wire::SpawnSpec::Reader spec) {
  if (spec.getBindAddresses().size() == 0 && spec.getRegistryAddress().size() == 0 &&
      spec.getRootAddress().size() == 0) {
    return nullptr;
  }
  DiscoveryOptions options;
  for (auto address : spec.getBindAddresses()) {
    options.bindAddresses.add(kj::heapString(address));
  }
  if (options.bindAddresses.size() > 0) {
    // The children we spawn get the kind of address we were given.
    options.childTransport = transportKindOf(options.bindAddresses[0]);
  }
  options.registryAddress = kj::heapString(spec.getRegistryAddress());
  // A child that cannot reach its tree's registry still serves its parent (logged).
  options.registryRequired = false;
  options.rootAddress = kj::heapString(spec.getRootAddress());
  options.handshakeTimeout = handshakeTimeoutFromEnvironment();
  return options;
}


void setDiscovery(Actor& actor, DiscoveryOptions options) {
  ChannelServerOptions server;
  for (auto& address : options.bindAddresses) server.bindAddresses.add(kj::heapString(address));
  server.childTransport = options.childTransport;
  server.handshakeTimeout = options.handshakeTimeout;
  actor.setChannelServer(kj::mv(server));
  actor.attach(kj::heap<Discovery>(actor, kj::mv(options)));
}

// ---------------------------------------------------------------------------------------------
// Discovery

Discovery::Discovery(Actor& actor, DiscoveryOptions options) : actor(actor), opts(kj::mv(options)) {}

Discovery& Discovery::of(Actor& actor) {
  KJ_IF_MAYBE(discovery, actor.attachment<Discovery>()) return *discovery;
  kj::throwFatalException(makeError(ErrorKind::NO_REGISTRY, kj::str(
      "actor ", actor.identity().name, " has no registry")));
}

kj::Maybe<kj::StringPtr> registryAddress(Actor& actor) {
  KJ_IF_MAYBE(discovery, actor.attachment<Discovery>()) return discovery->registryAddress();
  return nullptr;
}

bool hostsRegistry(Actor& actor) {
  KJ_IF_MAYBE(discovery, actor.attachment<Discovery>()) return discovery->hostsRegistry();
  return false;
}

kj::Maybe<kj::StringPtr> Discovery::registryAddress() const {
  KJ_IF_MAYBE(address, registryBound) return address->asPtr();
  return nullptr;
}

kj::Maybe<kj::StringPtr> Discovery::rootAddress() const {
  KJ_IF_MAYBE(address, rootBound) return address->asPtr();
  return nullptr;
}

void Discovery::fillSpawnSpec(wire::SpawnSpec::Builder spec) {
  KJ_IF_MAYBE(registry, registryAddress()) spec.setRegistryAddress(*registry);
  KJ_IF_MAYBE(root, rootAddress()) spec.setRootAddress(*root);
}

Co<void> Discovery::start() {
  // The actor's channel server is bound by now (its addresses are real).
  DiscoveryOptions* options = &opts;
  auto addresses = actor.addresses();
  if (options->isRoot) {
    if (addresses.size() > 0) rootBound = kj::heapString(addresses[0]);
  } else if (options->rootAddress.size() > 0) {
    rootBound = kj::heapString(options->rootAddress);
  }
  if (options->registryAddress.size() == 0) co_return;
  etcd = EtcdAddress::matches(options->registryAddress);

  for (uint attempt = 1;; ++attempt) {
    KJ_IF_MAYBE(e, co_await errorOf([&]() -> Co<void> {
      if (etcd) {
        registryBound = kj::heapString(options->registryAddress);
        backendImpl = newEtcdBackend(actor, EtcdAddress::parse(options->registryAddress),
                                     options->registryAddress);
      } else {
        co_await setUpRegistry();
        backendImpl = newRegistryActorBackend();
      }
      co_await listenForOtherHosts();
      co_await registerSelf();
    })) {
      if (!etcd && options->mayHostRegistry && !registryHosted && isTransportClosed(*e) &&
          attempt < 3) {
        // The registry we were about to join went away (its program is exiting): decide again.
        KJ_LOG(INFO, "the registry went away while joining it; probing again", *e);
        registryBound = nullptr;
        continue;
      }
      auto why = kj::str(errorPrefix(ErrorKind::REGISTRY_UNAVAILABLE), actor.identity().name,
                         " cannot use the registry at ", options->registryAddress, ": ",
                         e->getDescription());
      if (options->registryRequired) {
        kj::throwFatalException(kj::Exception(e->getType(), __FILE__, __LINE__, kj::mv(why)));
      }
      KJ_LOG(INFO, "running without a registry", why);
      if (!registryHosted) {
        registryBound = nullptr;
        backendImpl = nullptr;
      }
    }
    break;
  }
  if (options->isRoot && rootBound == nullptr && registryHosted) {
    rootBound = kj::heapString(KJ_ASSERT_NONNULL(registryBound));
  }
}


void Discovery::noRegistry() {
  kj::throwFatalException(makeError(ErrorKind::NO_REGISTRY, kj::str(
      "actor ", actor.identity().name, " has no registry")));
}

RegistryBackend& Discovery::backend() {
  KJ_IF_MAYBE(b, backendImpl) return **b;
  noRegistry();
}

Co<RegistryActor::Portal> Discovery::registryPortal() {
  kj::String address;
  KJ_IF_MAYBE(r, registryBound) {
    address = kj::heapString(*r);
  } else {
    noRegistry();
  }
  if (etcd) {
    kj::throwFatalException(makeError(ErrorKind::NO_REGISTRY, kj::str(
        "actor ", actor.identity().name, " uses the etcd registry at ", address,
        ", not a registry actor")));
  }
  auto connected = co_await errorOr([&]() { return actor.connectTo(address); });
  KJ_IF_MAYBE(e, connected.error()) {
    kj::throwFatalException(transportClosed(
        kj::str("the registry at ", address, " is unreachable: ", e->getDescription())));
  }
  co_return RegistryActor::Portal(**connected);
}

Co<Discovery::ProbeResult> Discovery::probeRegistry(
    kj::StringPtr addressParam,
    kj::Maybe<kj::Exception>& why) {  // the caller's, read once this resolves
  auto address = kj::heapString(addressParam);
  kj::Duration timeout = opts.handshakeTimeout;
  auto connected = co_await errorOr([&]() {
    return harrow::connect(actor.io().provider->getNetwork(), address, actor.channelOptions());
  });
  KJ_IF_MAYBE(e, connected.error()) {
    if (!isTransportClosed(*e)) kj::throwFatalException(kj::mv(*e));
    why = kj::mv(*e);
    co_return ProbeResult::NOBODY;  // refused: nobody listens there
  }
  kj::Own<Channel> channel = kj::mv(*connected);
  // Someone listens. A real exchange tells a registry from anything else: hello both ways, then
  // Registry.info. The channel is closed (EOF) afterwards, like any channel an actor is done with.
  bool handshaken = false;
  KJ_IF_MAYBE(e, co_await errorOf([&]() {
    return failAfter(actor.timer(), timeout, [&]() -> Co<void> {
      kj::Own<Peer> peer = co_await handshake(kj::mv(channel), actor, /*initiator=*/true);
      handshaken = true;
      co_await openNursery([&](TaskNursery& n) -> Co<void> {
        n.startSoon([&]() -> Co<void> { co_await peer->serve(); });
        co_await RegistryActor::Portal(*peer).info();
        n.cancel();
      });
    });
  })) {
    if (isAuthenticationFailed(*e)) {
      kj::throwFatalException(makeError(ErrorKind::REGISTRY_ADDRESS_IN_USE, kj::str(
          "the harrow actor at ", address, " belongs to another tree: ", e->getDescription())));
    }
    bool gone = isTransportClosed(*e);
    why = kj::mv(*e);
    if (gone) co_return ProbeResult::NOBODY;  // it closed on us: going away
    co_return handshaken ? ProbeResult::HARROW_NOT_REGISTRY : ProbeResult::FOREIGN;
  }
  co_return ProbeResult::REGISTRY;
}

Co<void> Discovery::setUpRegistry() {
  DiscoveryOptions& options = opts;
  kj::StringPtr address = options.registryAddress;
  if (!options.mayHostRegistry) {
    registryBound = kj::heapString(address);
    co_return;
  }
  Address parsed = Address::parse(address);
  bool ephemeral = parsed.kind == Address::Kind::TCP && parsed.port == 0;
  constexpr uint ATTEMPTS = 5;
  for (uint attempt = 1;; ++attempt) {
    if (!ephemeral) {
      kj::Maybe<kj::Exception> why;
      auto result = co_await probeRegistry(address, why);
      if (result == ProbeResult::REGISTRY) {
        HARROW_LOG_DEBUG("joining the registry", address);
        registryBound = kj::heapString(address);
        co_return;
      }
      if (result == ProbeResult::FOREIGN) {
        kj::throwFatalException(makeError(ErrorKind::REGISTRY_ADDRESS_IN_USE, kj::str(
            "something that is not a harrow actor listens at ", address, ": ",
            KJ_ASSERT_NONNULL(why).getDescription())));
      }
      if (result == ProbeResult::HARROW_NOT_REGISTRY) {
        // A harrow actor, but no registry: perhaps one whose registry is shutting down.
        if (attempt >= ATTEMPTS) {
          kj::throwFatalException(makeError(ErrorKind::REGISTRY_ADDRESS_IN_USE, kj::str(
              "the harrow actor at ", address, " serves no registry: ",
              KJ_ASSERT_NONNULL(why).getDescription())));
        }
        co_await actor.timer().afterDelay(200 * kj::MILLISECONDS);
        continue;
      }
    }
    // Nobody is there: host it. The server is in place before anyone can connect.
    actor.addServer(kj::heap<RegistryServer>(actor));
    KJ_IF_MAYBE(e, co_await errorOf([&]() -> Co<void> {
      registryBound = co_await actor.listen(address);
    })) {
      actor.removeServer(RegistryActor::INTERFACE_ID);
      if (ephemeral || attempt >= ATTEMPTS) {
        kj::throwFatalException(kj::mv(*e));
      }
      // Another root bound it between our probe and our bind: probe again, and join it.
      HARROW_LOG_DEBUG("lost the race to host the registry; probing again", address, *e);
      continue;
    }
    registryHosted = true;
    HARROW_LOG_DEBUG("hosting the registry", KJ_ASSERT_NONNULL(registryBound));
    co_return;
  }
}

Co<void> Discovery::registerSelf() {
  RegisteredActor self;
  self.name = kj::heapString(actor.identity().name);
  self.uuid = kj::heapArray(actor.identity().uuid.asPtr());
  self.pid = getpid();
  auto bound = actor.addresses();
  // The registry's host can be reached at the registry's address too, and at what it exposed.
  auto addresses = kj::heapArrayBuilder<kj::String>(bound.size() + (registryHosted ? 1 : 0) +
                                                    reachableAt.size());
  for (auto& address : bound) addresses.add(kj::heapString(address));
  if (registryHosted) addresses.add(kj::heapString(KJ_ASSERT_NONNULL(registryBound)));
  for (auto& address : reachableAt) addresses.add(kj::heapString(address));
  self.addresses = addresses.finish();
  co_await backend().registerSelf(self);
  registered = true;
}

namespace {

// The host of a registry on another host, if `address` names one: a TCP address that is not
// loopback, or an etcd registry's first endpoint that is not.
kj::Maybe<kj::String> registryHostElsewhere(kj::StringPtr address) {
  if (EtcdAddress::matches(address)) {
    auto etcd = EtcdAddress::parse(address);
    if (etcd.endpoints.size() == 0) return nullptr;
    auto endpoint = kj::str("tcp:", etcd.endpoints[0]);
    if (isHostLocal(endpoint)) return nullptr;
    return kj::heapString(Address::parse(endpoint).host);
  }
  if (!address.startsWith("tcp:") || isHostLocal(address)) return nullptr;
  return kj::heapString(Address::parse(address).host);
}

}  // namespace

Co<void> Discovery::listenForOtherHosts() {
  // Only for an actor whose registry lives on another host and who can be reached on this one
  // only (a child through ssh, Slurm or a node, and its own children): the actors it would be
  // found by are over there. One with a TCP bind address that is not loopback is reachable as
  // it is.
  if (!reachableAt.empty() || registryHosted) co_return;
  kj::Maybe<kj::String> registryHost = registryHostElsewhere(opts.registryAddress);
  if (registryHost == nullptr) co_return;
  for (auto& address : actor.addresses()) {
    if (!isHostLocal(address)) co_return;
  }
  KJ_IF_MAYBE (e, co_await errorOf([&]() -> Co<void> {
                 auto home = localAddressToward(KJ_ASSERT_NONNULL(registryHost));
                 reachableAt.add(co_await actor.listen(kj::str("tcp:", home, ":0")));
               })) {
    KJ_LOG(INFO, "not reachable from other hosts: no TCP listener toward the registry's host",
           opts.registryAddress, *e);
  }
}

Co<void> Discovery::fillRemoteSpawnSpec(wire::SpawnSpec::Builder spec,
                                        kj::StringPtr homeAddressParam) {
  // An address that crosses as it is (etcd, routable TCP) is in the spec already.
  if (spec.getRegistryAddress().size() > 0 || !registryHosted || etcd) co_return;
  auto home = kj::heapString(homeAddressParam);
  kj::String address;
  KJ_IF_MAYBE (known, exposed.find(home)) {
    address = kj::heapString(*known);
  } else {
    KJ_IF_MAYBE (e, co_await errorOf([&]() -> Co<void> {
                   address = co_await actor.listen(kj::str("tcp:", home, ":0"));
                 })) {
      KJ_LOG(INFO, "cannot expose the registry to a child on another host; it runs without it",
             home, *e);
      co_return;
    }
    // Unless another spawn exposed it meanwhile: then both listen, and both are registered.
    exposed.upsert(kj::heapString(home), kj::heapString(address), [](auto&, auto&&) {});
    reachableAt.add(kj::heapString(address));
    // Actors on other hosts find this one (the root) there too.
    if (registered) co_await registerSelf();
  }
  spec.setRegistryAddress(address);
  if (opts.isRoot && spec.getRootAddress().size() == 0) spec.setRootAddress(address);
}

Co<void> Discovery::stop() {
  if (!registered) co_return;
  registered = false;
  co_await backend().deregisterSelf(opts.deregisterTimeout);
}

}  // namespace harrow
