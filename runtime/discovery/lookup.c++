#include <harrow/discovery/discovery.h>

#include <kj/debug.h>
#include <kj/encoding.h>

namespace harrow {

RegisteredActor RegisteredActor::fromEntry(registry::Registry::Entry::Reader entry) {
  RegisteredActor result;
  result.name = kj::heapString(entry.getName());
  result.uuid = kj::heapArray(entry.getUuid());
  result.pid = entry.getPid();
  auto addresses = kj::heapArrayBuilder<kj::String>(entry.getAddresses().size());
  for (auto address : entry.getAddresses()) addresses.add(kj::heapString(address));
  result.addresses = addresses.finish();
  return result;
}

kj::String RegisteredActor::toString() const {
  return kj::str(name, " (", kj::encodeHex(uuid), "), pid ", pid, ", at ",
                 kj::strArray(addresses, ", "));
}

namespace {

// Registry calls made on a channel that then fails: say which registry is gone.
template <typename Fn>
auto askRegistry(Actor& actor, Fn fn) -> Co<PromiseValue<decltype(fn(kj::instance<RegistryActor::Portal&>()))>> {
  RegistryActor::Portal portal = co_await Discovery::of(actor).registryPortal();
  auto reply = co_await errorOr([&]() { return fn(portal); });
  if (reply.error() == nullptr) co_return kj::mv(*reply);
  auto& e = KJ_ASSERT_NONNULL(reply.error());
  if (isTransportClosed(e)) {
    kj::throwFatalException(transportClosed(kj::str(
        "lost the registry at ", KJ_ASSERT_NONNULL(registryAddress(actor)), ": ",
        e.getDescription())));
  }
  // The registry's actor cancelled our call, or refused it as unknown (it serves nothing any more:
  // the call reached it after its tasks had ended; it answered as a registry before, so that is
  // all unknownMethod can mean now): its host is shutting down.
  bool shuttingDown = isContextCancelled(e) && !isCancelled(e);
  KJ_IF_MAYBE(info, remoteErrorInfo(e)) {
    if (info->kind == wire::ErrorKind::UNKNOWN_METHOD) shuttingDown = true;
  }
  if (shuttingDown) {
    kj::String host = kj::str("its host");
    KJ_IF_MAYBE(info, remoteErrorInfo(e)) host = kj::str("its host ", info->origin.toString());
    kj::throwFatalException(transportClosed(kj::str(
        "lost the registry at ", KJ_ASSERT_NONNULL(registryAddress(actor)), ": ", host,
        " is shutting down")));
  }
  kj::throwFatalException(kj::mv(e));
}

// The registry actor's backend: each operation is one call to the registry (registry.h).
class RegistryActorBackend final : public RegistryBackend {
public:
  RegistryActorBackend(Actor& actor, Discovery& discovery) : actor(actor), discovery(discovery) {}

  Co<void> registerSelf(
      const RegisteredActor& self) override {  // Discovery's own entry, kept while it is registered
    RegistryActor::Portal registry = co_await discovery.registryPortal();
    co_await failAfter(actor.timer(), discovery.options().handshakeTimeout, [&]() -> Co<void> {
      co_await registry.registerActor([&](auto params) {
        auto entry = params.initEntry();
        entry.setName(self.name);
        entry.setUuid(self.uuid);
        entry.setPid(self.pid);
        auto addresses = entry.initAddresses(self.addresses.size());
        for (auto i : kj::indices(self.addresses)) addresses.set(i, self.addresses[i]);
      });
    });
  }

  Co<void> deregisterSelf(kj::Duration timeout) override {
    // The registry's host does not deregister from itself: its registry ends with it.
    if (discovery.hostsRegistry()) co_return;
    kj::StringPtr address = KJ_ASSERT_NONNULL(discovery.registryAddress());
    // No open channel to the registry: it is gone, and our entry with it (or it removes the entry
    // when it sees our channel end). Never connect anew just to say goodbye.
    Peer* peer = nullptr;
    KJ_IF_MAYBE (open, actor.outboundPeer(address)) peer = open;
    if (peer == nullptr) co_return;
    KJ_IF_MAYBE(e, co_await errorOf([&]() -> Co<void> {
      bool late = co_await moveOnAfter(actor.timer(), timeout, [&]() -> Co<void> {
        co_await RegistryActor::Portal(*peer).deregisterActor(actor.identity().uuid);
      });
      if (late) {
        HARROW_LOG_DEBUG("the registry did not answer the deregistration in time", address);
      }
    })) {
      HARROW_LOG_DEBUG("deregistration failed (the registry removes the entry when our channel "
                       "ends)", address, *e);
    }
  }

  Co<kj::Array<RegisteredActor>> query(kj::StringPtr nameParam) override {
    auto name = kj::heapString(nameParam);
    auto reply = co_await askRegistry(actor, [&](RegistryActor::Portal& registry) {
      return registry.query(name);
    });
    auto entries = reply->getEntries();
    auto result = kj::heapArrayBuilder<RegisteredActor>(entries.size());
    for (auto entry : entries) result.add(RegisteredActor::fromEntry(entry));
    co_return result.finish();
  }

  Co<kj::Maybe<RegisteredActor>> find(kj::StringPtr nameParam) override {
    auto name = kj::heapString(nameParam);
    auto found = co_await askRegistry(actor, [&](RegistryActor::Portal& registry) {
      return registry.find(name);
    });
    if (!found->getFound()) co_return nullptr;
    co_return RegisteredActor::fromEntry(found->getEntry());
  }

