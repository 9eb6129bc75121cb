#include <harrow/actor/actor.h>

#include <harrow/actor/registry.h>

#include <kj/debug.h>
#include <kj/encoding.h>

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace harrow {

kj::Own<ActorServer> Implementations::create(kj::StringPtr name) {
  KJ_IF_MAYBE(factory, factories.find(name)) {
    return (*factory)();
  }
  kj::Vector<kj::StringPtr> known;
  for (auto& entry : factories) known.add(entry.key);
  KJ_FAIL_REQUIRE(kj::str("no implementation registered under the name '", name,
                          "'; registered: ", kj::strArray(known, ", ")));
}

namespace {
kj::ForkedPromise<void> newCancelledPromise(kj::Own<kj::PromiseFulfiller<void>>& fulfiller) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  fulfiller = kj::mv(paf.fulfiller);
  return paf.promise.fork();
}
}  // namespace

Actor::Actor(kj::AsyncIoContext& io, ActorIdentity identity,
             kj::Maybe<Implementations&> implementations)
    : ioContext(io), id(kj::mv(identity)), impls(implementations),
      cancelled(newCancelledPromise(cancelFulfiller)) {}

Actor::~Actor() noexcept(false) {
  while (!exitCallbacks.empty()) {
    auto callback = kj::mv(exitCallbacks.back());
    exitCallbacks.removeLast();
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { callback(); })) {
      KJ_LOG(ERROR, "exit callback failed", *e);
    }
  }
}

// One outbound channel (Actor::connectTo).
struct Actor::Outbound {
  kj::String address;
  kj::Own<Peer> peer;
  bool open = true;
};

namespace {
thread_local Actor* current = nullptr;
}  // namespace

Actor& currentActor() {
  KJ_REQUIRE(current != nullptr, "no harrow actor runs on this thread (use harrow::main)");
  return *current;
}

kj::Maybe<Actor&> tryCurrentActor() {
  if (current == nullptr) return nullptr;
  return *current;
}

CurrentActorScope::CurrentActorScope(Actor& actor) : saved(current) { current = &actor; }
CurrentActorScope::~CurrentActorScope() noexcept { current = saved; }

void Actor::addServer(kj::Own<ActorServer> server) {
  uint64_t interfaceId = server->interfaceId();
  servers.upsert(interfaceId, kj::mv(server), [](auto& existing, auto&& replacement) {
    existing = kj::mv(replacement);
  });
}

kj::Maybe<ActorServer&> Actor::findServer(uint64_t interfaceId) {
  KJ_IF_MAYBE(server, servers.find(interfaceId)) {
    return **server;
  }
  return nullptr;
}

Co<void> Actor::serve(kj::Function<kj::Promise<void>()> body) {
  // Two nurseries: the channels (accept loops, every channel's serve loop) outlive the service
  // nursery (the tasks those channels run), so that on teardown the tasks end first, then the
  // actor deregisters over a channel that still works, and only then do the channels close.
  co_await openNursery([&](TaskNursery& channels) -> Co<void> {
    channelTasks = channels;
    KJ_DEFER(channelTasks = nullptr);
    kj::Maybe<kj::Exception> failure;
    try {
      co_await openNursery([&](TaskNursery& nursery) -> Co<void> {
        service = nursery;
        KJ_DEFER(service = nullptr);
        // Bind, find or host the registry, register: before the body, so that a child serves
        // its parent's first message only once it can be found.
        co_await startDiscovery();
        co_await body();
        nursery.cancel();  // the body is done: rpc tasks still running are cancelled
      });
    } catch (...) {
      failure = currentException();
    }
    co_await shielded([&]() { return stopDiscovery(); });
    channels.cancel();
    KJ_IF_MAYBE(e, failure) kj::throwFatalException(kj::mv(*e));
  });
  // Every channel's loop has ended and every task with it: the outbound Peers can go.
  for (auto& connection : outbound) forgetPeer(*connection->peer);
  outboundByAddress.clear();
  outbound.clear();
  boundAddresses.clear();
  registered = false;
}

