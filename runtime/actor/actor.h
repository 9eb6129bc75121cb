// Actor: the runtime of one process — its identity, the servers it runs, and the service
// nursery in which every incoming task runs (tractor: Actor, with its "service nursery").

#pragma once

#include <harrow/actor/log.h>
#include <harrow/co/cancel_scope.h>
#include <harrow/engine/peer.h>
#include <harrow/ipc/transport.h>

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/function.h>
#include <kj/map.h>

#include <type_traits>
#include <typeinfo>

namespace harrow {

// The implementations a program can run in its actors, registered explicitly by name (no
// static-initialisation magic), each with the actor interface it serves. A child process is told
// which one to run.
//
//   impls.add<CounterImpl>("counter");
//   co_await an.startActor<CounterActor>("c1", "counter");  // checked at spawn: serves Counter?
//   co_await an.startActor<CounterImpl>("c2");              // by type: cannot be mismatched
class Implementations {
public:
  // The interface an implementation serves, as recorded by add().
  struct Served {
    uint64_t interfaceId = 0;  // 0: not known (a hand-written ActorServer without `Interface`)
    kj::StringPtr interfaceName;
  };

  template <typename Impl, typename... Args>
  void add(kj::StringPtr name, Args... args) {
    static_assert(std::is_base_of_v<ActorServer, Impl>,
                  "an implementation derives from a generated FooActor::Server");
    Served served;
    if constexpr (requires { Impl::Interface::INTERFACE_ID; }) {
      served = {Impl::Interface::INTERFACE_ID, Impl::Interface::NAME};
    }
    Entry entry{[args...]() mutable -> kj::Own<ActorServer> { return kj::heap<Impl>(args...); },
                served, typeKey<Impl>()};
    entries.upsert(kj::heapString(name), kj::mv(entry),
                   [](Entry& existing, Entry&& replacement) { existing = kj::mv(replacement); });
  }

  bool has(kj::StringPtr name) const { return entries.find(name) != nullptr; }
  // Throws, naming the registered implementations, for an unknown name.
  kj::Own<ActorServer> create(kj::StringPtr name);
  // "a, b, c": the registered names.
  kj::String names() const;
  // What `name` serves; throws like create() for an unknown name.
  Served served(kj::StringPtr name) const;
  // The name `Impl` was registered under (the first, if several); throws if it was not.
  template <typename Impl>
  kj::StringPtr nameOf() const { return nameOfType(typeKey<Impl>(), typeid(Impl).name()); }

private:
  struct Entry {
    kj::Function<kj::Own<ActorServer>()> factory;
    Served served;
    const void* type;
  };
  kj::HashMap<kj::String, Entry> entries;

  // One address per type, without RTTI comparisons across shared objects.
  template <typename T>
  static const void* typeKey() {
    static const char key = 0;
    return &key;
  }
  kj::StringPtr nameOfType(const void* type, const char* typeName) const;
  [[noreturn]] void unknown(kj::StringPtr name) const;
};

// ---------------------------------------------------------------------------------------------
// The channel server.
//
// An actor with channel-server options listens on its bind addresses and accepts channels from any
// actor of its tree (the handshake, proving the tree secret, within the handshake timeout; then the
// same protocol engine as every channel). It also keeps a cache of outbound channels by address, so
// a portal to an actor found by name stays valid for as long as its channel lives. Finding actors
// by name (the registry) is the discovery layer's (<harrow/discovery/discovery.h>), attached to the
// actor as an ActorAttachment; this layer knows no registry.
//
// Defaults (harrow::main): every actor's own listen address is an abstract Unix socket
// (unix:@harrow-NAME-XXXXXXXX, no file to clean up). --harrow-transport=tcp|unix|unix-abstract or
// HARROW_TRANSPORT picks the kind for the root and the children it spawns; `unix` makes socket
// files in runtimeDirectory(), which their listeners remove on exit (a stale file left by a crash
// is replaced, never in the way). The handshake timeout: 5 s, or HARROW_HANDSHAKE_TIMEOUT_MS.
//
// Robustness: a connection that is dropped before the hello exchange (a port scanner's
// connect-and-drop), sends garbage, fails authentication, or stays silent past the handshake
// timeout is logged at debug level and closed (the first failed authentication also at warning
// level, so that a wrong cookie is noticed); the actor does not notice otherwise.

enum class TransportKind { TCP, UNIX, UNIX_ABSTRACT };

// The directory for harrow's Unix socket files and the default cookie: $XDG_RUNTIME_DIR/harrow if
// XDG_RUNTIME_DIR is set, else /tmp/harrow-<euid>; created (mode 0700) if missing. Checked on
// every call, through a descriptor opened O_DIRECTORY|O_NOFOLLOW: a directory of another user (in
// /tmp anyone can create that name first), a symbolic link, or one group or others may enter is
// refused with harrow.UnsafeFile naming it, its owner or mode, and what to do. Never worked around
// with a directory elsewhere: programs of one user meet through this one (docs/PROTOCOL.md, "Threat
// model").
kj::String runtimeDirectory();

// A fresh listen address of `kind` for an actor named `name`: tcp:127.0.0.1:0 (an ephemeral
// port), unix:<runtimeDirectory()>/<name>-<random>.sock or unix:@harrow-<name>-<random>.
kj::String newBindAddress(TransportKind kind, kj::StringPtr name);

// "tcp", "unix" or "unix-abstract"; throws for anything else.
TransportKind parseTransportKind(kj::StringPtr text);

// The kind of a parsed address ("unix:/path" is UNIX, "unix:@name" UNIX_ABSTRACT).
TransportKind transportKindOf(kj::StringPtr address);

// HARROW_HANDSHAKE_TIMEOUT_MS, or 5 s.
kj::Duration handshakeTimeoutFromEnvironment();

struct ChannelServerOptions {
  // Where this actor accepts channels from other actors. Empty: it accepts none (it can still
  // connect out).
  kj::Vector<kj::String> bindAddresses;

