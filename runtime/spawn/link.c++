#include <harrow/spawn/link.h>

#include <harrow/ipc/transport.h>
#include <harrow/spawn/ssh.h>

#include <capnp/any.h>
#include <kj/debug.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>

#include <fstream>
#include <sstream>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>

namespace harrow {

LinkTiming LinkTiming::withinBound(kj::Duration bound) {
  LinkTiming timing;
  timing.heartbeat = bound / 4;
  timing.silence = bound * 3 / 4;
  return timing;
}

LinkTiming LinkTiming::fromEnvironment() {
  const char* text = getenv("HARROW_LINK_TIMEOUT_MS");
  if (text == nullptr || *text == '\0') return withinBound(3 * kj::SECONDS);
  char* end;
  long ms = strtol(text, &end, 10);
  KJ_REQUIRE(*end == '\0' && ms >= 40 && ms <= 3600 * 1000,
             "HARROW_LINK_TIMEOUT_MS: milliseconds between 40 and 3600000", text);
  return withinBound(ms * kj::MILLISECONDS);
}

kj::String nodeAddress(kj::StringPtr node) {
  if (node.startsWith("tcp:")) return kj::heapString(node);
  const char* nodes = getenv("HARROW_NODES");
  kj::StringPtr all = nodes != nullptr ? nodes : "";
  KJ_IF_MAYBE(address, namedEntry(all, node)) return kj::mv(*address);
  kj::throwFatalException(makeError(ErrorKind::SPAWN_FAILED,
      kj::str("no node named '", node, "' (--harrow-nodes / HARROW_NODES: '", all, "')")));
}

kj::Maybe<LinkTlsFiles> LinkTlsFiles::fromEnvironment() {
  const char* cert = getenv("HARROW_TLS_CERT");
  const char* key = getenv("HARROW_TLS_KEY");
  const char* ca = getenv("HARROW_TLS_CA");
  auto set = [](const char* v) { return v != nullptr && *v != '\0'; };
  if (!set(cert) && !set(key) && !set(ca)) return nullptr;
  KJ_REQUIRE(set(cert) && set(key) && set(ca),
             "TLS between hosts needs all of --harrow-tls-cert, --harrow-tls-key and "
             "--harrow-tls-ca (HARROW_TLS_CERT, HARROW_TLS_KEY, HARROW_TLS_CA)");
  return LinkTlsFiles{kj::str(cert), kj::str(key), kj::str(ca)};
}

namespace {

kj::String readTextFile(kj::StringPtr path, kj::StringPtr what) {
  std::ifstream in(path.cStr());
  KJ_REQUIRE(in.good(), kj::str("cannot read the TLS ", what, " file"), path);
  std::stringstream text;
  text << in.rdbuf();
  return kj::str(text.str().c_str());
}

kj::TlsContext::Options tlsOptions(kj::ArrayPtr<const kj::TlsCertificate> trusted,
                                   const kj::TlsKeypair& keypair, kj::Maybe<kj::Timer&> timer) {
  kj::TlsContext::Options options;
  options.useSystemTrustStore = false;  // only the tree's CA
  options.trustedCertificates = trusted;
  options.verifyClients = true;         // mutual: a node accepts only the tree's parents
  options.defaultKeypair = keypair;
  KJ_IF_MAYBE(t, timer) {
    options.timer = *t;
    options.acceptTimeout = handshakeTimeoutFromEnvironment();
  }
  return options;
}

// SHA-256 of `certificate`'s DER encoding (an X509*).
void fingerprintOf(X509* certificate, kj::byte* fingerprint) {
  unsigned char* der = nullptr;
  int length = i2d_X509(certificate, &der);
  KJ_REQUIRE(length > 0, "a TLS certificate that cannot be DER-encoded");
  KJ_DEFER(OPENSSL_free(der));
  KJ_ASSERT(sodium_init() >= 0, "libsodium failed to initialise");
  crypto_hash_sha256(fingerprint, der, length);
}

// The first certificate of a PEM file's text (this end's own, ahead of its chain).
void pemFingerprint(kj::StringPtr pem, kj::StringPtr path, kj::byte* fingerprint) {
  BIO* bio = BIO_new_mem_buf(pem.begin(), pem.size());
  KJ_ASSERT(bio != nullptr);
  KJ_DEFER(BIO_free(bio));
  X509* certificate = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  KJ_REQUIRE(certificate != nullptr, "no PEM certificate in the TLS certificate file", path);
  KJ_DEFER(X509_free(certificate));
  fingerprintOf(certificate, fingerprint);
}

// kj::TlsPeerIdentity holds the peer's certificate (an X509*) in a private member and, in KJ 0.9,
// offers only its common name and a hostname check: nothing a transcript can bind to (no
// fingerprint, no DER, no TLS exporter). An explicit instantiation may name a private member
// ([temp.spec.general]: access is not checked there), so this reads that one pointer without
// changing KJ; should KJ rename or retype it, this stops compiling instead of misreading.
template <void* kj::TlsPeerIdentity::*member>
struct PeerCertificateOf {
  friend X509* peerCertificate(kj::TlsPeerIdentity& identity) {
    return static_cast<X509*>(identity.*member);
  }
};
template struct PeerCertificateOf<&kj::TlsPeerIdentity::cert>;
X509* peerCertificate(kj::TlsPeerIdentity& identity);

}  // namespace

LinkTls::LinkTls(const LinkTlsFiles& files, kj::Maybe<kj::Timer&> timer)
    : key(readTextFile(files.key, "key")),
      certificate(readTextFile(files.certificate, "certificate")),
      ca(readTextFile(files.ca, "CA")), keypair{key, certificate},
      tls(kj::heap<kj::TlsContext>(tlsOptions(kj::arrayPtr(&ca, 1), keypair, timer))) {
  pemFingerprint(readTextFile(files.certificate, "certificate"), files.certificate, fingerprint);
}

kj::Array<kj::byte> LinkTls::binding(kj::PeerIdentity& peer, bool opener) const {
  auto* identity = dynamic_cast<kj::TlsPeerIdentity*>(&peer);
  KJ_REQUIRE(identity != nullptr && identity->hasCertificate(),
             "a link over TLS whose peer presented no certificate");
  auto result = kj::heapArray<kj::byte>(2 * FINGERPRINT_BYTES);
  kj::byte* own = result.begin() + (opener ? 0 : FINGERPRINT_BYTES);
  kj::byte* theirs = result.begin() + (opener ? FINGERPRINT_BYTES : 0);
  memcpy(own, fingerprint, FINGERPRINT_BYTES);
  fingerprintOf(peerCertificate(*identity), theirs);
  return result;
}

namespace {

class TlsStream final : public kj::AsyncIoStream {
public:
  explicit TlsStream(kj::Own<kj::AsyncIoStream> inner) : inner(kj::mv(inner)) {}
  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    return inner->tryRead(buffer, minBytes, maxBytes);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return inner->write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner->whenWriteDisconnected(); }
  void shutdownWrite() override { inner->shutdownWrite(); }
  void abortRead() override { inner->abortRead(); }
  void getsockopt(int level, int option, void* value, uint* length) override {
    inner->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, uint length) override {
    inner->setsockopt(level, option, value, length);
  }
  // getFd(): none, on purpose.

private:
  kj::Own<kj::AsyncIoStream> inner;
};

}  // namespace