void Actor::forgetPeer(Peer& peer) {
  // A cancel-actor may come from any peer; one that goes away can no longer be acknowledged.
  KJ_IF_MAYBE(r, requester) {
    if (r == &peer) requester = nullptr;
  }
}

void Actor::cancel() {
  if (cancelRequested) return;
  cancelRequested = true;
  cancelFulfiller->fulfill();
  KJ_IF_MAYBE(s, service) s->cancel();
}

void Actor::controlMessage(Peer& peer, wire::Message::Reader message) {
  switch (message.which()) {
    case wire::Message::CANCEL_ACTOR:
      if (requester == nullptr) requester = peer;
      cancel();
      return;
    case wire::Message::CANCEL_ACTOR_ACK:
      return;  // the supervisor watches the channel close and the process exit
    default:
      peer.sendViolation(0, kj::str("channel-level message ", static_cast<unsigned>(message.which()),
                                    " is not expected now"));
  }
}

// ---------------------------------------------------------------------------------------------
// Discovery: addresses and options

namespace {

kj::Duration handshakeTimeoutFromEnvironment() {
  const char* text = getenv("HARROW_HANDSHAKE_TIMEOUT_MS");
  if (text == nullptr || *text == '\0') return 5 * kj::SECONDS;
  char* end;
  long ms = strtol(text, &end, 10);
  KJ_REQUIRE(*end == '\0' && ms > 0, "HARROW_HANDSHAKE_TIMEOUT_MS must be a positive number", text);
  return ms * kj::MILLISECONDS;
}

kj::String randomHex(size_t bytes) {
  kj::byte buffer[16];
  KJ_ASSERT(bytes <= sizeof(buffer));
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = getrandom(buffer + got, bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    KJ_ASSERT(n > 0, "getrandom() failed", errno);
    got += n;
  }
  return kj::encodeHex(kj::arrayPtr(buffer, bytes));
}

// An actor name as part of a socket name: [A-Za-z0-9._-], at most 32 characters.
kj::String socketSafe(kj::StringPtr name) {
  kj::Vector<char> out;
  for (char c : name) {
    if (out.size() == 32) break;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    out.add(ok ? c : '_');
  }
  if (out.size() == 0) out.addAll(kj::StringPtr("actor"));
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

// Tells a transport failure, a timeout or a remote refusal from one another in a log line.
kj::String describeDrop(const kj::Exception& e) {
  if (isTransportClosed(e)) return kj::str(e.getDescription());
  return kj::str(transportClosed(kj::str("dropped: ", e.getDescription())).getDescription());
}

}  // namespace

kj::String runtimeDirectory() {
  const char* xdg = getenv("XDG_RUNTIME_DIR");
  kj::String dir = (xdg != nullptr && *xdg == '/') ? kj::str(xdg, "/harrow")
                                                   : kj::str("/tmp/harrow-", getuid());
  if (mkdir(dir.cStr(), 0700) != 0 && errno != EEXIST) {
    KJ_FAIL_SYSCALL("mkdir", errno, dir);
  }
  struct stat st;
  KJ_SYSCALL(lstat(dir.cStr(), &st), dir);
  KJ_REQUIRE(S_ISDIR(st.st_mode) && st.st_uid == getuid(),
             "harrow's runtime directory is not a directory of this user", dir);
  return dir;
}

kj::String newBindAddress(TransportKind kind, kj::StringPtr name) {
  switch (kind) {
    case TransportKind::TCP:
      return kj::str("tcp:127.0.0.1:0");
    case TransportKind::UNIX:
      return kj::str("unix:", runtimeDirectory(), "/", socketSafe(name), "-", randomHex(4),
                     ".sock");
    case TransportKind::UNIX_ABSTRACT:
      return kj::str("unix:@harrow-", socketSafe(name), "-", randomHex(4));
  }
  KJ_UNREACHABLE;
}

TransportKind parseTransportKind(kj::StringPtr text) {
  if (text == "tcp") return TransportKind::TCP;
  if (text == "unix") return TransportKind::UNIX;
  if (text == "unix-abstract") return TransportKind::UNIX_ABSTRACT;
  KJ_FAIL_REQUIRE("unknown transport (use tcp, unix or unix-abstract)", text);
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
    options.registryAddress = kj::heapString(DEFAULT_REGISTRY_ADDRESS);
    options.registryRequired = false;
  } else if (kj::StringPtr(registry) == "none") {
    options.registryAddress = nullptr;
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
    switch (Address::parse(options.bindAddresses[0]).kind) {
      case Address::Kind::TCP: options.childTransport = TransportKind::TCP; break;
      case Address::Kind::UNIX: options.childTransport = TransportKind::UNIX; break;
      case Address::Kind::UNIX_ABSTRACT: options.childTransport = TransportKind::UNIX_ABSTRACT; break;
    }
  }
  options.registryAddress = kj::heapString(spec.getRegistryAddress());
  // A child that cannot reach its tree's registry still serves its parent (logged).
  options.registryRequired = false;
  options.rootAddress = kj::heapString(spec.getRootAddress());
  options.handshakeTimeout = handshakeTimeoutFromEnvironment();
  return options;
}

