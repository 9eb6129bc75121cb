// tls_relay: a man in the middle of a link over TLS, for cluster_test (issue #19, 2). It
// terminates TLS on both sides with a certificate of its own, one the tree's CA signed for the
// node's name (the strongest relay: it passes both ends' certificate checks), and passes the
// plaintext through unchanged, the harrow handshake included.
//
//   tls_relay --listen=10.77.0.1:7100 --to=10.77.0.2:7000 --name=b
//             --cert=impostor-b.pem --key=impostor-b.key --ca=ca.pem
//
// A parent told the relay's address for node `name` (--harrow-nodes=b=tcp:RELAY) sees the relay's
// certificate as the node's, the node sees it as the parent's: the handshake's transcript binds
// both certificates (LinkTls::binding()), so the two ends' proofs differ and the link fails with
// harrow.AuthenticationFailed. Prints "tls_relay: listening" once it accepts. Runs until killed.

#include <harrow/spawn/link.h>

#include <kj/async-io.h>
#include <kj/debug.h>

#include <stdio.h>
#include <string.h>

#include <string>

namespace {

kj::Promise<void> pump(kj::AsyncIoStream& from, kj::AsyncIoStream& to) {
  return from.pumpTo(to).then([&to](uint64_t) { to.shutdownWrite(); });
}

kj::Promise<void> relay(harrow::LinkTls& tls, kj::Network& network, kj::StringPtr target,
                        kj::StringPtr name, kj::Own<kj::AsyncIoStream> parent) {
  return tls.context()
      .wrapServer(kj::mv(parent))
      .then([&tls, &network, target, name](kj::Own<kj::AsyncIoStream> parent) {
        return network.parseAddress(target)
            .then([](kj::Own<kj::NetworkAddress> address) { return address->connect(); })
            .then([&tls, name](kj::Own<kj::AsyncIoStream> node) {
              return tls.context().wrapClient(kj::mv(node), name);
            })
            .then([parent = kj::mv(parent)](kj::Own<kj::AsyncIoStream> node) mutable {
              auto up = pump(*parent, *node);
              auto down = pump(*node, *parent);
              return up.exclusiveJoin(kj::mv(down)).attach(kj::mv(parent), kj::mv(node));
            });
      })
      .catch_(
          [](kj::Exception&& e) { fprintf(stderr, "tls_relay: %s\n", e.getDescription().cStr()); });
}

}  // namespace

int main(int argc, char** argv) {
  std::string listenAt, target, name, cert, key, ca;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* prefix, std::string& out) {
      if (arg.rfind(prefix, 0) == 0) out = arg.substr(strlen(prefix));
    };
    value("--listen=", listenAt);
    value("--to=", target);
    value("--name=", name);
    value("--cert=", cert);
    value("--key=", key);
    value("--ca=", ca);
  }
  if (listenAt.empty() || target.empty() || name.empty() || cert.empty() || key.empty() ||
      ca.empty()) {
    fprintf(stderr,
            "usage: tls_relay --listen=HOST:PORT --to=HOST:PORT --name=NODE --cert=PEM "
            "--key=PEM --ca=PEM\n");
    return 2;
  }
  auto io = kj::setupAsyncIo();
  harrow::LinkTls tls(
      harrow::LinkTlsFiles{kj::str(cert.c_str()), kj::str(key.c_str()), kj::str(ca.c_str())});
  auto& network = io.provider->getNetwork();
  auto listener = network.parseAddress(listenAt).wait(io.waitScope)->listen();
  printf("tls_relay: listening\n");
  fflush(stdout);
  struct Ignore final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}  // relay() logs its own
  } ignore;
  kj::TaskSet links(ignore);
  auto targetText = kj::str(target.c_str());
  auto nameText = kj::str(name.c_str());
  for (;;) {
    auto parent = listener->accept().wait(io.waitScope);
    links.add(relay(tls, network, targetText, nameText, kj::mv(parent)));
  }
}
