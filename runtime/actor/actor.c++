#include <harrow/actor/actor.h>
#include <harrow/actor/introspect.h>

#include <kj/debug.h>
#include <kj/encoding.h>
#include <kj/list.h>
#include <kj/refcount.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace harrow {

kj::Own<ActorServer> Implementations::create(kj::StringPtr name) {
  KJ_IF_MAYBE(entry, entries.find(name)) return entry->factory();
  unknown(name);
}

Implementations::Served Implementations::served(kj::StringPtr name) const {
  KJ_IF_MAYBE(entry, entries.find(name)) return entry->served;
  unknown(name);
}

kj::StringPtr Implementations::nameOfType(const void* type, const char* typeName) const {
  for (auto& entry : entries) {
    if (entry.value.type == type) return entry.key;
  }
  kj::throwFatalException(makeError(ErrorKind::SPAWN_FAILED, kj::str(
      "no implementation of type ", typeName, " is registered (Implementations::add<T>(name))")));
}

kj::String Implementations::names() const {
  kj::Vector<kj::StringPtr> known;
  for (auto& entry : entries) known.add(entry.key);
  return kj::strArray(known, ", ");
}

void Implementations::unknown(kj::StringPtr name) const {
  KJ_FAIL_REQUIRE(kj::str("no implementation registered under the name '", name,
                          "'; registered: ", names()));
}

namespace {
kj::ForkedPromise<void> newCancelledPromise(kj::Own<kj::PromiseFulfiller<void>>& fulfiller) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  fulfiller = kj::mv(paf.fulfiller);
  return paf.promise.fork();
}

const TreeSecret& processSecret() {
  static const TreeSecret secret = TreeSecret::random();
  return secret;
}
}  // namespace

Actor::Actor(kj::AsyncIoContext& io, ActorIdentity identity,
             kj::Maybe<Implementations&> implementations)
    : ioContext(io), id(kj::mv(identity)), impls(implementations),
      cancelled(newCancelledPromise(cancelFulfiller)), sharedSecret(processSecret().clone()) {
  addServer(newIntrospectServer(*this));
}

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
    co_await finally([&]() {
      return openNursery([&](TaskNursery& nursery) -> Co<void> {
        service = nursery;
        KJ_DEFER(service = nullptr);
        // Listen, then start the attachments (discovery registers): before the body, so that a
        // child serves its parent's first message only once it can be found.
        co_await startAttachments();
        co_await body();
        nursery.cancel();  // the body is done: rpc tasks still running are cancelled
      });
    }, [&]() -> Co<void> {
      co_await stopAttachments();
      channels.cancel();
    });
  });
  // Every channel's loop has ended and every task with it: the outbound Peers can go.
  for (auto& connection : outbound) forgetPeer(*connection->peer);
  outboundByAddress.clear();
  outbound.clear();
  boundAddresses.clear();
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
      // From the parent or a peer that proved the tree's secret; never from a child (harrow's
      // children do not cancel their parent: that would be a bug or a compromised child).
      if (peer.trust() == PeerTrust::CHILD) {
        if (!warnedAboutCancel) {
          warnedAboutCancel = true;
          KJ_LOG(WARNING, "refused cancelActor from a child", peer.remote().toString());
        }
        peer.refuseControlMessage(message, "is honoured from the parent or an authenticated peer");
        return;
      }
      if (requester == nullptr) requester = peer;
      cancel();
      return;
    case wire::Message::CANCEL_ACTOR_ACK:
      return;  // the supervisor watches the channel close and the process exit
    default: peer.refuseControlMessage(message, "is not expected on its own (call id 0) now");
  }
}

void Actor::authenticationFailed(const kj::Exception& why) {
  // Once per actor, so that a wrong cookie is noticed; a stranger knocking again and again
  // fills no log (each refusal is also logged at debug level, as a dropped connection).
  if (warnedAboutAuthentication) return;
  warnedAboutAuthentication = true;
  KJ_LOG(WARNING, "refused a peer that failed authentication (further ones at debug level)",
         why.getDescription());
}

// ---------------------------------------------------------------------------------------------
// The channel server: addresses and options

namespace {

}  // namespace