// ---------------------------------------------------------------------------------------------
// Discovery: the channel server, outbound channels, the registry

void Actor::setDiscovery(DiscoveryOptions options) {
  KJ_REQUIRE(channelTasks == nullptr, "setDiscovery() must come before serve()");
  discoveryOptions = kj::mv(options);
}

kj::Maybe<kj::StringPtr> Actor::registryAddress() const {
  KJ_IF_MAYBE(address, registryBound) return address->asPtr();
  return nullptr;
}

kj::Maybe<kj::StringPtr> Actor::rootAddress() const {
  KJ_IF_MAYBE(address, rootBound) return address->asPtr();
  return nullptr;
}

void Actor::fillSpawnSpec(wire::SpawnSpec::Builder spec, kj::StringPtr childName) {
  KJ_IF_MAYBE(options, discoveryOptions) {
    spec.initBindAddresses(1).set(0, newBindAddress(options->childTransport, childName));
    KJ_IF_MAYBE(registry, registryAddress()) spec.setRegistryAddress(*registry);
    KJ_IF_MAYBE(root, rootAddress()) spec.setRootAddress(*root);
  }
}

Co<void> Actor::startDiscovery() {
  DiscoveryOptions* options;
  KJ_IF_MAYBE(o, discoveryOptions) {
    options = o;
  } else {
    co_return;
  }
  for (auto& address : options->bindAddresses) co_await listenOn(address, false);
  if (options->isRoot) {
    if (boundAddresses.size() > 0) rootBound = kj::heapString(boundAddresses[0]);
  } else if (options->rootAddress.size() > 0) {
    rootBound = kj::heapString(options->rootAddress);
  }
  if (options->registryAddress.size() == 0) co_return;

  for (uint attempt = 1;; ++attempt) {
    kj::Maybe<kj::Exception> failure;
    try {
      co_await setUpRegistry();
      co_await registerSelf();
    } catch (...) {
      failure = currentException();
    }
    KJ_IF_MAYBE(e, failure) {
      if (isCancelled(*e)) kj::throwFatalException(kj::mv(*e));
      if (options->mayHostRegistry && !registryHosted && isTransportClosed(*e) && attempt < 3) {
        // The registry we were about to join went away (its program is exiting): decide again.
        KJ_LOG(INFO, "the registry went away while joining it; probing again", *e);
        registryBound = nullptr;
        continue;
      }
      auto why = kj::str("harrow.RegistryUnavailable: ", id.name, " cannot use the registry at ",
                         options->registryAddress, ": ", e->getDescription());
      if (options->registryRequired) {
        kj::throwFatalException(kj::Exception(e->getType(), __FILE__, __LINE__, kj::mv(why)));
      }
      KJ_LOG(INFO, "running without a registry", why);
      if (!registryHosted) registryBound = nullptr;
    }
    break;
  }
  if (options->isRoot && rootBound == nullptr && registryHosted) {
    rootBound = kj::heapString(KJ_ASSERT_NONNULL(registryBound));
  }
}

