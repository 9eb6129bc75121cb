// Finding actors by name (tractor: find_actor, wait_for_actor, query_actor, get_registry).
//
//   KJ_IF_MAYBE(counter, co_await harrow::findActor<CounterActor>("counter-1")) {
//     co_await counter->add(5);
//   }
//   CounterActor::Portal late = co_await harrow::waitForActor<CounterActor>("counter-2");
//   for (auto& entry : co_await harrow::queryActor("worker")) ...   // every "worker", with addresses
//
// Each actor registers itself with its tree's registry when it starts serving (the Discovery
// attachment below, set up by setDiscovery()); these functions ask that registry and then open a channel to the
// actor found (or reuse the open one: the current actor keeps one outbound channel per address).
// A lookup is one round trip to the registry, plus, the first time, a connect and hello exchange
// with the actor found.
//
// Portals returned here refer to a channel the current actor owns: they stay valid until the
// actor's serve() ends; once the channel is lost, calls through them fail with TransportClosed.
// A registry that has gone away (its program exited) is a TransportClosed naming the registry's
// address, from every function here: never a hang.
//
// The registry is a registry actor (registry.h: one host) or an etcd cluster (etcd.h: a registry
// address etcd://HOST:PORT[,HOST:PORT...]/PREFIX); the functions here work the same with both
// (backend.h). One difference: the registry actor drops a killed actor's entry as soon as its
// channel ends, etcd once its lease's TTL has run out (meanwhile lookups skip it: it cannot be
// reached).
//
// The functions without an Actor argument use harrow::currentActor().

#pragma once

#include <harrow/registry.capnp.harrow.h>
#include <harrow/actor/actor.h>
#include <harrow/discovery/backend.h>

#include <kj/map.h>

namespace harrow {

using registry::RegistryActor;

// ---------------------------------------------------------------------------------------------
// Discovery settings (docs/PROTOCOL.md, "The registry and discovery").
//
// An actor with discovery runs a channel server (ChannelServerOptions in <harrow/actor/actor.h>)
// and registers itself with the tree's registry when it starts serving, deregistering on teardown.
//
// Defaults (harrow::main): the registry is defaultRegistryAddress(), a Unix socket in this user's
// private runtime directory (unix:<runtimeDirectory()>/registry.sock), overridden by
// --harrow-registry=ADDR or HARROW_REGISTRY=ADDR (any address form, e.g. unix:@harrow-registry,
// tcp:127.0.0.1:1616, tcp:127.0.0.1:0 for an ephemeral port), or "none" to run without one. TCP
// only when an address is given: a fixed port on loopback is there for any local user to take
// first (tractor's arbiter port 1616 was harrow's default), and a root that connected to it
// would prove itself to whoever listens there; the runtime directory (0700, checked) leaves no
// one else a place to listen. The root hosts the
// registry there unless a live registry already answers at that address (a handshake probe, see
// below); then it joins that one. Children receive the registry and root addresses in their spawn
// spec.
//
// The probe: a root that may host the registry first connects to the registry address, exchanges
// hellos and calls Registry.info (never a bare connect-and-drop). An answer means "join"; a
// refused connection means "nobody is there: bind it" (and if that bind loses a race, probe
// again); anything else (no harrow peer, a harrow actor that is not a registry) is an error.
//
// An etcd address (etcd://..., etcd.h) is neither probed nor hosted: every actor of the tree
// registers in etcd itself, under a lease it keeps alive, and the children get the same address.

// unix:<runtimeDirectory()>/registry.sock (harrow.UnsafeFile if that directory is not safely this
// user's: <harrow/actor/actor.h>).
kj::String defaultRegistryAddress();

struct DiscoveryOptions {
  // Where this actor accepts channels from other actors. Empty: it accepts none (it can still
  // connect out, find and call others).
  kj::Vector<kj::String> bindAddresses;

  // The tree's registry; empty: none (the actor neither registers nor finds others by name).
  kj::String registryAddress;

  // Root actors: host the registry at registryAddress unless a live one answers the probe there.
  bool mayHostRegistry = false;

  // Whether failing to reach (or host) the registry at startup is an error (true) or only logged
  // (false: the actor runs without a registry).
  bool registryRequired = true;

