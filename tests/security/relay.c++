// An attacker for the relay tests (tests/security:relay_test): a process in the middle of a TCP
// channel, as a squatter of an address a tree connects to would be. It passes the handshake
// through untouched (hellos and proofs: it does not know the secret, and needs not), then
// tampers with what the opener sends. Plain libc, so that it runs from a copy as `nobody`.
//
//   relay TARGET MODE [HEX] [--listen=HOST:PORT] [--at=N]
//       listens on a free loopback port (or HOST:PORT; prints "listening PORT"), relays one
//       connection to TARGET (a loopback port, or HOST:PORT: a node in another network
//       namespace, for a link between hosts), prints "done MODE" once either side has closed,
//       and exits.
//
// The opener's frames after its `authenticate` (its third frame on) are tagged (docs/PROTOCOL.md,
// "Frame protection": frame, then 16 bytes). MODE says what happens to them, from the Nth
// (--at, default 0: the first):
//   pass     nothing (the control)
//   inject   before it: HEX (a frame of the test's choosing, e.g. cancelActor or link.kill) and a
//            tag of 16 zero bytes
//   drop     it is not passed on
//   reorder  it and the next are passed on the next first
//   modify   one bit of it is flipped
//   replay   it is passed on twice

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

constexpr size_t TAG = 16;

void say(const std::string& text) { (void)!write(STDOUT_FILENO, text.data(), text.size()); }

bool sendAll(int fd, const std::string& bytes) {
  size_t at = 0;
  while (at < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    at += n;
  }
  return true;
}

uint32_t le32(const std::string& s, size_t at) {
  auto b = reinterpret_cast<const unsigned char*>(s.data()) + at;
  return uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
}

// The length of the frame at the start of `buffer` (tag included from the third on), or 0 if it
// has not all arrived.
size_t frameLength(const std::string& buffer, size_t index) {
  if (buffer.size() < 8) return 0;
  uint64_t segments = uint64_t(le32(buffer, 0)) + 1;
  if (segments > 512) exit(4);  // not a harrow channel
  size_t table = (segments / 2 + 1) * 8;
  if (buffer.size() < table) return 0;
  uint64_t length = table;
  for (uint64_t i = 0; i < segments; ++i) length += uint64_t(le32(buffer, 4 + 4 * i)) * 8;
  if (index >= 2) length += TAG;
  return buffer.size() >= length ? length : 0;
}

std::string fromHex(const char* hex) {
  std::string bytes;
  for (size_t i = 0; hex[i] && hex[i + 1]; i += 2) {
    bytes += char(std::stoi(std::string(hex + i, 2), nullptr, 16));
  }
  return bytes;
}

// "HOST:PORT", or a port on loopback.
sockaddr_in addressOf(const std::string& text) {
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(atoi(text.c_str()));
  } else if (inet_pton(AF_INET, text.substr(0, colon).c_str(), &address.sin_addr) != 1) {
    fprintf(stderr, "relay: not HOST:PORT: %s\n", text.c_str());
    exit(2);
  } else {
    address.sin_port = htons(atoi(text.c_str() + colon + 1));
  }
  return address;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args;
  std::string listenAt = "0";
  size_t at = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--listen=", 0) == 0) {
      listenAt = arg.substr(9);
    } else if (arg.rfind("--at=", 0) == 0) {
      at = std::stoul(arg.substr(5));
    } else {
      args.push_back(arg);
    }
  }
  if (args.size() < 2) {
    fprintf(stderr, "usage: relay TARGET MODE [HEX] [--listen=HOST:PORT] [--at=N]\n");
    return 2;
  }
  std::string mode = args[1];
  std::string injected = args.size() > 2 ? fromHex(args[2].c_str()) + std::string(TAG, '\0') : "";

  int listener = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in address = addressOf(listenAt);
  socklen_t length = sizeof(address);
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listener, 4) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    perror("relay: listen");
    return 3;
  }
  say("listening " + std::to_string(ntohs(address.sin_port)) + "\n");
  int opener = accept(listener, nullptr, nullptr);
  int acceptor = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in target = addressOf(args[0]);
  if (opener < 0 || connect(acceptor, reinterpret_cast<sockaddr*>(&target), sizeof(target)) != 0) {
    perror("relay: connect");
    return 3;
  }

  std::string pending;  // the opener's bytes not yet passed on (an incomplete frame)
  std::string held;     // reorder: the first tagged frame, until the second
  size_t index = 0;     // the opener's frames seen so far
  struct pollfd fds[2] = {{opener, POLLIN, 0}, {acceptor, POLLIN, 0}};
  bool open = true;
  while (open) {
    if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
    char chunk[65536];
    if (fds[1].revents) {  // the acceptor's side: passed on as it is
      ssize_t n = recv(acceptor, chunk, sizeof(chunk), 0);
      if (n <= 0 || !sendAll(opener, std::string(chunk, n))) open = false;
    }
    if (open && fds[0].revents) {
      ssize_t n = recv(opener, chunk, sizeof(chunk), 0);
      if (n <= 0) break;
      pending.append(chunk, n);
      while (size_t frame = frameLength(pending, index)) {
        std::string bytes = pending.substr(0, frame);
        pending.erase(0, frame);
        std::string out;
        // 0: the one to tamper with (the --at'th tagged frame)
        size_t tagged = index >= 2 + at ? index - 2 - at : SIZE_MAX;
        ++index;
        if (tagged != 0 && !(mode == "reorder" && tagged == 1)) {
          out = bytes;
        } else if (mode == "inject") {
          out = injected + bytes;
        } else if (mode == "drop") {
          out = "";
        } else if (mode == "reorder") {
          if (tagged == 0) {
            held = bytes;
          } else {
            out = bytes + held;
          }
        } else if (mode == "modify") {
          bytes[bytes.size() - TAG - 1] ^= 1;
          out = bytes;
        } else if (mode == "replay") {
          out = bytes + bytes;
        } else {
          out = bytes;
        }
        if (!out.empty() && !sendAll(acceptor, out)) open = false;
      }
    }
  }
  say("done " + mode + "\n");
  return 0;
}