Co<void> Actor::listenOn(kj::StringPtr address, bool forRegistry) {
  auto listener = co_await Listener::bind(io().provider->getNetwork(), address, channelOptions());
  auto bound = kj::heapString(listener->getAddress());
  HARROW_LOG_DEBUG("accepting channels", bound, forRegistry ? "(registry)" : "");
  if (forRegistry) {
    registryBound = kj::mv(bound);
  } else {
    boundAddresses.add(kj::mv(bound));
  }
  KJ_ASSERT_NONNULL(channelTasks).start([this, listener = kj::mv(listener)]() mutable {
    return acceptLoop(*listener);
  });
}

Co<void> Actor::acceptLoop(Listener& listener) {
  for (;;) {
    kj::Own<Channel> channel;
    kj::Maybe<kj::Exception> failure;
    try {
      channel = co_await listener.accept();
    } catch (...) {
      failure = currentException();
    }
    KJ_IF_MAYBE(e, failure) {
      if (isCancelled(*e)) kj::throwFatalException(kj::mv(*e));
      // E.g. out of file descriptors: the listener itself is fine; try again shortly.
      KJ_LOG(WARNING, "accepting a channel failed", listener.getAddress(), *e);
      co_await timer().afterDelay(100 * kj::MILLISECONDS);
      continue;
    }
    KJ_ASSERT_NONNULL(channelTasks).start([this, channel = kj::mv(channel)]() mutable {
      return serveIncoming(kj::mv(channel));
    });
  }
}

Co<void> Actor::serveIncoming(kj::Own<Channel> channel) {
  kj::Duration timeout = KJ_ASSERT_NONNULL(discoveryOptions).handshakeTimeout;
  kj::Own<Peer> peer;
  kj::Maybe<kj::Exception> failure;
  try {
    co_await failAfter(timer(), timeout, [&]() -> Co<void> {
      peer = co_await handshake(kj::mv(channel), *this, /*initiator=*/false);
    });
  } catch (...) {
    failure = currentException();
  }
  KJ_IF_MAYBE(e, failure) {
    if (isCancelled(*e)) kj::throwFatalException(kj::mv(*e));
    // A port scanner's connect-and-drop, a half-open connection, garbage: not our problem. The
    // channel (owned by the cancelled handshake) is closed already.
    HARROW_LOG_DEBUG("incoming connection dropped before the hello exchange", describeDrop(*e));
    co_return;
  }
  HARROW_LOG_DEBUG("channel accepted", peer->remote().toString());
  try {
    co_await peer->serve();
  } catch (...) {
    failure = currentException();
  }
  // Tasks of this channel have been told it is gone; they refer to the Peer until they unwind.
  co_await uncancellable(peer->whenDrained());
  forgetPeer(*peer);
  KJ_IF_MAYBE(e, failure) {
    if (isCancelled(*e)) kj::throwFatalException(kj::mv(*e));
    if (isTransportClosed(*e)) {
      HARROW_LOG_DEBUG("channel lost", peer->remote().toString(), *e);
    } else {
      KJ_LOG(WARNING, "channel ended", peer->remote().toString(), *e);
    }
  }
}

