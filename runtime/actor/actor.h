// Actor: the runtime of one process — its identity, the servers it runs, and the service
// nursery in which every incoming task runs (tractor: Actor, with its "service nursery").

#pragma once

#include <harrow/actor/log.h>
#include <harrow/engine/peer.h>
#include <harrow/ipc/transport.h>

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/function.h>
#include <kj/map.h>

namespace harrow {

// The implementations a program can run in its actors, registered explicitly by name (no
// static-initialisation magic). A child process is told which one to run.
class Implementations {
public:
  template <typename Impl, typename... Args>
  void add(kj::StringPtr name, Args... args) {
    factories.insert(kj::heapString(name), [args...]() mutable -> kj::Own<ActorServer> {
      return kj::heap<Impl>(args...);
    });
  }

  bool has(kj::StringPtr name) const { return factories.find(name) != nullptr; }
  // Throws, naming the registered implementations, for an unknown name.
  kj::Own<ActorServer> create(kj::StringPtr name);

private:
  kj::HashMap<kj::String, kj::Function<kj::Own<ActorServer>()>> factories;
};

// ---------------------------------------------------------------------------------------------
// Discovery settings (docs/PROTOCOL.md section 6; runtime/discovery.h is the API on top).
//
// An actor with discovery settings runs a *channel server*: it listens on its bind addresses,
// accepts channels from any actor (hello exchange within the handshake timeout, then the same
// protocol engine as every channel), and registers itself with the tree's registry when it starts
// serving, deregistering on teardown. It also keeps a cache of outbound channels by address, so a
// portal found by name stays valid for as long as its channel lives.
//
// Defaults (harrow::main):
//  - the registry: DEFAULT_REGISTRY_ADDRESS (TCP on loopback, port 1616, tractor's arbiter port),
//    overridden by --harrow-registry=ADDR or HARROW_REGISTRY=ADDR (any address form, e.g.
//    unix:@harrow-registry, unix:/run/user/1000/harrow/registry.sock, tcp:127.0.0.1:0 for an
//    ephemeral port), or "none" to run without one. The root hosts the registry there unless a
//    live registry already answers at that address (a handshake probe, see below); then it joins
//    that one. Children receive the registry and root addresses in their spawn spec.
//  - every actor's own listen address: an abstract Unix socket (unix:@harrow-NAME-XXXXXXXX, no file
//    to clean up). --harrow-transport=tcp|unix|unix-abstract or HARROW_TRANSPORT picks the kind for
//    the root and the children it spawns; `unix` makes socket files in runtimeDirectory(), which
//    their listeners remove on exit (a stale file left by a crash is replaced, never in the way).
//  - the handshake timeout: 5 s, or HARROW_HANDSHAKE_TIMEOUT_MS.
//
// The probe: a root that may host the registry first connects to the registry address, exchanges
// hellos and calls Registry.info (never a bare connect-and-drop). An answer means "join"; a
// refused connection means "nobody is there: bind it" (and if that bind loses a race, probe
// again); anything else (no harrow peer, a harrow actor that is not a registry) is an error.
//
// Robustness of the channel server: a connection that is dropped before the hello exchange (a port
// scanner's connect-and-drop), sends garbage, or stays silent past the handshake timeout is logged
// at debug level as TransportClosed and closed; the actor does not notice otherwise.

enum class TransportKind { TCP, UNIX, UNIX_ABSTRACT };

constexpr uint16_t DEFAULT_REGISTRY_PORT = 1616;
constexpr kj::StringPtr DEFAULT_REGISTRY_ADDRESS = "tcp:127.0.0.1:1616"_kj;

// The directory for harrow's Unix socket files: $XDG_RUNTIME_DIR/harrow if XDG_RUNTIME_DIR is
// set, else /tmp/harrow-<uid>; created (mode 0700) if missing.
kj::String runtimeDirectory();

// A fresh listen address of `kind` for an actor named `name`: tcp:127.0.0.1:0 (an ephemeral
// port), unix:<runtimeDirectory()>/<name>-<random>.sock or unix:@harrow-<name>-<random>.
kj::String newBindAddress(TransportKind kind, kj::StringPtr name);

// "tcp", "unix" or "unix-abstract"; throws for anything else.
TransportKind parseTransportKind(kj::StringPtr text);

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

class Actor final : public PeerHost {
public:
  // `implementations`, if given, are what this program can run in children it spawns.
  Actor(kj::AsyncIoContext& io, ActorIdentity identity,
        kj::Maybe<Implementations&> implementations = nullptr);
  // Runs the exit callbacks (last registered first).
  ~Actor() noexcept(false);
  KJ_DISALLOW_COPY(Actor);

  kj::Maybe<Implementations&> implementations() { return impls; }

  // tractor's lifetime stack: callbacks run when the actor is torn down, last first, after its
  // tasks have ended.
  void atExit(kj::Function<void()> callback) { exitCallbacks.add(kj::mv(callback)); }

  kj::AsyncIoContext& io() { return ioContext; }
  kj::Timer& timer() { return ioContext.provider->getTimer(); }
  kj::UnixEventPort& eventPort() { return ioContext.unixEventPort; }
  // Options for this actor's channels: its event port, so sockets take the fd fast path.
  ChannelOptions channelOptions() {
    ChannelOptions options;
    options.eventPort = eventPort();
    return options;
  }

