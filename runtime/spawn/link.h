// Children on other hosts: the link between a parent and a node (`harrow-node`, runtime/node/)
// that runs one of its children there (docs/PROTOCOL.md, "Links between hosts").
//
// The parent opens a TCP connection to the node, proves the tree's secret (the usual
// authenticated handshake, engine/auth.h), asks for the child (`link.spawn`: name, executable),
// and the node starts it exactly as a local parent would: the program re-executed with the
// socketpair on fd 3 (spawn/process.h), in a process group of its own, dying with the node. From
// then on the connection carries the parent-child channel: each end relays frames between the
// link and a local socketpair (the child's fd 3 on the node; on the parent, the socketpair its
// Peer to the child reads), so neither the child nor the parent's engine knows that a network
// lies between them. The ends add their own frames (`link`, never passed on): heartbeats, the
// parent's kill after the grace period, and the node's report of the child's exit status.
//
// Why a relay and not the child connecting back: the parent needs no routable listener (only the
// node's port must be reachable), the node sees the link and the child both, so it can kill an
// orphan, and the tree secret never crosses the network: the parent strips it from the spawn
// spec and the node, which has the same cookie, puts it back.
//
// Link faults. Both ends send a heartbeat every timing.heartbeat and count the link lost once
// nothing arrived for timing.silence (HARROW_LINK_TIMEOUT_MS: the bound, default 3000 ms;
// heartbeats every quarter, lost after three quarters, checked every quarter, so a silent link is
// noticed within the bound). Heartbeats rather than TCP keepalive/TCP_USER_TIMEOUT: they measure
// the same thing whether or not data is in flight, through TLS and any proxy, with a bound in
// milliseconds that the test can check; keepalive counts whole seconds and idle links only, and
// TCP_USER_TIMEOUT only links with unacknowledged data. A parent whose link is lost raises
// harrow.ActorUnreachable for the child (its callers and its supervisor); the node cancels the
// orphan (its parent channel closes, as when a local parent dies) and kills it with SIGKILL
// after the grace period the parent gave it.

#pragma once

#include <harrow/actor/actor.h>
#include <harrow/spawn/process.h>

#include <kj/compat/tls.h>

namespace harrow {

// How often a link's ends send heartbeats, and how long a silent link is tolerated.
struct LinkTiming {
  kj::Duration heartbeat = 750 * kj::MILLISECONDS;
  kj::Duration silence = 2250 * kj::MILLISECONDS;

  // From a bound: heartbeats every quarter of it, lost after three quarters.
  static LinkTiming withinBound(kj::Duration bound);
  // HARROW_LINK_TIMEOUT_MS (the bound), default 3000.
  static LinkTiming fromEnvironment();
};

// The address of node `node`: from HARROW_NODES ("b=tcp:10.77.0.2:7000,c=tcp:10.77.0.3:7000",
// set by --harrow-nodes=...), or `node` itself if it is an address ("tcp:HOST:PORT"). Throws
// harrow.SpawnFailed, listing the known nodes, for an unknown name.
kj::String nodeAddress(kj::StringPtr node);

// "harrow.ActorUnreachable: actor 'NAME' on node 'NODE': WHY".
kj::Exception actorUnreachable(kj::StringPtr name, kj::StringPtr node, kj::StringPtr why);

// TLS on links (kj-tls, OpenSSL), with mutual authentication: each end presents a certificate
// from a file and accepts only certificates signed by the tree's CA; a node's certificate must
// name the node (a DNS subjectAltName equal to its name in --harrow-nodes, or the host of an
// address given directly). The tree secret is still proved inside the TLS session, over a
// transcript that includes both certificates (LinkTls::binding()). Without these
// settings links are plain TCP with the handshake's MAC (the secret itself never crosses a link;
// what the actors exchange does, readable on the network). docs/CLUSTER.md shows the openssl
// commands.
struct LinkTlsFiles {
  kj::String certificate;  // PEM: this end's certificate (chain)
  kj::String key;          // PEM: its private key
  kj::String ca;           // PEM: the certificates a peer's must be signed by
  // HARROW_TLS_CERT, HARROW_TLS_KEY, HARROW_TLS_CA (--harrow-tls-cert=... and so on): all three,
  // or none (plain TCP); throws if only some are set.
  static kj::Maybe<LinkTlsFiles> fromEnvironment();
};

// A TLS context for links (either end), with the keypair and CA it was made from.
class LinkTls {
public:
  static constexpr size_t FINGERPRINT_BYTES = 32;