Co<Peer*> Actor::connectTo(kj::StringPtr addressParam) {
  KJ_IF_MAYBE(existing, outboundByAddress.find(addressParam)) {
    if ((*existing)->open) co_return (*existing)->peer.get();
  }
  KJ_REQUIRE(channelTasks != nullptr, "the actor is not serving: connect from inside serve()");
  kj::Duration timeout = 5 * kj::SECONDS;
  KJ_IF_MAYBE(options, discoveryOptions) timeout = options->handshakeTimeout;
  auto address = kj::heapString(addressParam);
  kj::Own<Peer> peer;
  kj::Maybe<kj::Exception> failure;
  try {
    co_await failAfter(timer(), timeout, [&]() -> Co<void> {
      auto channel = co_await harrow::connect(io().provider->getNetwork(), address, channelOptions());
      peer = co_await handshake(kj::mv(channel), *this, /*initiator=*/true);
    });
  } catch (...) {
    failure = currentException();
  }
  KJ_IF_MAYBE(e, failure) {
    if (isCancelled(*e) || isTransportClosed(*e)) kj::throwFatalException(kj::mv(*e));
    kj::throwFatalException(transportClosed(
        kj::str("no harrow actor answered at ", address, ": ", e->getDescription())));
  }
  // Another task may have connected to the same address meanwhile: both channels stay (portals
  // may use either); new lookups use the newest.
  TaskNursery& tasks = KJ_REQUIRE_NONNULL(channelTasks, "the actor stopped serving");
  auto connection = kj::heap<Outbound>();
  connection->address = kj::mv(address);
  connection->peer = kj::mv(peer);
  Outbound& ref = *connection;
  outbound.add(kj::mv(connection));
  outboundByAddress.upsert(kj::heapString(ref.address), &ref,
                           [](Outbound*& existing, Outbound*&& replacement) {
                             existing = replacement;
                           });
  tasks.start([this, &ref]() { return serveOutbound(ref); });
  co_return ref.peer.get();
}

Co<void> Actor::serveOutbound(Outbound& connection) {
  kj::Maybe<kj::Exception> failure;
  try {
    co_await connection.peer->serve();
  } catch (...) {
    failure = currentException();
  }
  connection.open = false;
  KJ_IF_MAYBE(current, outboundByAddress.find(connection.address)) {
    if (*current == &connection) outboundByAddress.erase(connection.address);
  }
  // The Peer itself stays until serve() returns: portals found through it may still refer to it
  // (their calls fail with its error).
  KJ_IF_MAYBE(e, failure) {
    if (isCancelled(*e)) kj::throwFatalException(kj::mv(*e));
    HARROW_LOG_DEBUG("outbound channel lost", connection.address, *e);
  }
}

Co<Peer*> Actor::registryPeer() {
  kj::String address;
  KJ_IF_MAYBE(r, registryBound) {
    address = kj::heapString(*r);
  } else {
    KJ_FAIL_REQUIRE(kj::str("harrow.NoRegistry: actor ", id.name, " has no registry"));
  }
  kj::Maybe<kj::Exception> failure;
  Peer* peer = nullptr;
  try {
    peer = co_await connectTo(address);
  } catch (...) {
    failure = currentException();
  }
  KJ_IF_MAYBE(e, failure) {
    if (isCancelled(*e)) kj::throwFatalException(kj::mv(*e));
    kj::throwFatalException(transportClosed(
        kj::str("the registry at ", address, " is unreachable: ", e->getDescription())));
  }
  co_return peer;
}

Co<Actor::ProbeResult> Actor::probeRegistry(kj::StringPtr address,
                                            kj::Maybe<kj::Exception>& why) {
  kj::Duration timeout = KJ_ASSERT_NONNULL(discoveryOptions).handshakeTimeout;
  kj::Own<Channel> channel;
  kj::Maybe<kj::Exception> failure;
  try {
    channel = co_await harrow::connect(io().provider->getNetwork(), address, channelOptions());
  } catch (...) {
    failure = currentException();
  }
  KJ_IF_MAYBE(e, failure) {
    if (!isTransportClosed(*e)) kj::throwFatalException(kj::mv(*e));
    why = kj::mv(*e);
    co_return ProbeResult::NOBODY;  // refused: nobody listens there
  }
  // Someone listens. A real exchange tells a registry from anything else: hello both ways, then
  // Registry.info. The channel is closed (EOF) afterwards, like any channel an actor is done with.
  bool handshaken = false;
  try {
    co_await failAfter(timer(), timeout, [&]() -> Co<void> {
      kj::Own<Peer> peer = co_await handshake(kj::mv(channel), *this, /*initiator=*/true);
      handshaken = true;
      co_await openNursery([&](TaskNursery& n) -> Co<void> {
        n.start([&]() -> Co<void> { co_await peer->serve(); });
        co_await RegistryActor::Portal(*peer).info();
        n.cancel();
      });
    });
  } catch (...) {
    failure = currentException();
  }
  KJ_IF_MAYBE(e, failure) {
    if (isCancelled(*e)) kj::throwFatalException(kj::mv(*e));
    bool gone = isTransportClosed(*e);
    why = kj::mv(*e);
    if (gone) co_return ProbeResult::NOBODY;  // it closed on us: going away
    co_return handshaken ? ProbeResult::HARROW_NOT_REGISTRY : ProbeResult::FOREIGN;
  }
  co_return ProbeResult::REGISTRY;
}

