#include <harrow/ipc/transport.h>

#include <harrow/co/cancel_scope.h>

#include <kj/debug.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>


namespace harrow {
namespace {

constexpr size_t SUN_PATH_SIZE = sizeof(sockaddr_un::sun_path);

kj::Maybe<uint16_t> parsePort(kj::StringPtr text) {
  if (text.size() == 0 || text.size() > 5) return nullptr;
  uint32_t port = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return nullptr;
    port = port * 10 + (c - '0');
  }
  if (port > 65535) return nullptr;
  return uint16_t(port);
}

[[noreturn]] void badAddress(kj::StringPtr text, kj::StringPtr why) {
  kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
      kj::str("invalid address \"", text, "\": ", why)));
}

// The uid of the process at the other end of a Unix socket (SO_PEERCRED: the credentials it had
// when it connected, or when it called listen()).
uid_t peerUid(kj::AsyncIoStream& stream) {
  struct ucred credentials;
  uint length = sizeof(credentials);
  stream.getsockopt(SOL_SOCKET, SO_PEERCRED, &credentials, &length);
  return credentials.uid;
}

bool isUnix(Address::Kind kind) {
  return kind == Address::Kind::UNIX || kind == Address::Kind::UNIX_ABSTRACT;
}

// Harrow coalesces writes itself; Nagle's algorithm would only delay a lone message.
void setNoDelay(kj::AsyncIoStream& stream) {
  int one = 1;
  stream.setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace

bool isHostLocal(kj::StringPtr address) {
  return address.startsWith("unix:") || address.startsWith("tcp:127.") ||
         address.startsWith("tcp:localhost:") || address.startsWith("tcp:[::1]:");
}

kj::String localAddressToward(kj::StringPtr hostParam) {
  kj::StringPtr host = hostParam;
  kj::String unbracketed;
  if (host.startsWith("[") && host.endsWith("]")) {
    unbracketed = kj::heapString(host.slice(1, host.size() - 1));
    host = unbracketed;
  }
  struct addrinfo hints = {};
  hints.ai_socktype = SOCK_DGRAM;
  struct addrinfo* found = nullptr;
  int error = getaddrinfo(host.cStr(), "9", &hints, &found);
  if (error != 0) {
    kj::throwFatalException(KJ_EXCEPTION(FAILED, "cannot resolve host", host, gai_strerror(error)));
  }
  KJ_DEFER(freeaddrinfo(found));
  int fd;
  KJ_SYSCALL(fd = socket(found->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  KJ_DEFER(close(fd));
  KJ_SYSCALL(::connect(fd, found->ai_addr, found->ai_addrlen), "no route to", host);
  struct sockaddr_storage local = {};
  socklen_t length = sizeof(local);
  KJ_SYSCALL(getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length));
  char text[INET6_ADDRSTRLEN] = {};
  if (local.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr, text, sizeof(text));
    return kj::str("[", text, "]");
  }
  inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&local)->sin_addr, text, sizeof(text));
  return kj::str(text);
}

Address Address::parse(kj::StringPtr text) {
  Address result;
  if (text.startsWith("tcp:")) {
    kj::StringPtr rest = text.slice(4);
    kj::StringPtr portText;
    if (rest.startsWith("[")) {
      KJ_IF_MAYBE(close, rest.findFirst(']')) {
        if (rest.size() <= *close + 1 || rest[*close + 1] != ':') {
          badAddress(text, "expected \":PORT\" after \"]\"");
        }
        result.host = kj::heapString(rest.slice(1, *close));
        portText = rest.slice(*close + 2);
      } else {
        badAddress(text, "missing \"]\"");
      }
    } else {
      KJ_IF_MAYBE(colon, rest.findLast(':')) {
        result.host = kj::heapString(rest.slice(0, *colon));
        portText = rest.slice(*colon + 1);
      } else {
        badAddress(text, "expected tcp:HOST:PORT");
      }
      if (result.host.asPtr().findFirst(':') != nullptr) {
        badAddress(text, "an IPv6 host needs brackets: tcp:[::1]:PORT");
      }
    }
    if (result.host.size() == 0) badAddress(text, "empty host");
    KJ_IF_MAYBE(port, parsePort(portText)) {
      result.port = *port;
    } else {
      badAddress(text, "port must be a number from 0 to 65535");
    }
    result.kind = Kind::TCP;
  } else if (text.startsWith("unix:@")) {
    kj::StringPtr name = text.slice(6);
    if (name.size() == 0) badAddress(text, "empty abstract socket name");
    // sun_path holds a leading NUL, the name, and the NUL KJ appends.
    if (name.size() + 2 > SUN_PATH_SIZE) {
      badAddress(text, kj::str("abstract socket name longer than ", SUN_PATH_SIZE - 2, " bytes"));
    }
    result.kind = Kind::UNIX_ABSTRACT;
    result.path = kj::heapString(name);
  } else if (text.startsWith("unix:")) {
    kj::StringPtr path = text.slice(5);
    if (path.size() == 0) badAddress(text, "empty socket path");
    if (path.size() + 1 > SUN_PATH_SIZE) {
      badAddress(text, kj::str("socket path longer than ", SUN_PATH_SIZE - 1,
                               " bytes (use unix:@name, an abstract socket)"));
    }
    result.kind = Kind::UNIX;
    result.path = kj::heapString(path);
  } else {
    badAddress(text, "expected tcp:HOST:PORT, unix:/PATH or unix:@NAME");
  }
  if (result.host.asPtr().findFirst('\0') != nullptr ||
      result.path.asPtr().findFirst('\0') != nullptr) {
    badAddress(text, "contains a NUL byte");
  }
  return result;
}