  // Whether this actor is the root of its tree (its own address is then the root address).
  bool isRoot = false;

  // The root of the tree, for a child (from its spawn spec).
  kj::String rootAddress;

  // The kind of listen address this actor gives each child it spawns.
  TransportKind childTransport = TransportKind::UNIX_ABSTRACT;

  // An incoming channel must finish the hello exchange within this, or it is cut off. Also bounds
  // connecting out (connect + hello) and the registry calls made at startup.
  kj::Duration handshakeTimeout = 5 * kj::SECONDS;

  // Bounds the deregistration at teardown (the registry may be gone).
  kj::Duration deregisterTimeout = 1 * kj::SECONDS;

  // The root defaults described above, from the environment (HARROW_REGISTRY, HARROW_TRANSPORT,
  // HARROW_HANDSHAKE_TIMEOUT_MS); `name` names the root's socket.
  static DiscoveryOptions forRoot(kj::StringPtr name);
  // A child's, from the spawn spec its parent sent; nullptr if the spec has no discovery fields
  // (a parent without discovery settings): the child then has none either.
  static kj::Maybe<DiscoveryOptions> forChild(wire::SpawnSpec::Reader spec);
};

// Before actor.serve(): give `actor` a channel server on options.bindAddresses and attach a
// Discovery that finds or hosts the registry and registers the actor.
void setDiscovery(Actor& actor, DiscoveryOptions options);

// The registry side of an actor (an ActorAttachment): finds or hosts the tree's registry when the
// actor starts serving, registers the actor there, and deregisters it on teardown.
class Discovery final : public ActorAttachment {
public:
  Discovery(Actor& actor, DiscoveryOptions options);
  KJ_DISALLOW_COPY(Discovery);

  // The actor's Discovery; throws harrow.NoRegistry naming the actor if it has none.
  static Discovery& of(Actor& actor);

  const DiscoveryOptions& options() const { return opts; }
  // The registry this actor uses (as bound, if it hosts it), if any.
  kj::Maybe<kj::StringPtr> registryAddress() const;
  bool hostsRegistry() const { return registryHosted; }
  // The root actor's address, if known (a root's own first address).
  kj::Maybe<kj::StringPtr> rootAddress() const;

  // The registry actor, on the channel to it (actor.connectTo(registryAddress())); a clear
  // TransportClosed naming the registry if it cannot be reached; harrow.NoRegistry if this actor
  // has none (or its registry is etcd, which is no actor).
  Co<RegistryActor::Portal> registryPortal();

  // Where lookups go (backend.h): the registry actor or etcd. harrow.NoRegistry if this actor
  // has none (no registry address, or it could not be reached at startup).
  RegistryBackend& backend();
  // Whether the registry is etcd (an etcd:// registry address).
  bool usesEtcd() const { return etcd; }

  // ActorAttachment
  Co<void> start() override;
  Co<void> stop() override;
  void fillSpawnSpec(wire::SpawnSpec::Builder spec) override;
  // A child on another host joins this tree's registry: an etcd or routable TCP address crosses
  // as it is; a registry this actor hosts on a host-local address (the default Unix socket) is
  // exposed on a TCP listener of this actor at `homeAddress` (port chosen by the kernel, once per
  // address; authenticated like every TCP channel: the tree secret's proof, then every frame
  // tagged: docs/PROTOCOL.md, "Frame protection"), which also becomes the child's root address. A registry
  // hosted by another program on this host is not exposed: the child runs without one.
  Co<void> fillRemoteSpawnSpec(wire::SpawnSpec::Builder spec, kj::StringPtr homeAddress) override;

private:
  enum class ProbeResult { REGISTRY, NOBODY, HARROW_NOT_REGISTRY, FOREIGN };

  Actor& actor;
  DiscoveryOptions opts;
  kj::Maybe<kj::String> registryBound;  // the registry address in use (real port if hosted)
  kj::Maybe<kj::String> rootBound;
  bool registryHosted = false;
  bool registered = false;
  bool etcd = false;
  kj::Maybe<kj::Own<RegistryBackend>> backendImpl;
  // TCP addresses this actor listens on besides its bind addresses, registered with them: the
  // registry exposed for remote children (by address of this host), or, for an actor whose
  // registry is on another host, where actors there reach this one.
  kj::HashMap<kj::String, kj::String> exposed;  // home address -> tcp:HOME:PORT as bound
  kj::Vector<kj::String> reachableAt;

