#include <harrow/node/node.h>

#include <harrow/ipc/transport.h>
#include <harrow/spawn/forkserver.h>

#include <kj/debug.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

namespace harrow {

Node::Node(kj::AsyncIoContext& io, TreeSecret secret, NodeOptions options)
    : io(io), id(ActorIdentity::random(options.name)), secret(kj::mv(secret)),
      options(kj::mv(options)) {
  KJ_IF_MAYBE(files, this->options.tls) tls = kj::heap<LinkTls>(*files, io.provider->getTimer());
}

Node::~Node() noexcept(false) {}

void Node::authenticationFailed(const kj::Exception& why) {
  if (warnedAboutAuthentication) return;
  warnedAboutAuthentication = true;
  KJ_LOG(WARNING, "refused a link that failed authentication (further ones at debug level)",
         why.getDescription());
}

bool Node::allows(kj::StringPtr executable) const {
  if (options.allowAny) return true;
  for (auto& allowed : options.allowedExecutables) {
    if (allowed == executable) return true;
  }
  return false;
}

Co<void> Node::run(kj::Function<void(kj::ArrayPtr<const kj::String>)> ready) {
  // Raw KJ listeners (not harrow's Listener): a TLS session wraps the stream before the Channel.
  kj::Vector<kj::Own<kj::ConnectionReceiver>> receivers;
  kj::Vector<kj::String> bound;
  for (auto& address : options.listenAddresses) {
    auto parsed = Address::parse(address);
    KJ_REQUIRE(parsed.kind == Address::Kind::TCP, "a node listens on tcp:HOST:PORT", address);
    auto target = co_await io.provider->getNetwork().parseAddress(parsed.toKjAddress());
    receivers.add(target->listen());
    parsed.port = receivers.back()->getPort();
    bound.add(parsed.toString());
  }
  ready(bound);
  co_await openNursery([&](TaskNursery& links) -> Co<void> {
    for (auto& receiver : receivers) {
      links.startSoon([&, r = receiver.get()]() { return acceptLoop(*r, links); });
    }
    co_return;
  });
}

Co<void> Node::acceptLoop(kj::ConnectionReceiver& receiver,
                          TaskNursery& links) {  // links: the nursery this task runs in
  for (;;) {
    auto stream = co_await receiver.accept();
    links.startSoon([this, stream = kj::mv(stream)]() mutable -> Co<void> {
      // A link's failure is its own: logged, never the node's. A malformed frame from a parent
      // that proved itself (one that failed its tag: something on the path injected, dropped,
      // reordered, replayed or modified it) is a protocol violation, logged as a Peer's are.
      kj::Maybe<ActorIdentity> parent;
      auto failure = co_await errorOf([&]() { return serveLink(kj::mv(stream), parent); });
      KJ_IF_MAYBE (e, failure) {
        KJ_IF_MAYBE (p, parent) {
          if (isMalformedFrame(*e)) {
            violationLog().report(*p, kj::str("its link ended: ", e->getDescription()));
            co_return;
          }
        }
        KJ_LOG(INFO, "link ended", e->getDescription());
      }
    });
  }
}

Co<void> Node::serveLink(kj::Own<kj::AsyncIoStream> stream,
                         kj::Maybe<ActorIdentity>& who) {  // the caller's, which awaits this
  KJ_IF_MAYBE(fd, stream->getFd()) {
    int one = 1;
    setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  kj::Own<Channel> link;
  kj::Own<capnp::MessageReader> request;
  kj::String parent;
  co_await failAfter(io.provider->getTimer(), options.handshakeTimeout, [&]() -> Co<void> {
    ChannelOptions channelOptions;
    channelOptions.eventPort = io.unixEventPort;
    kj::Array<kj::byte> binding;
    KJ_IF_MAYBE(t, tls) {
      // A client without a certificate the tree's CA signed is refused here.
      // Named first: GCC 12 destroys a braced temporary in a co_await expression twice.
      kj::AuthenticatedStream plain{kj::mv(stream), kj::UnknownPeerIdentity::newInstance()};
      auto secured = co_await (*t)->context().wrapServer(kj::mv(plain));
      binding = (*t)->binding(*secured.peerIdentity, /*opener=*/false);
      link = kj::heap<Channel>(tlsStream(kj::mv(secured.stream)), channelOptions);
    } else {
      link = kj::heap<Channel>(kj::mv(stream), channelOptions);
    }
    // Encrypted unless over TLS or both ends run with --harrow-insecure-links (docs/PROTOCOL.md,
    // "Frame protection"); over TLS bound to both certificates.
    PeerOptions linkOptions;
    linkOptions.link = true;
    linkOptions.linkOverTls = tls != nullptr;
    linkOptions.transportBinding = binding;
    auto& proved =
        who.emplace(co_await authenticateChannel(*link, *this, /*initiator=*/false, linkOptions));
    parent = proved.toString();
    auto received = co_await link->receive();
    if (received == nullptr) {
      kj::throwFatalException(transportClosed("the parent closed the link before asking"));
    }
    request = kj::mv(KJ_ASSERT_NONNULL(received));
  });
  auto message = request->getRoot<wire::Message>();
  if (!message.isLink() || !message.getLink().isSpawn()) {
    KJ_FAIL_REQUIRE("a link's first frame after the handshake is not link.spawn", parent);
  }
  co_await superviseChild(*link, message.getLink().getSpawn(), parent);
}

namespace {

// The child's frames to the parent until its channel ends; then its exit status, last.
Co<void> childToParent(LinkEnds& ends, ChildProcess& process) {  // superviseChild's: it awaits
  co_await ends.localToLink([](wire::Message::Builder) {});
  int status = co_await process.onExit();
  ends.sendLink([&](wire::Link::Builder l) { l.setExited(status); });
  ends.linkWriteShut = true;
  co_await ends.link.shutdownWrite();
}

}  // namespace

Co<void> Node::superviseChild(Channel& link,  // the caller's, which awaits this
                              wire::NodeSpawn::Reader spawn, kj::StringPtr parentParam) {
  auto parent = kj::heapString(parentParam);
  auto name = kj::heapString(spawn.getName());
  auto executable = kj::heapString(spawn.getExecutable());
  auto refuse = [&](kj::StringPtr why) {
    capnp::MallocMessageBuilder builder(128);
    builder.initRoot<wire::Message>().initLink().setRefused(why);
    link.send(builder);
  };
  if (!allows(executable)) {
    refuse(kj::str("this node does not run '", executable, "' (harrow-node --allow=PATH)"));
    co_await link.shutdownWrite();
    co_return;
  }
  kj::Duration grace = spawn.getGracePeriodNanos() * kj::NANOSECONDS;
  if (grace == 0 * kj::NANOSECONDS) grace = 1 * kj::SECONDS;
  LinkTiming timing;
  timing.heartbeat = kj::max(spawn.getHeartbeatMillis(), 10u) * kj::MILLISECONDS;
  timing.silence = kj::max(spawn.getSilenceMillis(), 10u) * kj::MILLISECONDS;

  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  kj::AutoCloseFd ours(fds[0]);
  kj::AutoCloseFd childEnd(fds[1]);
  kj::Own<ChildProcess> process;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    process = startChildProcess(io.unixEventPort, name, executable, SpawnBackend::EXEC,
                                childEnd.get());
  })) {
    refuse(e->getDescription());
    co_await link.shutdownWrite();
    co_return;
  }
  childEnd = nullptr;
  ++children;
  KJ_DEFER(--children);
  options.report(kj::str("started ", name, " pid ", process->pid()));
  {
    capnp::MallocMessageBuilder builder(64);
    builder.initRoot<wire::Message>().initLink().setSpawned(process->pid());
    link.send(builder);
  }
  ChannelOptions channelOptions;
  channelOptions.eventPort = io.unixEventPort;
  kj::Maybe<kj::Own<Channel>> local = kj::heap<Channel>(io.unixEventPort, kj::mv(ours),
                                                         channelOptions);
  Channel& localRef = *KJ_ASSERT_NONNULL(local);
  localRef.setMaxFrameBytes(link.maxFrameBytes());
  LinkEnds ends(link, localRef, io.provider->getTimer(), timing);

  // The parent's frames to the child; the spawn spec gets the tree's secret here (the parent
  // sends none across the network).
  auto fromParent = ends.linkToLocal(
      [&](wire::Link::Reader l) {
        if (l.isKill()) process->kill(int(l.getKill()));
      },
      [this](wire::Message::Builder message) {
        if (!message.isSpawnSpec()) return;
        auto bytes = secret.bytes();
        message.getSpawnSpec().setTreeSecret(capnp::Data::Reader(bytes.begin(), bytes.size()));
      }).then([]() -> kj::Promise<void> {
        return transportClosed("the parent closed the link");
      });
  // The child's frames to the parent, until its channel ends; then its exit status, last.
  auto fromChild = childToParent(ends, *process);
  auto watch = ends.watch([&](kj::StringPtr why) { return transportClosed(why); });

  auto failure = co_await errorOf([&]() {
    return kj::mv(fromChild).exclusiveJoin(kj::mv(fromParent)).exclusiveJoin(kj::mv(watch));
  });
  if (failure == nullptr) {
    options.report(kj::str(name, " ended: ", ChildProcess::describe(co_await process->onExit())));
  }
  KJ_IF_MAYBE(e, failure) {
    // An orphan: its parent channel closes (it cancels itself, as under a parent that died), and
    // it is killed once the grace period has passed.
    KJ_LOG(INFO, "the link to the parent is lost; cancelling the orphan", name, parent,
           e->getDescription());
    local = nullptr;
    auto killAfterGrace = io.provider->getTimer().afterDelay(grace).then([&]() {
      process->kill(SIGKILL);
    }).eagerlyEvaluate(nullptr);
    int status = co_await process->onExit();
    options.report(kj::str("orphan ", name, " ended: ", ChildProcess::describe(status)));
    // A frame that failed its tag: a violation for acceptLoop() to log, not just a lost link.
    if (isMalformedFrame(*e)) kj::throwFatalException(kj::mv(*e));
  }
}

}  // namespace harrow