kj::Own<kj::AsyncIoStream> tlsStream(kj::Own<kj::AsyncIoStream> tls) {
  return kj::heap<TlsStream>(kj::mv(tls));
}

kj::Exception actorUnreachable(kj::StringPtr name, kj::StringPtr node, kj::StringPtr why) {
  return makeError(ErrorKind::ACTOR_UNREACHABLE,
                   kj::str("actor '", name, "' on node '", node, "': ", why));
}

// ---- LinkEnds ----

namespace {

// Whether `reader` is a `link` frame. Relayed frames are validated by the Peer that reads them;
// here only the discriminant is read, and a frame too broken for that is simply relayed.
kj::Maybe<wire::Link::Reader> linkOf(capnp::MessageReader& reader) {
  kj::Maybe<wire::Link::Reader> result;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   auto message = reader.getRoot<wire::Message>();
                   if (message.isLink()) result = message.getLink();
                 })) {
    (void)e;
  }
  return result;
}

kj::Own<capnp::MallocMessageBuilder> copyOf(capnp::MessageReader& reader) {
  auto builder = kj::heap<capnp::MallocMessageBuilder>();
  builder->getRoot<capnp::AnyPointer>().set(reader.getRoot<capnp::AnyPointer>());
  // Shared memory (docs/PROTOCOL.md, "Large frames through shared memory") works between the two
  // ends of one Unix socket: a hello relayed across the link must not offer it (the ring's fd could
  // not follow).
  kj::runCatchingExceptions([&]() {
    auto message = builder->getRoot<wire::Message>();
    if (message.isHello()) message.getHello().setSharedMemory(false);
  });
  return builder;
}

}  // namespace

