// harrow-node: the daemon that runs a tree's actors on a host other than their parent's
// (<harrow/spawn/link.h> says how a parent uses it; docs/PROTOCOL.md, "Links between hosts" the
// wire).
//
// One node per host, long-lived, listening on TCP. A parent that proves the tree's secret (the
// node reads the same cookie) asks it to start a child: the node starts the named program (only
// ones it allows) exactly as a local parent would, relays the child's channel over the link,
// reports the child's exit, and supervises it as its parent would were the parent on this host:
// a lost link (silent past the bound, or closed) cancels the orphan, which is killed (SIGKILL)
// after the grace period its parent gave it. When the node stops, every child it runs is killed.
//
//   harrow-node --listen=tcp:10.77.0.2:7000 --allow=/opt/app/bin/worker [--harrow-cookie=PATH]

#pragma once

#include <harrow/spawn/link.h>

namespace harrow {

struct NodeOptions {
  kj::StringPtr name = "node";
  // Where the node accepts links: tcp:HOST:PORT (port 0: any; addresses() gives the real one).
  kj::Vector<kj::String> listenAddresses;
  // The programs a parent may ask for (exact paths). allowAny: every program (a tree's secret is
  // then enough to run anything as the node's user: only on hosts that trust the whole tree).
  kj::Vector<kj::String> allowedExecutables;
  bool allowAny = false;
  // A link must finish its handshake and spawn request within this.
  kj::Duration handshakeTimeout = 5 * kj::SECONDS;
  // TLS on every link (<harrow/spawn/link.h>): the node's certificate, key and the tree's CA;
  // parents must present a certificate the CA signed. Without: plain TCP.
  kj::Maybe<LinkTlsFiles> tls;
  // Told each child's start and end: "started NAME pid PID", "NAME ended: HOW" (its channel
  // ended first: the normal way), "orphan NAME ended: HOW" (its parent's link was lost).
  kj::Function<void(kj::StringPtr event)> report = [](kj::StringPtr) {};
};

class Node final : public PeerHost {
public:
  Node(kj::AsyncIoContext& io, TreeSecret secret, NodeOptions options);
  ~Node() noexcept(false);
  KJ_DISALLOW_COPY(Node);

  // Listens, then calls `ready` with the bound addresses, then serves links until cancelled;
  // cancelled, it kills every child it runs (and reaps them) before it resolves.
  Co<void> run(kj::Function<void(kj::ArrayPtr<const kj::String>)> ready);

  // How many children run now.
  size_t childCount() const { return children; }

  // PeerHost: the node authenticates links; it serves no actor interface.
  const ActorIdentity& identity() const override { return id; }
  const TreeSecret& treeSecret() const override { return secret; }
  void authenticationFailed(const kj::Exception& why) override;
  kj::Maybe<ActorServer&> findServer(uint64_t) override { return nullptr; }
  void controlMessage(Peer&, wire::Message::Reader) override {}
  kj::Maybe<TaskNursery&> serviceNursery() override { return nullptr; }
  kj::Timer& timer() override { return io.provider->getTimer(); }

private:
  kj::AsyncIoContext& io;
  ActorIdentity id;
  TreeSecret secret;
  NodeOptions options;
  size_t children = 0;
  bool warnedAboutAuthentication = false;

  kj::Maybe<kj::Own<LinkTls>> tls;

  bool allows(kj::StringPtr executable) const;
  Co<void> acceptLoop(kj::ConnectionReceiver& receiver, TaskNursery& links);
  // `parent`: set once the link's opener has proved itself (whose violations to log).
  Co<void> serveLink(kj::Own<kj::AsyncIoStream> stream, kj::Maybe<ActorIdentity>& parent);
  Co<void> superviseChild(Channel& link, wire::NodeSpawn::Reader spawn, kj::StringPtr parent);
};

}  // namespace harrow