  void addServer(kj::Own<ActorServer> server);

  // Runs `body` with the service nursery open: incoming tasks from every peer run in it until
  // `body` finishes, then they are cancelled and awaited (rpc tasks go first on teardown).
  Co<void> serve(kj::Function<kj::Promise<void>()> body);

  // tractor: Actor.cancel() — callable from synchronous code. The actor's service scope is
  // cancelled; whoever runs the actor then tears it down.
  void cancel();
  bool cancelCalled() const { return cancelRequested; }
  // Resolves once cancel() was called or a peer sent cancel-actor.
  kj::Promise<void> whenCancelled() { return cancelled.addBranch(); }
  // The peer that asked for the cancel, to acknowledge once teardown is done.
  kj::Maybe<Peer&> cancelRequester() { return requester; }

  // ---- discovery (see DiscoveryOptions above; runtime/discovery.h is the user API) ----

  // Before serve(): run a channel server and use a registry. Without it the actor has neither.
  void setDiscovery(DiscoveryOptions options);
  kj::Maybe<const DiscoveryOptions&> discovery() const { return discoveryOptions; }

  // While serving: the addresses this actor accepts channels on, as bound (real ports).
  kj::ArrayPtr<const kj::String> addresses() const { return boundAddresses; }
  // The registry this actor uses (as bound, if it hosts it), if any.
  kj::Maybe<kj::StringPtr> registryAddress() const;
  bool hostsRegistry() const { return registryHosted; }
  // The root actor's address, if known (a root's own first address).
  kj::Maybe<kj::StringPtr> rootAddress() const;

  // An open channel to the actor at `address`: a cached one if it is still open, else a new one
  // (connect + hello within the handshake timeout), served until it ends or the actor's teardown.
  // The Peer stays valid (if closed, calls on it fail with its error) until serve() returns.
  // Throws TransportClosed if nobody is there. Only while serve() runs.
  Co<Peer*> connectTo(kj::StringPtr address);

  // The channel to the registry (connectTo(registryAddress())); a clear TransportClosed naming
  // the registry if it cannot be reached; FAILED if this actor has no registry.
  Co<Peer*> registryPeer();

  // For ActorNursery::spawn: the discovery fields of a child's spawn spec (its bind address, the
  // registry and root addresses). Fills nothing for an actor without discovery.
  void fillSpawnSpec(wire::SpawnSpec::Builder spec, kj::StringPtr childName);

  // PeerHost
  const ActorIdentity& identity() const override { return id; }
  kj::Maybe<ActorServer&> findServer(uint64_t interfaceId) override;
  void controlMessage(Peer& peer, wire::Message::Reader message) override;
  kj::Maybe<TaskNursery&> serviceNursery() override { return service; }

private:
  struct Outbound;

  kj::AsyncIoContext& ioContext;
  ActorIdentity id;
  kj::Maybe<Implementations&> impls;
  kj::Vector<kj::Function<void()>> exitCallbacks;
  kj::HashMap<uint64_t, kj::Own<ActorServer>> servers;
  kj::Maybe<TaskNursery&> service;
  kj::Maybe<Peer&> requester;
  bool cancelRequested = false;
  kj::Own<kj::PromiseFulfiller<void>> cancelFulfiller;
  kj::ForkedPromise<void> cancelled;

  // Discovery.
  kj::Maybe<DiscoveryOptions> discoveryOptions;
  kj::Vector<kj::String> boundAddresses;
  kj::Maybe<kj::String> registryBound;   // the registry address in use (real port if hosted)
  kj::Maybe<kj::String> rootBound;
  bool registryHosted = false;
  bool registered = false;
  kj::Maybe<TaskNursery&> channelTasks;  // accept loops, incoming and outbound channels
  kj::Vector<kj::Own<Outbound>> outbound;  // every outbound channel opened while serving
  kj::HashMap<kj::String, Outbound*> outboundByAddress;  // the open one to use, per address

  enum class ProbeResult { REGISTRY, NOBODY, HARROW_NOT_REGISTRY, FOREIGN };
  Co<void> startDiscovery();
  Co<void> stopDiscovery();
  Co<void> listenOn(kj::StringPtr address, bool forRegistry);
  Co<void> acceptLoop(Listener& listener);
  Co<void> serveIncoming(kj::Own<Channel> channel);
  Co<void> serveOutbound(Outbound& connection);
  Co<void> setUpRegistry();
  Co<ProbeResult> probeRegistry(kj::StringPtr address, kj::Maybe<kj::Exception>& why);
  Co<void> registerSelf();
  void forgetPeer(Peer& peer);
};

// The actor this thread runs (tractor: current_actor()): set by harrow::main for the root and for
// every child, so a handler can open its own actor nursery or cancel its actor. Throws when no
// actor runs on this thread.
Actor& currentActor();
kj::Maybe<Actor&> tryCurrentActor();

// Makes `actor` the current actor for as long as the guard lives.
class CurrentActorScope {
public:
  explicit CurrentActorScope(Actor& actor);
  ~CurrentActorScope() noexcept;
  KJ_DISALLOW_COPY(CurrentActorScope);

private:
  Actor* saved;
};

}  // namespace harrow