void LinkEnds::sendLink(kj::FunctionParam<void(wire::Link::Builder)> fill) {
  if (linkWriteShut) return;
  capnp::MallocMessageBuilder builder(64);
  fill(builder.initRoot<wire::Message>().initLink());
  link.send(builder);
}

Co<void> LinkEnds::linkToLocal(kj::Function<void(wire::Link::Reader)> onLink,
                               kj::Function<void(wire::Message::Builder)> rewrite) {
  for (;;) {
    auto received = co_await link.receive();
    lastReceived = timer.now();
    if (received == nullptr) co_return;
    auto& reader = *KJ_ASSERT_NONNULL(received);
    KJ_IF_MAYBE(l, linkOf(reader)) {
      onLink(*l);
      continue;
    }
    auto copy = copyOf(reader);
    rewrite(copy->getRoot<wire::Message>());
    local.send(kj::mv(copy));
    if (!local.isWritable()) {
      // The link is not read while the local side catches up: its silence is not the link's.
      paused = true;
      co_await local.whenWritable();
      paused = false;
      lastReceived = timer.now();
    }
  }
}

Co<void> LinkEnds::localToLink(kj::Function<void(wire::Message::Builder)> rewrite) {
  for (;;) {
    auto received = co_await local.receive();
    if (received == nullptr) co_return;
    auto copy = copyOf(*KJ_ASSERT_NONNULL(received));
    rewrite(copy->getRoot<wire::Message>());
    link.send(kj::mv(copy));
    if (!link.isWritable()) co_await link.whenWritable();
  }
}

Co<void> LinkEnds::watch(kj::Function<kj::Exception(kj::StringPtr why)> lost) {
  for (;;) {
    co_await timer.afterDelay(timing.heartbeat);
    sendLink([](wire::Link::Builder l) { l.setHeartbeat(); });
    kj::Duration silent = timer.now() - lastReceived;
    if (!paused && silent > timing.silence) {
      kj::throwFatalException(lost(kj::str("the link has been silent for ",
                                           silent / kj::MILLISECONDS, " ms (bound ",
                                           (timing.heartbeat + timing.silence) / kj::MILLISECONDS,
                                           " ms)")));
    }
  }
}

// ---- the parent's side ----

// The spawn spec a remote child gets: no tree secret (its node, which has the same cookie, adds
// it: the secret never crosses the network) and none of this host's own addresses (a Unix
// socket, loopback); the registry's as exposed for the child's host (fillRemoteSpawnSpec) stays.
void stripSpawnSpecForLink(wire::Message::Builder message) {
  if (!message.isSpawnSpec()) return;
  stripHostLocalAddresses(message.getSpawnSpec(), /*withoutSecret=*/true);
}

namespace {

class RemoteProcess final : public Process {
public:
  RemoteProcess(Actor& actor, kj::String node, kj::String name, pid_t pid,
                kj::Own<Channel> link, kj::Own<Channel> local, LinkTiming timing)
      : node(kj::mv(node)), name(kj::mv(name)), remotePid(pid), linkChannel(kj::mv(link)),
        localChannel(kj::mv(local)),
        ends(*linkChannel, *KJ_ASSERT_NONNULL(localChannel), actor.timer(), timing) {
    auto paf = kj::newPromiseAndFulfiller<int>();
    exitFulfiller = kj::mv(paf.fulfiller);
    exit = paf.promise.fork();
    // Started from the event loop, outside any coroutine: the relay belongs to no cancel scope
    // (like a local child's process, it lives until the child has exited or this is dropped).
    relay = kj::evalLater([this]() -> kj::Promise<void> { return run(); })
        .eagerlyEvaluate(nullptr);
  }

  ~RemoteProcess() noexcept(false) {
    // Dropped without waiting: the link closes, and the node kills the orphan after its grace.
    relay = nullptr;
  }

  pid_t pid() const override { return remotePid; }
  bool hasExited() const override { return status != nullptr || unreachable; }
  kj::Promise<int> onExit() override { return exit.addBranch(); }
  void kill(int signal) override {
    if (hasExited()) return;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                     ends.sendLink([&](wire::Link::Builder l) { l.setKill(signal); });
                   })) {
      (void)e;  // the link is broken: the node kills the orphan itself
    }
  }
  kj::String where() const override { return kj::str(" on node '", node, "'"); }

