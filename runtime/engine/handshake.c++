// The handshake on a fresh channel (docs/PROTOCOL.md, "hello", "authenticate" and "Frame
// protection"): hellos, the proofs of the tree secret, and what the channel's frames carry from
// then on. Declared in <harrow/engine/peer.h> (handshake(), handshakeWithParent/Child(),
// authenticateChannel()).
//
//   auto peer = co_await harrow::handshake(kj::mv(channel), host, /*initiator=*/true);
//
// Guarantees: a peer that has not proved the tree secret (or is not this actor's parent or
// child on their socketpair) never reaches a Peer: it gets one `error` and the channel is
// closed. Everything either side said in its hello is covered by both proofs (auth.h), so no
// field (message limit, shared memory, frame protection) can be changed on the way.
//
// Why a file of its own: the handshake runs before any Peer exists and shares nothing with the
// task engine but the wire format (peer.c++ was 800 lines, issue #23).

#include <harrow/engine/peer.h>

#include <harrow/co/errors.h>
#include <harrow/co/version.h>
#include <harrow/ipc/frame_seal.h>

#include "runtime/engine/internal/shared_frames.h"
#include "runtime/engine/internal/wire_message.h"

#include <kj/debug.h>

#include <stdlib.h>
#include <unistd.h>

namespace harrow {

namespace {

// What the peer's `error` during the handshake means here: its refusal of us. `overTls`: the
// handshake is bound to TLS certificates (PeerOptions::transportBinding).
kj::Exception refusedBy(wire::Error::Reader error, bool overTls) {
  if (error.getType() == errorTypeName(ErrorKind::AUTHENTICATION_FAILED)) {
    return authenticationFailed(kj::str(
        "actor ", ActorIdentity::fromWire(error.getOrigin()).toString(),
        " refused this actor's proof of the tree secret (do both use the same cookie?",
        overTls ? " Does something between them terminate TLS with a certificate of its own?" : "",
        ")"));
  }
  return toException(error);
}

// Tells the peer why, closes our write side, throws `why`. It may be an older or newer harrow,
// or a stranger: either way it gets one `error` and nothing else.
Co<void> refuse(Channel& channel, PeerHost& host, kj::Exception why) {
  if (isAuthenticationFailed(why)) host.authenticationFailed(why);
  {
    capnp::MallocMessageBuilder builder(256);
    auto root = builder.initRoot<wire::Message>();
    auto error = root.initError();
    // Within the pre-authentication frame limit, whatever the peer's hello made the text (a name
    // of 3 KiB, say): its middle cut before it is built (capnp does not reclaim a replaced text).
    kj::StringPtr description = why.getDescription();
    kj::Exception shown = description.size() <= 1024 ? kj::cp(why) : kj::Exception(
        why.getType(), why.getFile(), why.getLine(),
        kj::str(kj::heapString(description.begin(), 512), " ... ",
                description.slice(description.size() - 512)));
    fillWireError(error, shown, host.identity(), wire::ErrorKind::PROTOCOL_VIOLATION);
    // The peer may be anyone: it learns what was wrong, not where in this program (a stack trace
    // would hand a stranger this process's memory layout).
    error.setRemoteTrace("");
    error.setFile("");
    error.setLine(0);
    channel.send(builder);
  }
  try {
    co_await channel.shutdownWrite();
  } catch (...) {
    // The peer may be gone already; the refusal below is what matters.
  }
  kj::throwFatalException(kj::mv(why));
}

// Why `message`, received during the handshake where `expected` was due, is refused.
kj::Exception unexpected(wire::Message::Reader message, wire::Message::Which expected,
                         bool overTls) {
  // An error is never answered with an error: it is the peer's refusal of us.
  if (message.isError()) return refusedBy(message.getError(), overTls);
  if (expected == wire::Message::HELLO) {
    return protocolViolation(
        kj::str("the peer's first message is not hello but ", messageName(message)));
  }
  // Before it has proved it knows the secret, a peer may send nothing else.
  return authenticationFailed(
      kj::str("the peer sent ", messageName(message), " before authenticating"));
}

// The next handshake message, which must be `expected`; anything else (including EOF) throws.
Co<kj::Own<capnp::MessageReader>> receiveHandshake(
    Channel& channel, PeerHost& host,  // the handshake's own; host: the actor
    wire::Message::Which expected, bool overTls = false) {
  auto received = co_await channel.receive();
  if (received == nullptr) {
    kj::throwFatalException(transportClosed("the peer closed the channel during the handshake"));
  }
  kj::Own<capnp::MessageReader> reader = kj::mv(KJ_ASSERT_NONNULL(received));
  // Checked before anything is read, the root included (see Peer::route()).
  if (!hasStructRoot(*reader)) {
    co_await refuse(channel, host,
                    protocolViolation("the peer's handshake message is not a struct"));
  }
  KJ_IF_MAYBE(problem, checkEnvelope(*reader)) {
    kj::StringPtr what = expected == wire::Message::HELLO ? "hello" : "authenticate";
    co_await refuse(channel, host, protocolViolation(kj::str("the peer's ", what,
                                                             " is malformed: ", *problem)));
  }
  auto message = reader->getRoot<wire::Message>();
  if (message.which() != expected || message.getCallId() != 0) {
    auto why = unexpected(message, expected, overTls);
    if (message.isError()) kj::throwFatalException(kj::mv(why));
    co_await refuse(channel, host, kj::mv(why));
  }
  co_return kj::mv(reader);
}

// On a link between hosts without TLS, whether this side requires its frames encrypted: unless
// it runs with --harrow-insecure-links (docs/PROTOCOL.md, "Frame protection" and "Links between
// hosts").
bool linkNeedsEncryption(const PeerOptions& options) {
  return options.link && !options.linkOverTls && !insecureLinksFromEnvironment();
}

// What this side requires of the channel's frames after the handshake (docs/PROTOCOL.md,
// "Frame protection" and "Threat model"): nothing on the parent-child socketpair (trusted by
// construction) or a Unix socket whose other end is a process of this user (nobody else can be on
// it); tags, or encryption if the tree asks for it, everywhere else.
wire::FrameProtection requiredProtection(Channel& channel, const PeerOptions& options,
                                         PeerTrust trust) {
  if (options.parentChildOverRelay) {
    // Whatever this end's socket is, the other end's bytes crossed a network.
  } else if (trust != PeerTrust::TREE_SECRET || channel.isSameUserUnixSocket()) {
    return wire::FrameProtection::NONE;
  }
  if (options.encrypt || encryptFromEnvironment() || linkNeedsEncryption(options)) {
    return wire::FrameProtection::ENCRYPTED;
  }
  return wire::FrameProtection::AUTHENTICATED;
}

// The refusal of a peer whose (proved) hello leaves a link between hosts unencrypted while this
// side requires encryption on it: the other end runs with --harrow-insecure-links and this one
// does not. Refused by name rather than quietly encrypted anyway, so that a tree's links are
// plain only where both ends were told so (docs/PROTOCOL.md, "Frame protection").
kj::Maybe<kj::Exception> linkMismatch(const PeerOptions& options, wire::Hello::Reader theirs) {
  if (!linkNeedsEncryption(options) ||
      theirs.getFrameProtection() >= wire::FrameProtection::ENCRYPTED) {
    return nullptr;
  }
  return protocolViolation(kj::str(
      "actor ", ActorIdentity::fromWire(theirs.getId()).toString(),
      " at the other end of this "
      "link between hosts runs with --harrow-insecure-links (frames tagged, not encrypted) and "
      "this end does not: links without TLS are encrypted unless both ends run with "
      "--harrow-insecure-links (HARROW_INSECURE_LINKS=1)"));
}

// What the hellos settled: who the peer is, and the channel's limit both ways.
struct Agreed {
  ActorIdentity remote;
  size_t maxMessageBytes;
};

Co<Agreed> helloExchange(Channel& chan,
                         PeerHost& host,  // the actor, which outlives its channels
                         bool initiator, PeerOptions options, PeerTrust trust) {
  Channel* channel = &chan;
  size_t local = options.maxMessageBytes != 0 ? options.maxMessageBytes : host.maxMessageBytes();
  // Nobody has proved anything yet: small frames only (the agreed limit applies afterwards).
  channel->setMaxFrameBytes(kj::min(local, kj::max(options.preAuthFrameBytes, size_t(1024))));
  capnp::MallocMessageBuilder ours(128);
  {
    auto root = ours.initRoot<wire::Message>();
    auto hello = root.initHello();
    host.identity().toWire(hello.initId());
    hello.setPid(getpid());
    hello.setProtocolVersion(wire::PROTOCOL_VERSION);
    hello.setMaxMessageBytes(local);
    hello.setSharedMemory(options.sharedMemoryThreshold > 0 && channel->canPassFds());
    hello.setFrameProtection(requiredProtection(*channel, options, trust));
    setHelloNonce(hello);
    channel->send(ours);
  }
  auto theirs = co_await receiveHandshake(*channel, host, wire::Message::HELLO);
  auto ourHello = ours.getRoot<wire::Message>().getHello().asReader();
  auto theirHello = theirs->getRoot<wire::Message>().getHello();
  if (theirHello.getProtocolVersion() != wire::PROTOCOL_VERSION) {
    co_await refuse(*channel, host, protocolViolation(kj::str(
        "protocol version mismatch: '", theirHello.getId().getName(), "' speaks harrow wire "
        "protocol ", theirHello.getProtocolVersion(), ", '", host.identity().name, "' (harrow ",
        VERSION, ") speaks ", wire::PROTOCOL_VERSION, "; build both programs with one harrow "
        "release (`harrow --version` prints both numbers)")));
  }
  uint64_t theirLimit = theirHello.getMaxMessageBytes();
  if (theirLimit != 0 && theirLimit < MIN_MAX_MESSAGE_BYTES) {
    co_await refuse(*channel, host, protocolViolation(kj::str(
        "the peer's message limit of ", theirLimit, " bytes is below the minimum of ",
        MIN_MAX_MESSAGE_BYTES)));
  }
  auto protection = kj::max(ourHello.getFrameProtection(), theirHello.getFrameProtection());
  if (protection > wire::FrameProtection::ENCRYPTED) {
    co_await refuse(*channel, host, protocolViolation(kj::str(
        "the peer asks for frame protection ", uint(protection), ", which this actor does not know")));
  }
  if (trust == PeerTrust::TREE_SECRET || options.parentChildOverRelay) {
    auto binding = options.transportBinding;
    KJ_REQUIRE(!options.linkOverTls || binding.size() > 0,
               "a link over TLS binds its handshake to the certificates (linkBinding())");
    if (theirHello.getNonce().size() < HELLO_NONCE_SIZE) {
      co_await refuse(*channel, host, authenticationFailed("the peer's hello has no nonce"));
    }
    auto opener = initiator ? ourHello : theirHello;
    auto acceptor = initiator ? theirHello : ourHello;
    HandshakeRole mine = initiator ? HandshakeRole::OPENER : HandshakeRole::ACCEPTOR;
    HandshakeRole peers = initiator ? HandshakeRole::ACCEPTOR : HandshakeRole::OPENER;
    auto sendProof = [&]() {
      capnp::MallocMessageBuilder builder(64);
      auto mac = handshakeProof(host.treeSecret(), mine, opener, acceptor, binding);
      builder.initRoot<wire::Message>().setAuthenticate(
          capnp::Data::Reader(mac.begin(), mac.size()));
      channel->send(builder);
    };
    // The opener proves itself first; the acceptor answers only a good proof.
    if (initiator) sendProof();
    auto proof =
        co_await receiveHandshake(*channel, host, wire::Message::AUTHENTICATE, binding.size() > 0);
    if (!verifyHandshakeProof(host.treeSecret(), peers, opener, acceptor,
                              proof->getRoot<wire::Message>().getAuthenticate(), binding)) {
      co_await refuse(
          *channel, host,
          authenticationFailed(
              kj::str("actor ", ActorIdentity::fromWire(theirHello.getId()).toString(),
                      binding.size() == 0
                          ? " does not know this tree's secret (a wrong cookie?)"
                          : " does not know this tree's secret, or saw other TLS certificates than "
                            "this end "
                            "did (a wrong cookie, or something between the two terminating TLS)")));
    }
    // The acceptor refuses before its proof; the opener once frames are protected, so that its
    // refusal reaches the acceptor as a frame it can read.
    if (!initiator) {
      KJ_IF_MAYBE (why, linkMismatch(options, theirHello)) {
        co_await refuse(*channel, host, kj::mv(*why));
      }
      sendProof();
    }
    // Both proofs are through, and neither side has sent a frame since: every frame from here on
    // is tagged (docs/PROTOCOL.md, "Frame protection").
    protectFrames(*channel, host.treeSecret(), initiator, opener, acceptor, binding);
    if (initiator) {
      KJ_IF_MAYBE (why, linkMismatch(options, theirHello)) {
        co_await refuse(*channel, host, kj::mv(*why));
      }
    }
  }
  // Each side sends at most what the other accepts: the smaller limit, both ways.
  if (theirLimit == 0) theirLimit = DEFAULT_MAX_FRAME_BYTES;  // a peer that does not say
  if (ourHello.getSharedMemory() && theirHello.getSharedMemory() && !channel->framesProtected()) {
    channel->sendLargeFramesThroughSharedMemory(newWireSharedFrameCodec(),
        options.sharedMemoryThreshold, options.sharedMemoryRingBytes);
  }
  co_return Agreed{ActorIdentity::fromWire(theirHello.getId()),
                  size_t(kj::min(uint64_t(local), theirLimit))};
}

Co<kj::Own<Peer>> exchangeHellos(kj::Own<Channel> channel,
                                 PeerHost& host,  // the actor, which outlives its channels
                                 bool initiator, PeerOptions options, PeerTrust trust) {
  auto agreed = co_await helloExchange(*channel, host, initiator, options, trust);
  options.maxMessageBytes = agreed.maxMessageBytes;
  co_return kj::heap<Peer>(kj::mv(channel), host, kj::mv(agreed.remote), initiator, options,
                           trust);
}

}  // namespace

void protectFrames(Channel& channel, const TreeSecret& secret, bool initiator,
                   wire::Hello::Reader opener, wire::Hello::Reader acceptor,
                   kj::ArrayPtr<const kj::byte> binding) {
  auto protection = kj::max(opener.getFrameProtection(), acceptor.getFrameProtection());
  if (protection == wire::FrameProtection::NONE) return;
  auto keys = frameKeys(secret, opener, acceptor, binding);
  auto mode = protection == wire::FrameProtection::ENCRYPTED ? FrameSeal::ENCRYPT
                                                             : FrameSeal::AUTHENTICATE;
  kj::ArrayPtr<const kj::byte> toAcceptor = keys->openerToAcceptor;
  kj::ArrayPtr<const kj::byte> toOpener = keys->acceptorToOpener;
  channel.protectFrames(kj::heap<FrameSeal>(initiator ? toAcceptor : toOpener, mode),
                        kj::heap<FrameSeal>(initiator ? toOpener : toAcceptor, mode));
}

namespace {
bool setAndNotZero(const char* variable) {
  const char* text = getenv(variable);
  return text != nullptr && *text != '\0' && kj::StringPtr(text) != "0";
}
}  // namespace

bool encryptFromEnvironment() {
  return setAndNotZero("HARROW_ENCRYPT");
}

bool insecureLinksFromEnvironment() {
  return setAndNotZero("HARROW_INSECURE_LINKS");
}

kj::Exception authenticationFailed(kj::StringPtr what) {
  return makeError(ErrorKind::AUTHENTICATION_FAILED, what);
}

bool isAuthenticationFailed(const kj::Exception& exception) {
  return is(exception, ErrorKind::AUTHENTICATION_FAILED);
}

Co<kj::Own<Peer>> handshake(kj::Own<Channel> channel, PeerHost& host, bool initiator,
                            PeerOptions options) {
  return exchangeHellos(kj::mv(channel), host, initiator, options, PeerTrust::TREE_SECRET);
}

Co<ActorIdentity> authenticateChannel(Channel& channel,  // the caller's, which awaits this
                                      PeerHost& host, bool initiator, PeerOptions options) {
  auto agreed = co_await helloExchange(channel, host, initiator, options, PeerTrust::TREE_SECRET);
  channel.setMaxFrameBytes(agreed.maxMessageBytes);
  co_return kj::mv(agreed.remote);
}

Co<kj::Own<Peer>> handshakeWithParent(kj::Own<Channel> channel, PeerHost& host,
                                      PeerOptions options) {
  return exchangeHellos(kj::mv(channel), host, /*initiator=*/true, options, PeerTrust::PARENT);
}

Co<kj::Own<Peer>> handshakeWithChild(kj::Own<Channel> channel, PeerHost& host,
                                     PeerOptions options) {
  return exchangeHellos(kj::mv(channel), host, /*initiator=*/false, options, PeerTrust::CHILD);
}

}  // namespace harrow
