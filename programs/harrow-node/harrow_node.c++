// harrow-node: see <harrow/node/node.h>.
//
//   harrow-node --listen=tcp:HOST:PORT [--listen=...] --allow=PATH [--allow=...] [--allow-any]
//               [--name=NAME] [--harrow-cookie=PATH] [--harrow-log=LEVEL]
//               [--harrow-nodes=NAME=ADDR,...]  (inherited by the children it runs)
//               [--harrow-tls-cert=PEM --harrow-tls-key=PEM --harrow-tls-ca=PEM]  (TLS links,
//               the node's own and, inherited, those of the children it runs)
//               [--harrow-insecure-links]  (links without TLS tagged, not encrypted: only if
//               the parents say so too; inherited)
//               [--harrow-encrypt]  (every link encrypted, over TLS too, and every channel with
//               frame tags of the children it runs: inherited)
//
// Prints "harrow-node: listening on ADDRESS" per address once it accepts links, then a line per
// child started and ended (NodeOptions::report). SIGINT or SIGTERM
// stops it; the children it runs are killed.

#include <harrow/node/node.h>

#include <harrow/actor/cookie.h>
#include <harrow/co/version.h>
#include <harrow/flags.h>
#include <harrow/wire.capnp.h>

#include <kj/debug.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

// The harrow flags it takes, parsed as harrow::main parses them (<harrow/flags.h>): the tree's
// cookie and log level, and what the children it runs inherit: the nodes they may start their own
// children on (<harrow/spawn/link.h>), TLS on links, links without TLS tagged, not encrypted
// (the parent must say so too), and encryption of every channel that carries frame tags, as a
// root's --harrow-encrypt asks for its own (either end of a link asking is enough: docs/PROTOCOL.md,
// "Frame protection"). A node's children get their environment from the node, not from the
// root: without it here, a tree run with --harrow-encrypt had tagged-only channels on other hosts.
constexpr kj::StringPtr HARROW_FLAGS[] = {
    "--harrow-cookie"_kj,         "--harrow-log"_kj,     "--harrow-nodes"_kj,
    "--harrow-tls-cert"_kj,       "--harrow-tls-key"_kj, "--harrow-tls-ca"_kj,
    "--harrow-insecure-links"_kj, "--harrow-encrypt"_kj,
};

int main(int argc, char** argv) {
  kj::UnixEventPort::captureChildExit();
  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureSignal(SIGTERM);
  harrow::NodeOptions options;
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (arg == "--version") {
      printf("harrow-node %s (wire protocol %u)\n", harrow::VERSION.cStr(),
             harrow::wire::PROTOCOL_VERSION);
      return 0;
    } else if (arg.startsWith("--listen=")) {
      options.listenAddresses.add(kj::heapString(arg.slice(9)));
    } else if (arg.startsWith("--allow=")) {
      options.allowedExecutables.add(kj::heapString(arg.slice(8)));
    } else if (arg == "--allow-any") {
      options.allowAny = true;
    } else if (arg.startsWith("--name=")) {
      options.name = arg.slice(7);
    } else if (!harrow::applyFlag(arg, HARROW_FLAGS)) {
      fprintf(stderr, "harrow-node: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (options.listenAddresses.size() == 0) {
    fprintf(stderr, "harrow-node: --listen=tcp:HOST:PORT is required\n");
    return 2;
  }
  options.report = [](kj::StringPtr event) {
    printf("harrow-node: %s\n", event.cStr());
    fflush(stdout);
  };
  harrow::setLogLevelFromEnvironment();
  options.handshakeTimeout = harrow::handshakeTimeoutFromEnvironment();
  // The node's own TLS settings are also what the children it runs use for their links.
  auto io = kj::setupAsyncIo();
  kj::Maybe<harrow::TreeSecret> secret;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   secret = harrow::readCookie(harrow::cookiePathFromEnvironment());
                 })) {
    fprintf(stderr, "harrow-node: %s\n", e->getDescription().cStr());
    return 1;
  }
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   KJ_IF_MAYBE(files, harrow::LinkTlsFiles::fromEnvironment()) {
                     options.tls = kj::mv(*files);
                   }
                 })) {
    fprintf(stderr, "harrow-node: %s\n", e->getDescription().cStr());
    return 2;
  }
  kj::Maybe<kj::Own<harrow::Node>> made;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   made = kj::heap<harrow::Node>(io, kj::mv(KJ_ASSERT_NONNULL(secret)),
                                                 kj::mv(options));
                 })) {
    fprintf(stderr, "harrow-node: %s\n", e->getDescription().cStr());
    return 1;
  }
  harrow::Node& node = *KJ_ASSERT_NONNULL(made);
  auto stop = io.unixEventPort.onSignal(SIGINT)
      .exclusiveJoin(io.unixEventPort.onSignal(SIGTERM))
      .then([](siginfo_t) {});
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                   node.run([](kj::ArrayPtr<const kj::String> addresses) {
                         for (auto& a : addresses) {
                           printf("harrow-node: listening on %s\n", a.cStr());
                         }
                         fflush(stdout);
                       })
                       .exclusiveJoin(kj::mv(stop))
                       .wait(io.waitScope);
                 })) {
    fprintf(stderr, "harrow-node: %s\n", e->getDescription().cStr());
    return 1;
  }
  return 0;
}