private:
  kj::String node;
  kj::String name;
  pid_t remotePid;
  kj::Own<Channel> linkChannel;
  kj::Maybe<kj::Own<Channel>> localChannel;
  LinkEnds ends;
  kj::Maybe<int> status;
  bool unreachable = false;
  kj::Own<kj::PromiseFulfiller<int>> exitFulfiller;
  kj::ForkedPromise<int> exit = nullptr;
  kj::Maybe<kj::Promise<void>> relay;  // last: cancelled first

  kj::Exception lost(kj::StringPtr why) { return actorUnreachable(name, node, why); }

  Co<void> relayAll() {
    auto fromLink = ends.linkToLocal(
        [this](wire::Link::Reader l) {
          if (l.isExited()) status = int(l.getExited());
        },
        [](wire::Message::Builder) {});
    // Our Peer's end of the child channel closed: nothing more goes to the child.
    auto toLink = ends.localToLink(stripSpawnSpecForLink).then([this]() -> kj::Promise<void> {
      ends.linkWriteShut = true;
      return linkChannel->shutdownWrite().then([]() { return kj::Promise<void>(kj::NEVER_DONE); });
    });
    auto watch = ends.watch([this](kj::StringPtr why) { return lost(why); });
    co_await kj::mv(fromLink).exclusiveJoin(kj::mv(toLink)).exclusiveJoin(kj::mv(watch));
    // The link ended: cleanly only after the node reported the child's exit.
    if (status == nullptr) {
      kj::throwFatalException(lost("the node closed the link before the child exited"));
    }
  }

  Co<void> run() {
    KJ_IF_MAYBE(e, co_await errorOf([&]() { return relayAll(); })) {
      // Its fate is unknown here; its node kills it. Callers learn it first (the explainer asks
      // onExit()), then the Peer's channel ends.
      unreachable = true;
      exitFulfiller->reject(is(*e, ErrorKind::ACTOR_UNREACHABLE)
                                ? kj::mv(*e)
                                : lost(kj::str("the link failed: ", e->getDescription())));
      localChannel = nullptr;
      co_return;
    }
    KJ_IF_MAYBE(s, status) exitFulfiller->fulfill(kj::cp(*s));
    // The child's channel ends here as it did on the node.
    KJ_IF_MAYBE(local, localChannel) {
      try {
        co_await (*local)->shutdownWrite();
      } catch (...) {
        // Our Peer may be gone already.
      }
    }
  }
};

}  // namespace