  // Throws, naming the file, if one cannot be read or parsed.
  explicit LinkTls(const LinkTlsFiles& files, kj::Maybe<kj::Timer&> timer = nullptr);
  kj::TlsContext& context() { return *tls; }

  // The transcript binding of a link over TLS (PeerOptions::transportBinding, docs/PROTOCOL.md,
  // "authenticate"): SHA-256 of the opener's certificate (DER), then of the acceptor's, this
  // end's own certificate and `peer` (what wrapClient()/wrapServer() of an AuthenticatedStream
  // gave: a kj::TlsPeerIdentity with a certificate) as this end sees them. A relay that
  // terminates TLS shows each end its own certificate instead of the other end's: the two
  // bindings differ and so do the proofs.
  kj::Array<kj::byte> binding(kj::PeerIdentity& peer, bool opener) const;

private:
  kj::TlsPrivateKey key;
  kj::TlsCertificate certificate;
  kj::TlsCertificate ca;
  kj::TlsKeypair keypair;
  kj::Own<kj::TlsContext> tls;
  kj::byte fingerprint[FINGERPRINT_BYTES];  // of `certificate`'s first (this end's) certificate
};

// A TLS session as a stream a Channel reads through (kj-tls's stream reports its socket's fd,
// which would make a Channel read the encrypted bytes itself: this one has none).
kj::Own<kj::AsyncIoStream> tlsStream(kj::Own<kj::AsyncIoStream> tls);

// A child a node runs for this actor: what its supervisor sees of it (a Process), and the relay.
struct RemoteChild {
  kj::Own<Process> process;
  // The parent's end of the child's channel: handshakeWithChild on it, as on a local child's.
  kj::AutoCloseFd channelFd;
  // Where the node's host reaches this one ("" if unknown): see SshChild::homeAddress.
  kj::String homeAddress;
};

// Connects to `node`, authenticates, has it start `executable` as actor `name`. Resolves once the
// child runs (its channel is relayed from then on); throws harrow.SpawnFailed if the node refused
// or could not start it, TransportClosed/AuthenticationFailed if the node could not be reached or
// refused this actor's proof.
Co<RemoteChild> startRemoteChild(Actor& actor, kj::StringPtr node, kj::StringPtr name,
                                 kj::StringPtr executable, kj::Duration gracePeriod,
                                 LinkTiming timing = LinkTiming::fromEnvironment());

// ---- the node's side (runtime/node/), and the pieces both sides share ----

// What a parent does to a spawn spec before it crosses a link: no tree secret (zeroed in place,
// not just unlinked), no address local to the parent's host (stripHostLocalAddresses).
void stripSpawnSpecForLink(wire::Message::Builder message);

// Frames on a link, in and out, and the state its watch needs.
struct LinkEnds {
  Channel& link;
  Channel& local;
  kj::Timer& timer;
  LinkTiming timing;
  kj::TimePoint lastReceived;
  bool paused = false;        // waiting for `local` to be writable: the link is not read
  bool linkWriteShut = false;

  LinkEnds(Channel& link, Channel& local, kj::Timer& timer, LinkTiming timing)
      : link(link), local(local), timer(timer), timing(timing), lastReceived(timer.now()) {}

  // A `link` frame on the link.
  void sendLink(kj::FunctionParam<void(wire::Link::Builder)> fill);
  // Relays the link's frames to `local` until the link's EOF; `link` frames go to `onLink`,
  // every relayed frame through `rewrite` first.
  Co<void> linkToLocal(kj::Function<void(wire::Link::Reader)> onLink,
                       kj::Function<void(wire::Message::Builder)> rewrite);
  // Relays `local`'s frames to the link until `local`'s EOF.
  Co<void> localToLink(kj::Function<void(wire::Message::Builder)> rewrite);
  // Sends heartbeats; throws `lost(why)` once the link has been silent for timing.silence.
  Co<void> watch(kj::Function<kj::Exception(kj::StringPtr why)> lost);
};

}  // namespace harrow