  Co<void> setUpRegistry();
  Co<ProbeResult> probeRegistry(kj::StringPtr address, kj::Maybe<kj::Exception>& why);
  Co<void> registerSelf();
  Co<void> listenForOtherHosts();
  kj::Own<RegistryBackend> newRegistryActorBackend();  // lookup.c++
  [[noreturn]] void noRegistry();
};

// Shorthands for Discovery::of(actor)'s, for an actor that may have no discovery: none, false.
kj::Maybe<kj::StringPtr> registryAddress(Actor& actor);
bool hostsRegistry(Actor& actor);

// ---- the untyped forms ----

// The registry of `actor`'s tree, as a typed portal (on the actor's channel to it).
Co<RegistryActor::Portal> registryPortal(Actor& actor);

// Every actor registered under `name` (all, for an empty name), oldest first.
Co<kj::Array<RegisteredActor>> queryActor(Actor& actor, kj::StringPtr name);
Co<kj::Array<RegisteredActor>> queryActor(kj::StringPtr name);

// The untyped forms return a portal's handle on the channel to the actor found (<harrow/typed/
// task.h>): `*handle` is the RawPortal a typed portal is made of (FooActor::Portal(*handle)) or
// callMethod() takes.

// One actor registered under `name`, or nullptr if there is none (or none of them can be
// reached: stale entries of actors that just died are skipped).
Co<kj::Maybe<PortalHandle>> findActorPortal(Actor& actor, kj::StringPtr name);

// Waits until an actor registers under `name`, then opens a channel to it.
Co<PortalHandle> waitForActorPortal(Actor& actor, kj::StringPtr name);

// The Peer of a channel to the actor an entry describes (actor.connectTo()): tries its addresses
// in order and checks that the actor answering has the entry's uuid. Throws TransportClosed if
// none can be reached.
Co<Peer*> connectToActor(Actor& actor, const RegisteredActor& entry);

// The root actor of `actor`'s tree (its own address for the root itself).
Co<PortalHandle> rootPortal(Actor& actor);

// Resolves once the actor with `uuid` has left the registry, saying how: deregistered (an
// orderly teardown), channelLost (it died: the registry saw its channel end) or notRegistered.
Co<Departure> waitForDeparture(Actor& actor, kj::ArrayPtr<const kj::byte> uuid);

// ---- typed forms (Interface: a generated FooActor) ----

// tractor: find_actor. nullptr if no actor is registered under `name`.
template <typename Interface>
Co<kj::Maybe<typename Interface::Portal>> findActor(Actor& actor, kj::StringPtr name) {
  KJ_IF_MAYBE (portal, co_await findActorPortal(actor, name)) {
    co_return typename Interface::Portal(**portal);
  }
  co_return nullptr;
}
template <typename Interface>
Co<kj::Maybe<typename Interface::Portal>> findActor(kj::StringPtr name) {
  return findActor<Interface>(currentActor(), name);
}

// tractor: wait_for_actor. Resolves once an actor registers under `name` (at once if one has).
template <typename Interface>
Co<typename Interface::Portal> waitForActor(Actor& actor, kj::StringPtr name) {
  PortalHandle portal = co_await waitForActorPortal(actor, name);
  co_return typename Interface::Portal(*portal);
}
template <typename Interface>
Co<typename Interface::Portal> waitForActor(kj::StringPtr name) {
  return waitForActor<Interface>(currentActor(), name);
}

// The root actor of the tree, through the interface it serves.
template <typename Interface>
Co<typename Interface::Portal> rootActor(Actor& actor) {
  PortalHandle portal = co_await rootPortal(actor);
  co_return typename Interface::Portal(*portal);
}
template <typename Interface>
Co<typename Interface::Portal> rootActor() {
  return rootActor<Interface>(currentActor());
}

}  // namespace harrow