namespace {

// The TLS server name a node must have: its name, or the host of an address given directly.
kj::String tlsNameOf(kj::StringPtr node) {
  if (!node.startsWith("tcp:")) return kj::heapString(node);
  auto address = Address::parse(node);
  return kj::mv(address.host);
}

// A link's channel, and over TLS what its handshake is bound to (LinkTls::binding()).
struct LinkChannel {
  kj::Own<Channel> channel;
  kj::Array<kj::byte> binding;
};

// A TCP connection to a node, through TLS when the tree has certificates.
Co<LinkChannel> connectLink(Actor& actor,  // outlives its tasks (it runs the loop)
                            kj::StringPtr nodeParam, kj::StringPtr addressParam) {
  auto node = kj::heapString(nodeParam);
  auto address = kj::heapString(addressParam);
  KJ_IF_MAYBE(files, LinkTlsFiles::fromEnvironment()) {
    auto tls = kj::heap<LinkTls>(*files);
    auto& network = actor.io().provider->getNetwork();
    auto parsed = Address::parse(address);
    KJ_REQUIRE(parsed.kind == Address::Kind::TCP, "a node's address is tcp:HOST:PORT", address);
    kj::Own<kj::AsyncIoStream> stream;
    KJ_IF_MAYBE(e, co_await errorOf([&]() -> Co<void> {
      auto target = co_await network.parseAddress(parsed.toKjAddress());
      stream = co_await target->connect();
    })) {
      kj::throwFatalException(transportClosed(kj::str("connect to ", address, " failed: ",
                                                      e->getDescription())));
    }
    KJ_IF_MAYBE(fd, stream->getFd()) {
      int one = 1;
      setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    // Named first: GCC 12 destroys a braced temporary in a co_await expression twice.
    kj::AuthenticatedStream plain{kj::mv(stream), kj::UnknownPeerIdentity::newInstance()};
    auto secured = co_await tls->context().wrapClient(kj::mv(plain), tlsNameOf(node));
    LinkChannel overTls;
    overTls.binding = tls->binding(*secured.peerIdentity, /*opener=*/true);
    overTls.channel =
        kj::heap<Channel>(tlsStream(secured.stream.attach(kj::mv(tls))), actor.channelOptions());
    co_return kj::mv(overTls);
  }
  // Named first, not braced around the co_await (GCC 12 destroys such temporaries twice).
  LinkChannel direct;
  direct.channel =
      co_await connect(actor.io().provider->getNetwork(), address, actor.channelOptions());
  co_return kj::mv(direct);
}

}  // namespace

Co<RemoteChild> startRemoteChild(Actor& actor,  // outlives its tasks (it runs the loop)
                                 kj::StringPtr nodeParam, kj::StringPtr nameParam,
                                 kj::StringPtr executableParam, kj::Duration gracePeriod,
                                 LinkTiming timing) {
  auto node = kj::heapString(nodeParam);
  auto name = kj::heapString(nameParam);
  auto executable = kj::heapString(executableParam);
  auto address = nodeAddress(node);
  kj::Duration timeout = handshakeTimeoutFromEnvironment();

  kj::Own<Channel> link;
  kj::Own<capnp::MessageReader> answer;
  co_await failAfter(actor.timer(), timeout, [&]() -> Co<void> {
    auto connected = co_await connectLink(actor, node, address);
    link = kj::mv(connected.channel);
    // Encrypted unless over TLS or both ends run with --harrow-insecure-links (docs/PROTOCOL.md,
    // "Frame protection"); over TLS bound to both certificates.
    PeerOptions linkOptions;
    linkOptions.link = true;
    linkOptions.linkOverTls = connected.binding != nullptr;
    linkOptions.transportBinding = connected.binding;
    co_await authenticateChannel(*link, actor, /*initiator=*/true, linkOptions);
    {
      capnp::MallocMessageBuilder builder(256);
      auto spawn = builder.initRoot<wire::Message>().initLink().initSpawn();
      spawn.setName(name);
      spawn.setExecutable(executable);
      spawn.setGracePeriodNanos(gracePeriod / kj::NANOSECONDS);
      spawn.setHeartbeatMillis(timing.heartbeat / kj::MILLISECONDS);
      spawn.setSilenceMillis(timing.silence / kj::MILLISECONDS);
      link->send(builder);
    }
    auto received = co_await link->receive();
    if (received == nullptr) {
      kj::throwFatalException(transportClosed(kj::str("node '", node, "' (", address,
                                                      ") closed the link before answering")));
    }
    answer = kj::mv(KJ_ASSERT_NONNULL(received));
  });
  auto message = answer->getRoot<wire::Message>();
  if (message.isError()) kj::throwFatalException(toException(message.getError()));
  KJ_REQUIRE(message.isLink(), "the node's answer to link.spawn is not a link frame");
  auto reply = message.getLink();
  if (reply.isRefused()) {
    kj::throwFatalException(makeError(ErrorKind::SPAWN_FAILED,
        kj::str("actor '", name, "': node '", node, "' refused: ", reply.getRefused())));
  }
  KJ_REQUIRE(reply.isSpawned(), "the node's answer to link.spawn is neither spawned nor refused");
  pid_t pid = reply.getSpawned();

  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  kj::AutoCloseFd ours(fds[0]);
  kj::AutoCloseFd peers(fds[1]);
  auto local = kj::heap<Channel>(actor.eventPort(), kj::mv(ours), actor.channelOptions());
  // The relay passes frames up to the link's agreed limit; the Peer enforces its own.
  local->setMaxFrameBytes(link->maxFrameBytes());
  // Where the node's host reaches this one: the interface the link leaves from.
  kj::String home;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                      [&]() { home = localAddressToward(Address::parse(address).host); })) {
    KJ_LOG(INFO,
           "no address of this host for the node's side; its child runs without the "
           "tree's registry",
           address, *e);
  }
  co_return RemoteChild{kj::heap<RemoteProcess>(actor, kj::mv(node), kj::mv(name), pid,
                                                kj::mv(link), kj::mv(local), timing),
                        kj::mv(peers), kj::mv(home)};
}

}  // namespace harrow