  // The kind of listen address this actor gives each child it spawns.
  TransportKind childTransport = TransportKind::UNIX_ABSTRACT;

  // An incoming channel must finish the hello exchange within this, or it is cut off. Also bounds
  // connecting out (connect + hello).
  kj::Duration handshakeTimeout = 5 * kj::SECONDS;

  // At most this many connections per listener may be in the handshake (not yet authenticated)
  // at once: a new one beyond it drops the oldest, so idle or slow connections (a flood) cannot
  // hold every descriptor while a legitimate client, which finishes its handshake in a round
  // trip or two, still gets through (docs/PROTOCOL.md, "Threat model").
  size_t maxUnauthenticated = 64;
};

class Actor;

// Something that runs beside an actor while it serves: started once the actor's channel server
// listens, before the actor's body runs (so a child is findable before it serves its parent's
// first message), and stopped, shielded, after the actor's tasks have ended and before its
// channels close. Discovery (<harrow/discovery/discovery.h>) is one.
class ActorAttachment {
public:
  virtual ~ActorAttachment() noexcept(false) = default;
  virtual Co<void> start() = 0;
  virtual Co<void> stop() = 0;
  // What a child spawned by this actor needs from this attachment, into its spawn spec.
  virtual void fillSpawnSpec(wire::SpawnSpec::Builder spec) { (void)spec; }
  // A child on another host (ssh, Slurm, harrow-node), after fillSpawnSpec and once this host's
  // own addresses are gone from `spec`: what it needs to reach this tree from there, through this
  // host's address `homeAddress` (an IP the child's host reaches us at).
  virtual Co<void> fillRemoteSpawnSpec(wire::SpawnSpec::Builder spec, kj::StringPtr homeAddress) {
    (void)spec;
    (void)homeAddress;
    co_return;
  }
  // An incoming task of the actor failed with `error` (PeerHost::taskFailed).
  virtual void taskFailed(const kj::Exception& error) { (void)error; }
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
  kj::Timer& timer() override { return ioContext.provider->getTimer(); }
  kj::UnixEventPort& eventPort() { return ioContext.unixEventPort; }
  // Options for this actor's channels: its event port, so sockets take the fd fast path.
  ChannelOptions channelOptions() {
    ChannelOptions options;
    options.eventPort = eventPort();
    return options;
  }

  void addServer(kj::Own<ActorServer> server);
  // Every server this actor runs, introspection's included (<harrow/actor/introspect.h>: every
  // actor serves it from the start).
  void forEachServer(kj::FunctionParam<void(ActorServer&)> fn) {
    for (auto& entry : servers) fn(*entry.value);
  }

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

  // How long this actor's parent waits after cancel-actor before it kills it (the spawn spec's
  // gracePeriodNanos), if it said. Actor nurseries give children at most 3/4 of it, so that
  // grace periods nest (docs/PROTOCOL.md, "Cancelling an actor").
  kj::Maybe<kj::Duration> gracePeriod() const { return grace; }
  void setGracePeriod(kj::Duration period) { grace = period; }

  // ---- the channel server and attachments (see ChannelServerOptions above) ----

  // Before serve(): accept channels on `options.bindAddresses`. Without it the actor accepts
  // none (it can still connect out).
  void setChannelServer(ChannelServerOptions options);
  kj::Maybe<const ChannelServerOptions&> channelServer() const { return serverOptions; }

  // Before serve(): `attachment` runs beside the actor (ActorAttachment above), owned by it.
  void attach(kj::Own<ActorAttachment> attachment);
  // The attachment of type T, if one is attached.
  template <typename T>
  kj::Maybe<T&> attachment() {
    for (auto& a : attachments) {
      if (auto* t = dynamic_cast<T*>(a.get())) return *t;
    }
    return nullptr;
  }

  // While serving: the addresses this actor accepts channels on, as bound (real ports).
  kj::ArrayPtr<const kj::String> addresses() const { return boundAddresses; }

