// link_tap: a man in the middle of a link between hosts, for cluster_test (issue #19, 2). Run in
// the parent's namespace between it and a harrow-node; the parent is told the tap's address for
// the node (--harrow-nodes=b=tcp:TAP).
//
//   link_tap --listen=10.77.0.1:7100 --to=10.77.0.2:7000 --capture=PATH [--downgrade]
//
// Relays each connection both ways and appends every byte it relays to PATH.up (parent to node)
// and PATH.down (node to parent): what an eavesdropper on the path reads. With --downgrade it
// first rewrites each side's hello (the first frame each way) to ask for tags only
// (frameProtection authenticated), as an attacker who wants links in the clear would: the
// handshake's proofs cover the hellos, so that must fail (docs/PROTOCOL.md, "Frame protection").
// Prints "link_tap: listening" once it accepts. Runs until killed.

#include <harrow/wire.capnp.h>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/debug.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace {

sockaddr_in parseAddress(const std::string& text) {
  auto colon = text.rfind(':');
  KJ_REQUIRE(colon != std::string::npos, "HOST:PORT", text);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(std::stoi(text.substr(colon + 1)));
  KJ_REQUIRE(inet_pton(AF_INET, text.substr(0, colon).c_str(), &address.sin_addr) == 1, text);
  return address;
}

void writeAll(int fd, const void* data, size_t size) {
  auto bytes = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n;
    KJ_SYSCALL(n = write(fd, bytes, size));
    bytes += n;
    size -= n;
  }
}

// One direction: [the hello rewritten,] then every byte as it comes, copied to `capture`.
void relay(int from, int to, int capture, bool downgrade) {
  try {
    if (downgrade) {
      capnp::StreamFdMessageReader hello(from);
      capnp::MallocMessageBuilder rewritten;
      rewritten.setRoot(hello.getRoot<harrow::wire::Message>());
      auto root = rewritten.getRoot<harrow::wire::Message>();
      if (root.isHello()) {
        root.getHello().setFrameProtection(harrow::wire::FrameProtection::AUTHENTICATED);
      }
      auto words = capnp::messageToFlatArray(rewritten);
      writeAll(capture, words.asBytes().begin(), words.asBytes().size());
      writeAll(to, words.asBytes().begin(), words.asBytes().size());
    }
    char buffer[16384];
    for (;;) {
      ssize_t n = read(from, buffer, sizeof(buffer));
      if (n <= 0) break;
      writeAll(capture, buffer, n);
      writeAll(to, buffer, n);
    }
  } catch (const kj::Exception& e) {
    fprintf(stderr, "link_tap: %s\n", e.getDescription().cStr());
  }
  shutdown(to, SHUT_WR);
}

}  // namespace

int main(int argc, char** argv) {
  std::string listenAt, target, capture;
  bool downgrade = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--listen=", 0) == 0) listenAt = arg.substr(9);
    if (arg.rfind("--to=", 0) == 0) target = arg.substr(5);
    if (arg.rfind("--capture=", 0) == 0) capture = arg.substr(10);
    if (arg == "--downgrade") downgrade = true;
  }
  if (listenAt.empty() || target.empty() || capture.empty()) {
    fprintf(stderr, "usage: link_tap --listen=HOST:PORT --to=HOST:PORT --capture=PATH\n");
    return 2;
  }
  int up = open((capture + ".up").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int down = open((capture + ".down").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  KJ_REQUIRE(up >= 0 && down >= 0, "cannot open the capture files", capture);

  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  auto address = parseAddress(listenAt);
  KJ_SYSCALL(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), listenAt);
  KJ_SYSCALL(listen(listener, 16));
  printf("link_tap: listening\n");
  fflush(stdout);
  for (;;) {
    int parent = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (parent < 0) continue;
    int node = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto to = parseAddress(target);
    if (connect(node, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
      perror("link_tap: connect");
      close(parent);
      close(node);
      continue;
    }
    setsockopt(parent, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(node, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    // Both directions until both end; the sockets stay open (the tap lives as long as the test).
    std::thread(relay, parent, node, up, downgrade).detach();
    std::thread(relay, node, parent, down, downgrade).detach();
  }
}