Co<void> Actor::setUpRegistry() {
  DiscoveryOptions& options = KJ_ASSERT_NONNULL(discoveryOptions);
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
        KJ_FAIL_REQUIRE(kj::str("harrow.RegistryAddressInUse: something that is not a harrow "
                                "actor listens at ", address, ": ",
                                KJ_ASSERT_NONNULL(why).getDescription()));
      }
      if (result == ProbeResult::HARROW_NOT_REGISTRY) {
        // A harrow actor, but no registry: perhaps one whose registry is shutting down.
        if (attempt >= ATTEMPTS) {
          KJ_FAIL_REQUIRE(kj::str("harrow.RegistryAddressInUse: the harrow actor at ", address,
                                  " serves no registry: ",
                                  KJ_ASSERT_NONNULL(why).getDescription()));
        }
        co_await timer().afterDelay(200 * kj::MILLISECONDS);
        continue;
      }
    }
    // Nobody is there: host it. The server is in place before anyone can connect.
    addServer(kj::heap<RegistryServer>(*this));
    kj::Maybe<kj::Exception> bindError;
    try {
      co_await listenOn(address, /*forRegistry=*/true);
    } catch (...) {
      bindError = currentException();
    }
    KJ_IF_MAYBE(e, bindError) {
      servers.erase(RegistryActor::INTERFACE_ID);
      if (isCancelled(*e) || ephemeral || attempt >= ATTEMPTS) {
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

Co<void> Actor::registerSelf() {
  DiscoveryOptions& options = KJ_ASSERT_NONNULL(discoveryOptions);
  Peer* peer = co_await registryPeer();
  co_await failAfter(timer(), options.handshakeTimeout, [&]() -> Co<void> {
    co_await RegistryActor::Portal(*peer).registerActor([&](auto params) {
      auto entry = params.initEntry();
      entry.setName(id.name);
      entry.setUuid(id.uuid);
      entry.setPid(getpid());
      size_t count = boundAddresses.size() + (registryHosted ? 1 : 0);
      auto addresses = entry.initAddresses(count);
      for (auto i : kj::indices(boundAddresses)) addresses.set(i, boundAddresses[i]);
      if (registryHosted) addresses.set(count - 1, KJ_ASSERT_NONNULL(registryBound));
    });
  });
  registered = true;
}

Co<void> Actor::stopDiscovery() {
  // The registry's host does not deregister from itself: its registry ends with it.
  if (!registered || registryHosted) co_return;
  registered = false;
  kj::StringPtr address = KJ_ASSERT_NONNULL(registryBound);
  Outbound* connection = nullptr;
  KJ_IF_MAYBE(existing, outboundByAddress.find(address)) connection = *existing;
  // No open channel to the registry: it is gone, and our entry with it (or it removes the entry
  // when it sees our channel end). Never connect anew just to say goodbye.
  if (connection == nullptr || !connection->open) co_return;
  Peer& peer = *connection->peer;
  kj::Duration timeout = 1 * kj::SECONDS;
  KJ_IF_MAYBE(options, discoveryOptions) timeout = options->deregisterTimeout;
  kj::Maybe<kj::Exception> failure;
  try {
    bool late = co_await moveOnAfter(timer(), timeout, [&]() -> Co<void> {
      co_await RegistryActor::Portal(peer).deregisterActor(id.uuid);
    });
    if (late) HARROW_LOG_DEBUG("the registry did not answer the deregistration in time", address);
  } catch (...) {
    failure = currentException();
  }
  KJ_IF_MAYBE(e, failure) {
    HARROW_LOG_DEBUG("deregistration failed (the registry removes the entry when our channel ends)",
           address, *e);
  }
}

}  // namespace harrow