  Co<RegisteredActor> waitFor(kj::StringPtr nameParam) override {
    auto name = kj::heapString(nameParam);
    auto found = co_await askRegistry(actor, [&](RegistryActor::Portal& registry) {
      return registry.waitFor(name);
    });
    co_return RegisteredActor::fromEntry(found->getEntry());
  }

  Co<Departure> waitForDeparture(kj::ArrayPtr<const kj::byte> uuidParam) override {
    auto uuid = kj::heapArray(uuidParam);
    auto reply = co_await askRegistry(actor, [&](RegistryActor::Portal& registry) {
      return registry.waitForDeparture(uuid);
    });
    co_return reply->getHow();
  }

private:
  Actor& actor;
  Discovery& discovery;
};

}  // namespace

kj::Own<RegistryBackend> Discovery::newRegistryActorBackend() {
  return kj::heap<RegistryActorBackend>(actor, *this);
}

Co<RegistryActor::Portal> registryPortal(Actor& actor) {
  co_return co_await Discovery::of(actor).registryPortal();
}

Co<kj::Array<RegisteredActor>> queryActor(Actor& actor, kj::StringPtr name) {
  co_return co_await Discovery::of(actor).backend().query(name);
}

Co<kj::Array<RegisteredActor>> queryActor(kj::StringPtr name) {
  return queryActor(currentActor(), name);
}

Co<Peer*> connectToActor(
    Actor& actor, const RegisteredActor& entry) {  // the actor runs the loop; entry: the caller's
  kj::Maybe<kj::Exception> lastFailure;
  for (auto& address : entry.addresses) {
    auto connected = co_await errorOr([&]() { return actor.connectTo(address); });
    KJ_IF_MAYBE(e, connected.error()) {
      lastFailure = kj::mv(*e);
      continue;
    }
    Peer* peer = *connected;
    if (peer->remote().uuid == entry.uuid) co_return peer;
    // The address now belongs to another actor (the registered one died, the port was reused).
    lastFailure = transportClosed(kj::str("the actor at ", address, " is ",
                                          peer->remote().toString(), ", not ", entry.toString()));
  }
  KJ_IF_MAYBE(e, lastFailure) {
    kj::throwFatalException(transportClosed(
        kj::str("cannot reach ", entry.toString(), ": ", e->getDescription())));
  }
  kj::throwFatalException(transportClosed(kj::str(entry.toString(), " has no address")));
}

namespace {

// The first of `entries` we can open a channel to (stale entries of dead actors are skipped).
Co<kj::Maybe<PortalHandle>> firstReachable(Actor& actor,
                                           kj::ArrayPtr<const RegisteredActor> entries,
                                           kj::ArrayPtr<const kj::byte> skip) {
  for (auto& entry : entries) {
    if (entry.uuid == skip) continue;
    auto connected = co_await errorOr([&]() { return connectToActor(actor, entry); });
    KJ_IF_MAYBE(e, connected.error()) {
      if (!isTransportClosed(*e)) kj::throwFatalException(kj::mv(*e));
      HARROW_LOG_DEBUG("skipping an unreachable registry entry", *e);
      continue;
    }
    co_return PortalHandle(**connected);
  }
  co_return nullptr;
}

}  // namespace

Co<kj::Maybe<PortalHandle>> findActorPortal(Actor& actor,  // outlives its tasks (it runs the loop)
                                            kj::StringPtr nameParam) {
  auto name = kj::heapString(nameParam);
  RegistryBackend& registry = Discovery::of(actor).backend();
  // One round trip: the registry's pick. Only if that actor cannot be reached (it died a moment
  // ago and the registry has not noticed yet) do we ask for the others.
  kj::Maybe<RegisteredActor> found = co_await registry.find(name);
  RegisteredActor first;
  KJ_IF_MAYBE(f, found) {
    first = kj::mv(*f);
  } else {
    co_return nullptr;
  }
  KJ_IF_MAYBE (portal, co_await firstReachable(actor, kj::arrayPtr(&first, 1), nullptr)) {
    co_return kj::mv(*portal);
  }
  auto all = co_await registry.query(name);
  co_return co_await firstReachable(actor, all, first.uuid);
}

Co<PortalHandle> waitForActorPortal(Actor& actor,  // outlives its tasks (it runs the loop)
                                    kj::StringPtr nameParam) {
  auto name = kj::heapString(nameParam);
  RegistryBackend& registry = Discovery::of(actor).backend();
  for (;;) {
    auto entry = co_await registry.waitFor(name);
    KJ_IF_MAYBE (portal, co_await firstReachable(actor, kj::arrayPtr(&entry, 1), nullptr)) {
      co_return kj::mv(*portal);
    }
    // It registered and died at once: wait for its stale entry to go, then for the next one.
    co_await registry.waitForDeparture(entry.uuid);
  }
}

Co<PortalHandle> rootPortal(Actor& actor) {
  kj::String address;
  kj::Maybe<kj::StringPtr> known;
  KJ_IF_MAYBE(discovery, actor.attachment<Discovery>()) known = discovery->rootAddress();
  KJ_IF_MAYBE(root, known) {
    address = kj::heapString(*root);
  } else {
    kj::throwFatalException(makeError(ErrorKind::NO_ROOT, kj::str(
        "actor ", actor.identity().name,
        " does not know its root's address (no discovery settings)")));
  }
  co_return PortalHandle(*co_await actor.connectTo(address));
}

Co<Departure> waitForDeparture(Actor& actor, kj::ArrayPtr<const kj::byte> uuid) {
  co_return co_await Discovery::of(actor).backend().waitForDeparture(uuid);
}

}  // namespace harrow