  // While serving: accept channels at `address` too (not one of addresses(): e.g. the registry's
  // well-known address). Returns the address as bound.
  Co<kj::String> listen(kj::StringPtr address);

  // An open channel to the actor at `address`: a cached one if it is still open, else a new one
  // (connect + hello within the handshake timeout), served until it ends or the actor's teardown.
  // The Peer stays valid (if closed, calls on it fail with its error) until serve() returns.
  // Throws TransportClosed if nobody is there. Only while serve() runs.
  Co<Peer*> connectTo(kj::StringPtr address);
  // The Peer of the open outbound channel to `address`, if there is one (never connects).
  kj::Maybe<Peer&> outboundPeer(kj::StringPtr address);

  void removeServer(uint64_t interfaceId) { servers.erase(interfaceId); }

  // The secret this actor's tree shares (<harrow/engine/auth.h>): every channel but the one to
  // its parent or children is authenticated with it. Until set, a random secret shared by the
  // actors of this process (so one process's actors meet, nobody else's). harrow::main sets the
  // root's from the cookie file (<harrow/actor/cookie.h>) and a child's from its spawn spec;
  // fillSpawnSpec passes it on. Before serve().
  void setTreeSecret(TreeSecret secret) { sharedSecret = kj::mv(secret); }

  // For ActorNursery::spawn: a child's spawn spec gets the tree secret, its bind address (of this
  // actor's child transport kind) and whatever the attachments add. Fills nothing else for an
  // actor without a channel server.
  void fillSpawnSpec(wire::SpawnSpec::Builder spec, kj::StringPtr childName);
  // ... and for a child on another host, what the attachments add for it
  // (ActorAttachment::fillRemoteSpawnSpec).
  Co<void> fillRemoteSpawnSpec(wire::SpawnSpec::Builder spec, kj::StringPtr homeAddress);

  // PeerHost
  const ActorIdentity& identity() const override { return id; }
  const TreeSecret& treeSecret() const override { return sharedSecret; }
  void authenticationFailed(const kj::Exception& why) override;
  kj::Maybe<ActorServer&> findServer(uint64_t interfaceId) override;
  void controlMessage(Peer& peer, wire::Message::Reader message) override;
  // None once cancel-actor has come: a start behind it in the same read is refused at once, not
  // run in the service nursery before the cancellation reaches it (Peer::serve() routes the
  // frames it has buffered without a loop turn between them).
  kj::Maybe<TaskNursery&> serviceNursery() override {
    if (cancelRequested) return nullptr;
    return service;
  }
  void taskFailed(const kj::Exception& error) override {
    for (auto& attachment : attachments) attachment->taskFailed(error);
  }

private:
  struct Outbound;

  kj::AsyncIoContext& ioContext;
  // The loop's deadlines on its timer, behind one timerfd; destroyed after everything else the
  // actor owns, so the scopes they hold leave it first.
  DeadlineQueue deadlines{ioContext.unixEventPort};
  ActorIdentity id;
  kj::Maybe<Implementations&> impls;
  kj::Vector<kj::Function<void()>> exitCallbacks;
  kj::HashMap<uint64_t, kj::Own<ActorServer>> servers;
  kj::Maybe<TaskNursery&> service;
  kj::Maybe<Peer&> requester;
  bool cancelRequested = false;
  kj::Maybe<kj::Duration> grace;
  kj::Own<kj::PromiseFulfiller<void>> cancelFulfiller;
  kj::ForkedPromise<void> cancelled;
  TreeSecret sharedSecret;
  bool warnedAboutAuthentication = false;
  bool warnedAboutCancel = false;

  // The channel server.
  kj::Maybe<ChannelServerOptions> serverOptions;
  kj::Vector<kj::Own<ActorAttachment>> attachments;
  kj::Vector<kj::String> boundAddresses;
  kj::Maybe<TaskNursery&> channelTasks;  // accept loops, incoming and outbound channels
  kj::Vector<kj::Own<Outbound>> outbound;  // every outbound channel opened while serving
  kj::HashMap<kj::String, Outbound*> outboundByAddress;  // the open one to use, per address
  struct IncomingCount;
  size_t liveIncoming = 0;  // incoming channels being served (or handshaking)
  bool trimArmed = false;   // an incoming channel ended: memory goes back to the system soon
  kj::Promise<void> trimLater = kj::READY_NOW;
  kj::TimePoint lastTrim = kj::origin<kj::TimePoint>();
  void incomingEnded();
  void trimMemory();

  Co<void> startAttachments();
  Co<void> stopAttachments();
  Co<kj::String> bind(kj::StringPtr address);
  class Handshaking;
  Co<void> acceptLoop(Listener& listener);
  Co<void> serveIncoming(kj::Own<Channel> channel, kj::Own<Handshaking> handshaking);
  Co<void> serveOutbound(Outbound& connection);
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
