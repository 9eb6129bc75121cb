// Transport addresses, and making Channels from them: connect() and Listener.
//
// Address strings (the only form harrow passes around, e.g. in SpawnSpec.bindAddresses):
//   tcp:127.0.0.1:PORT   tcp:[::1]:PORT   tcp:localhost:PORT
//   unix:/path/to/socket                 a Unix socket file
//   unix:@name                           a Linux abstract Unix socket: no file to clean up and no
//                                        directory needed; the name lives as long as its listener
// PORT 0 (bind only) picks an ephemeral port; Listener::getAddress() reports the real one.
//
//   auto listener = co_await harrow::Listener::bind(network, "tcp:127.0.0.1:0");
//   auto client = co_await harrow::connect(network, listener->getAddress());
//   auto server = co_await listener->accept();
//
// The channels made here own their socket and do their own I/O on it (runtime/fd_stream.h: watched
// for readability only, direct read()/sendmsg()); TCP sockets get TCP_NODELAY first.

#pragma once

#include <harrow/ipc/channel.h>

#include <kj/async-io.h>
#include <kj/string.h>

namespace harrow {

struct Address {
  enum class Kind { TCP, UNIX, UNIX_ABSTRACT };

  Kind kind = Kind::TCP;
  kj::String host;    // TCP: IPv4 or IPv6 literal (IPv6 without brackets), or a host name
  uint16_t port = 0;  // TCP
  kj::String path;    // UNIX: the socket file's path; UNIX_ABSTRACT: the name, without the '@'

  // Throws a kj::Exception (FAILED) saying what is wrong with `text`.
  static Address parse(kj::StringPtr text);

  // The harrow form, as accepted by parse().
  kj::String toString() const;

  // The form kj::Network::parseAddress() understands ("[::1]:80", "unix-abstract:name", ...).
  kj::String toKjAddress() const;
};

// Whether `address` means something only on this host: a Unix socket, or TCP on loopback
// (tcp:127.*, tcp:[::1], tcp:localhost). Such an address does not cross to another host.
bool isHostLocal(kj::StringPtr address);

// The address of this host's interface that a packet to `host` (an IP literal or a name) leaves
// from, as a harrow address's host part (an IPv6 one in brackets): where an actor on `host` can
// reach this one (on a network without NAT between them). No packet is sent: a UDP socket
// connected to `host` says which source address the kernel picked. Throws if `host` does not
// resolve or no route leads there.
kj::String localAddressToward(kj::StringPtr host);

// Connects to `address`. A refused or failed connection throws TransportClosed (the peer is not
// there), as does a Unix socket served by a process of another uid (SO_PEERCRED); a malformed
// address or a failed name lookup throws as such.
Co<kj::Own<Channel>> connect(kj::Network& network, kj::StringPtr address,
                             ChannelOptions options = {});

// A bound, listening address that accepts Channels. Destroying it stops listening (pending
// accept() promises must be dropped first) and removes the socket file it created, if any.
class Listener {
public:
  // Binds and listens. For a unix socket file that exists but has no listener (left behind by a
  // process that died), the file is removed and the bind retried; a live one is "in use".
  static Co<kj::Own<Listener>> bind(kj::Network& network, kj::StringPtr address,
                                    ChannelOptions options = {});

  // Use bind().
  Listener(kj::Own<kj::ConnectionReceiver> receiver, Address address, ChannelOptions options);
  ~Listener() noexcept(false);
  KJ_DISALLOW_COPY(Listener);

  // The bound address in harrow form, with the actual port: what peers pass to connect().
  kj::StringPtr getAddress() const { return addressText; }

  // The next incoming connection, as a Channel with this listener's options. On a Unix socket,
  // connections from processes of another uid (SO_PEERCRED) are closed unseen; socket files are
  // made mode 0600.
  Co<kj::Own<Channel>> accept();

  // How many connections accept() refused because they came from another uid.
  uint64_t refusedConnections() const { return refused; }

private:
  kj::Own<kj::ConnectionReceiver> receiver;
  Address address;
  kj::String addressText;
  ChannelOptions options;
  uint64_t refused = 0;
  // The socket file this listener created (device, inode), so the destructor removes only that
  // file and not one a later listener put at the same path.
  struct FileId {
    uint64_t device;
    uint64_t inode;
    bool operator==(const FileId&) const = default;
  };
  kj::Maybe<FileId> socketFile;

  static kj::Maybe<FileId> socketFileAt(kj::StringPtr path);
};

}  // namespace harrow