kj::Duration handshakeTimeoutFromEnvironment() {
  const char* text = getenv("HARROW_HANDSHAKE_TIMEOUT_MS");
  if (text == nullptr || *text == '\0') return 5 * kj::SECONDS;
  char* end;
  long ms = strtol(text, &end, 10);
  KJ_REQUIRE(*end == '\0' && ms > 0, "HARROW_HANDSHAKE_TIMEOUT_MS must be a positive number", text);
  return ms * kj::MILLISECONDS;
}

namespace {

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
                                                   : kj::str("/tmp/harrow-", geteuid());
  auto refuse = [&](kj::StringPtr what, kj::StringPtr remedy) {
    kj::throwFatalException(makeError(ErrorKind::UNSAFE_FILE,
        kj::str("harrow's runtime directory ", dir, " ", what, ": refused (", remedy, ")")));
  };
  constexpr kj::StringPtr ELSEWHERE =
      "set XDG_RUNTIME_DIR to a private directory of yours, or give --harrow-cookie and "
      "--harrow-registry explicitly"_kj;
  if (mkdir(dir.cStr(), 0700) != 0 && errno != EEXIST) {
    refuse(kj::str("cannot be created: ", strerror(errno)), ELSEWHERE);
  }
  // Opened without following a link, then checked through the descriptor: what is checked is
  // what is there, and a directory of ours with mode 0700 in a sticky /tmp cannot be swapped by
  // anyone else afterwards.
  int fd = open(dir.cStr(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    struct stat st;
    if (lstat(dir.cStr(), &st) == 0 && S_ISLNK(st.st_mode)) {
      refuse(kj::str("is a symbolic link (owned by uid ", st.st_uid, ")"),
             kj::str("remove it, or ", ELSEWHERE));
    }
    if (error == ENOTDIR) refuse("is not a directory", kj::str("remove it, or ", ELSEWHERE));
    refuse(kj::str("cannot be opened: ", strerror(error)), ELSEWHERE);
  }
  KJ_DEFER(close(fd));
  struct stat st;
  KJ_SYSCALL(fstat(fd, &st), dir);
  if (st.st_uid != geteuid()) {
    // Another user made it first (in /tmp anyone can): using it would hand them our sockets and
    // cookie. Not silently worked around either: programs of this user meet through this one
    // directory, and a private directory elsewhere would quietly split them.
    struct passwd* owner = getpwuid(st.st_uid);
    refuse(kj::str("belongs to uid ", st.st_uid,
                   owner != nullptr ? kj::str(" (", owner->pw_name, ")") : kj::str(),
                   ", not to this user (uid ", geteuid(), "): another user created it first"),
           kj::str("have it removed, as its owner or root: rm -r ", dir, "; or ", ELSEWHERE));
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    snprintf(mode, sizeof(mode), "%04o", unsigned(st.st_mode & 07777));
    refuse(kj::str("has mode ", mode, ": other users may reach the sockets and cookie in it"),
           kj::str("chmod 700 ", dir));
  }
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

// ---------------------------------------------------------------------------------------------
// The channel server, outbound channels, attachments

TransportKind transportKindOf(kj::StringPtr address) {
  switch (Address::parse(address).kind) {
    case Address::Kind::TCP: return TransportKind::TCP;
    case Address::Kind::UNIX: return TransportKind::UNIX;
    case Address::Kind::UNIX_ABSTRACT: return TransportKind::UNIX_ABSTRACT;
  }
  KJ_UNREACHABLE;
}

void Actor::setChannelServer(ChannelServerOptions options) {
  KJ_REQUIRE(channelTasks == nullptr, "setChannelServer() must come before serve()");
  serverOptions = kj::mv(options);
}

void Actor::attach(kj::Own<ActorAttachment> attachment) {
  KJ_REQUIRE(channelTasks == nullptr, "attach() must come before serve()");
  attachments.add(kj::mv(attachment));
}

void Actor::fillSpawnSpec(wire::SpawnSpec::Builder spec, kj::StringPtr childName) {
  auto secret = treeSecret().bytes();
  spec.setTreeSecret(capnp::Data::Reader(secret.begin(), secret.size()));
  KJ_IF_MAYBE(options, serverOptions) {
    spec.initBindAddresses(1).set(0, newBindAddress(options->childTransport, childName));
  }
  for (auto& attachment : attachments) attachment->fillSpawnSpec(spec);
}

Co<void> Actor::fillRemoteSpawnSpec(wire::SpawnSpec::Builder spec, kj::StringPtr homeAddress) {
  for (auto& attachment : attachments) co_await attachment->fillRemoteSpawnSpec(spec, homeAddress);
}

Co<void> Actor::startAttachments() {
  KJ_IF_MAYBE(options, serverOptions) {
    for (auto& address : options->bindAddresses) boundAddresses.add(co_await bind(address));
  }
  for (auto& attachment : attachments) co_await attachment->start();
}

Co<void> Actor::stopAttachments() {
  // Last started, first stopped; one failing does not keep the others from stopping.
  for (size_t i = attachments.size(); i > 0; --i) {
    KJ_IF_MAYBE(e, co_await errorOf([&]() { return attachments[i - 1]->stop(); })) {
      KJ_LOG(WARNING, "stopping an actor attachment failed", *e);
    }
  }
}

Co<kj::String> Actor::listen(kj::StringPtr address) {
  KJ_REQUIRE(channelTasks != nullptr, "the actor is not serving: listen from inside serve()");
  co_return co_await bind(address);
}

kj::Maybe<Peer&> Actor::outboundPeer(kj::StringPtr address) {
  KJ_IF_MAYBE(existing, outboundByAddress.find(address)) {
    if ((*existing)->open) return *(*existing)->peer;
  }
  return nullptr;
}

Co<kj::String> Actor::bind(kj::StringPtr address) {
  auto listener = co_await Listener::bind(io().provider->getNetwork(), address, channelOptions());
  auto bound = kj::heapString(listener->getAddress());
  HARROW_LOG_DEBUG("accepting channels", bound);
  KJ_ASSERT_NONNULL(channelTasks).startSoon([this, listener = kj::mv(listener)]() mutable {
    return acceptLoop(*listener);
  });
  co_return bound;
}

// The connections of one listener that are still in the handshake, oldest first: admitting one
// beyond ChannelServerOptions::maxUnauthenticated cancels the oldest.
class Actor::Handshaking final : public kj::Refcounted {
public:
  explicit Handshaking(size_t limit) : limit(kj::max(limit, size_t(1))) {}

  struct Entry {
    CancelScope& scope;
    kj::ListLink<Entry> link;
  };
  void admit(Entry& entry) {
    if (entries.size() >= limit) {
      Entry& oldest = *entries.begin();
      entries.remove(oldest);
      oldest.scope.cancel();
      ++dropped;
    }
    entries.add(entry);
  }
  void leave(Entry& entry) {
    if (entry.link.isLinked()) entries.remove(entry);
  }
  uint64_t droppedSoFar() const { return dropped; }

private:
  size_t limit;
  uint64_t dropped = 0;
  kj::List<Entry, &Entry::link> entries;
};

Co<void> Actor::acceptLoop(Listener& listener) {  // owned by this task (its lambda holds it)
  size_t limit = 64;
  KJ_IF_MAYBE(options, serverOptions) limit = options->maxUnauthenticated;
  auto handshaking = kj::refcounted<Handshaking>(limit);
  for (;;) {
    auto accepted = co_await errorOr([&]() { return listener.accept(); });
    KJ_IF_MAYBE(e, accepted.error()) {
      // E.g. out of file descriptors: the listener itself is fine; try again shortly.
      KJ_LOG(WARNING, "accepting a channel failed", listener.getAddress(), *e);
      co_await timer().afterDelay(100 * kj::MILLISECONDS);
      continue;
    }
    KJ_ASSERT_NONNULL(channelTasks).startSoon(
        [this, channel = kj::mv(*accepted), h = kj::addRef(*handshaking)]() mutable {
          return serveIncoming(kj::mv(channel), kj::mv(h));
        });
  }
}

// Counts the incoming channel for as long as its coroutine lives: declared first, so it is
// destroyed last, after the channel's Peer and buffers.
struct Actor::IncomingCount {
  Actor& actor;
  explicit IncomingCount(Actor& actor) : actor(actor) { ++actor.liveIncoming; }
  ~IncomingCount() noexcept { actor.incomingEnded(); }
};

void Actor::incomingEnded() {
  --liveIncoming;
  // A flood of connections (a port scan, a burst of clients, garbage) leaves the heap with many
  // free pages between live blocks, which glibc keeps: measured, a registry host kept 1-2 MB
  // more after each round of 5,000 connect-and-drops and 500 garbage connections (500 at a
  // time), growing from round to round, when it handed memory back only while a burst was at
  // half its peak (what the end of each burst freed stayed). Now the pages go back once no
  // incoming channel is left (at most once per 10 ms), and every 100 ms while a burst goes on:
  // nothing is trimmed while no connection comes or goes.
  auto now = timer().now();
  if (liveIncoming == 0 && now - lastTrim >= 10 * kj::MILLISECONDS) return trimMemory();
  if (trimArmed) return;
  trimArmed = true;
  trimLater = timer().afterDelay(liveIncoming == 0 ? 10 * kj::MILLISECONDS
                                                   : 100 * kj::MILLISECONDS)
                  .then([this]() {
                    trimArmed = false;
                    trimMemory();
                  })
                  .eagerlyEvaluate(nullptr);
}

void Actor::trimMemory() {
  malloc_trim(0);
  lastTrim = timer().now();
}

Co<void> Actor::serveIncoming(kj::Own<Channel> channel, kj::Own<Handshaking> handshaking) {
  IncomingCount counted(*this);
  kj::Duration timeout = 5 * kj::SECONDS;
  KJ_IF_MAYBE(options, serverOptions) timeout = options->handshakeTimeout;
  kj::Own<Peer> peer;
  CancelScope admission;
  Handshaking::Entry entry{admission, {}};
  handshaking->admit(entry);
  KJ_DEFER(handshaking->leave(entry));
  KJ_IF_MAYBE(e, co_await errorOf([&]() {
    return admission.run([&]() {
      return failAfter(timer(), timeout, [&]() -> Co<void> {
        peer = co_await handshake(kj::mv(channel), *this, /*initiator=*/false);
      });
    });
  })) {
    // A port scanner's connect-and-drop, a half-open connection, garbage: not our problem. The
    // channel (owned by the cancelled handshake) is closed already.
    HARROW_LOG_DEBUG("incoming connection dropped before the hello exchange", describeDrop(*e));
    co_return;
  }
  handshaking->leave(entry);  // authenticated: it no longer counts against the limit
  if (peer.get() == nullptr) {
    // Dropped for a newer connection while it had not authenticated (a flood, or a slow peer).
    HARROW_LOG_DEBUG("incoming connection dropped in the handshake: too many unauthenticated "
                     "connections on its listener", handshaking->droppedSoFar());
    co_return;
  }
  HARROW_LOG_DEBUG("channel accepted", peer->remote().toString());
  KJ_IF_MAYBE(e, co_await errorOf([&]() {
    return finally([&]() { return peer->serve(); }, [&]() -> Co<void> {
      // Tasks of this channel have been told it is gone; they refer to the Peer until they unwind.
      co_await peer->whenDrained();
      forgetPeer(*peer);
    });
  })) {
    if (isTransportClosed(*e)) {
      HARROW_LOG_DEBUG("channel lost", peer->remote().toString(), *e);
    } else if (isMalformedFrame(*e) || isProtocolViolation(*e)) {
      // The peer's violation, logged (rate-limited, without our trace) by the Peer already.
      HARROW_LOG_DEBUG("channel ended", peer->remote().toString(), *e);
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
  KJ_IF_MAYBE(options, serverOptions) timeout = options->handshakeTimeout;
  auto address = kj::heapString(addressParam);
  kj::Own<Peer> peer;
  KJ_IF_MAYBE(e, co_await errorOf([&]() {
    return failAfter(timer(), timeout, [&]() -> Co<void> {
      auto channel = co_await harrow::connect(io().provider->getNetwork(), address, channelOptions());
      peer = co_await handshake(kj::mv(channel), *this, /*initiator=*/true);
    });
  })) {
    if (isTransportClosed(*e) || isAuthenticationFailed(*e)) {
      kj::throwFatalException(kj::mv(*e));
    }
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
  tasks.startSoon([this, &ref]() { return serveOutbound(ref); });
  co_return ref.peer.get();
}

Co<void> Actor::serveOutbound(Outbound& connection) {  // in `outbound` for the actor's life
  KJ_IF_MAYBE(e, co_await errorOf([&]() {
    return finally([&]() { return connection.peer->serve(); }, [&]() {
      connection.open = false;
      KJ_IF_MAYBE(current, outboundByAddress.find(connection.address)) {
        if (*current == &connection) outboundByAddress.erase(connection.address);
      }
    });
  })) {
    // The Peer itself stays until serve() returns: portals found through it may still refer to
    // it (their calls fail with its error).
    HARROW_LOG_DEBUG("outbound channel lost", connection.address, *e);
  }
}

}  // namespace harrow