kj::String Address::toString() const {
  switch (kind) {
    case Kind::TCP:
      if (host.asPtr().findFirst(':') != nullptr) return kj::str("tcp:[", host, "]:", port);
      return kj::str("tcp:", host, ":", port);
    case Kind::UNIX:
      return kj::str("unix:", path);
    case Kind::UNIX_ABSTRACT:
      return kj::str("unix:@", path);
  }
  KJ_UNREACHABLE;
}

kj::String Address::toKjAddress() const {
  switch (kind) {
    case Kind::TCP:
      if (host.asPtr().findFirst(':') != nullptr) return kj::str("[", host, "]:", port);
      return kj::str(host, ":", port);
    case Kind::UNIX:
      return kj::str("unix:", path);
    case Kind::UNIX_ABSTRACT:
      return kj::str("unix-abstract:", path);
  }
  KJ_UNREACHABLE;
}

Co<kj::Own<Channel>> connect(kj::Network& network, kj::StringPtr addressParam,
                             ChannelOptions options) {
  auto addressText = kj::heapString(addressParam);  // used after suspending: the caller's may go
  Address address = Address::parse(addressText);
  auto target = co_await network.parseAddress(address.toKjAddress());
  auto connected = co_await errorOr([&]() { return target->connect(); });
  KJ_IF_MAYBE(exception, connected.error()) {
    kj::throwFatalException(transportClosed(
        kj::str("connect to ", addressText, " failed: ", exception->getDescription())));
  }
  auto stream = kj::mv(*connected);
  if (address.kind == Address::Kind::TCP) setNoDelay(*stream);
  if (isUnix(address.kind)) {
    // Whoever listens on an abstract name (no file permissions guard it) may be anyone: only a
    // process of this user is a harrow actor of ours. (The handshake's proof is checked anyway.)
    uid_t uid = peerUid(*stream);
    if (uid != geteuid()) {
      kj::throwFatalException(transportClosed(kj::str(
          "connect to ", addressText, " refused: it is served by uid ", uid, ", not this user")));
    }
  }
  co_return kj::heap<Channel>(kj::mv(stream), options);
}

kj::Maybe<Listener::FileId> Listener::socketFileAt(kj::StringPtr path) {
  struct stat st;
  if (lstat(path.cStr(), &st) != 0 || !S_ISSOCK(st.st_mode)) return nullptr;
  return FileId{uint64_t(st.st_dev), uint64_t(st.st_ino)};
}

Co<kj::Own<Listener>> Listener::bind(kj::Network& network, kj::StringPtr addressParam,
                                     ChannelOptions options) {
  auto addressText = kj::heapString(addressParam);  // used after suspending: the caller's may go
  Address address = Address::parse(addressText);
  auto local = co_await network.parseAddress(address.toKjAddress());

  kj::Own<kj::ConnectionReceiver> receiver;
  KJ_IF_MAYBE(bindError, kj::runCatchingExceptions([&]() { receiver = local->listen(); })) {
    // A socket file at the path is either live (someone listens) or stale (its listener died
    // without removing it). Only a connection attempt tells them apart.
    if (address.kind != Address::Kind::UNIX || socketFileAt(address.path) == nullptr) {
      kj::throwFatalException(kj::mv(*bindError));
    }
    bool live = co_await errorOf([&]() { return local->connect(); }) == nullptr;
    if (live) {
      kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
          kj::str("address in use: ", addressText, " (another process is listening)")));
    }
    KJ_SYSCALL(unlink(address.path.cStr()), "removing stale socket file", address.path);
    receiver = local->listen();
  }
  co_return kj::heap<Listener>(kj::mv(receiver), kj::mv(address), options);
}

Listener::Listener(kj::Own<kj::ConnectionReceiver> receiverParam, Address addressParam,
                   ChannelOptions options)
    : receiver(kj::mv(receiverParam)), address(kj::mv(addressParam)), options(options) {
  if (address.kind == Address::Kind::TCP) address.port = receiver->getPort();
  if (address.kind == Address::Kind::UNIX) {
    // Only this user may connect (the runtime directory is 0700 too, but a path given explicitly
    // may be anywhere). A connection made before this chmod is still refused by accept().
    KJ_SYSCALL(chmod(address.path.cStr(), 0600), address.path);
    socketFile = socketFileAt(address.path);
  }
  addressText = address.toString();
}

Listener::~Listener() noexcept(false) {
  receiver = nullptr;  // close the listening socket before its file goes
  KJ_IF_MAYBE(created, socketFile) {
    KJ_IF_MAYBE(now, socketFileAt(address.path)) {
      if (*now == *created) unlink(address.path.cStr());
    }
  }
}

Co<kj::Own<Channel>> Listener::accept() {
  for (;;) {
    auto stream = co_await receiver->accept();
    // A process of another user is closed at once, before it can send a byte of the handshake:
    // an abstract socket has no file permissions to keep it out. Not reported (a stranger
    // knocking must not fill anyone's log); counted.
    if (isUnix(address.kind) && peerUid(*stream) != geteuid()) {
      ++refused;
      continue;
    }
    if (address.kind == Address::Kind::TCP) setNoDelay(*stream);
    co_return kj::heap<Channel>(kj::mv(stream), options);
  }
}

}  // namespace harrow
