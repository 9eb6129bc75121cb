// A small etcd v3 client (EtcdClient) over etcd's HTTP/JSON gateway, and the registry address
// that configures it (EtcdAddress). The etcd registry backend (etcd.h) is its user.
//
//   auto address = EtcdAddress::parse("etcds://etcd1:2379,etcd2:2379/harrow/farm?ca=/etc/ca.pem");
//   EtcdClient client(timer, network, address);
//   co_await client.put("/harrow/farm/x", "value", (co_await client.grantLease(5 * kj::SECONDS)).id);
//   auto range = co_await client.rangePrefix("/harrow/farm/");
//
// Registry address: etcd[s]://HOST:PORT[,HOST:PORT...][/PREFIX][?OPTION=VALUE&...]
//   e.g. etcd://127.0.0.1:2379/harrow/build-farm, or three members of a cluster:
//        etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/harrow/build-farm?ttl=10
//   over TLS with a client certificate and etcd's user authentication:
//        etcds://etcd1:2379,etcd2:2379/harrow/farm?ca=/etc/harrow/etcd-ca.pem
//            &cert=/etc/harrow/etcd.pem&key=/etc/harrow/etcd.key&user=harrow
//            &password-file=/etc/harrow/etcd.password
// PREFIX defaults to /harrow; the lease TTL (ttl=SECONDS) to 5 seconds (etcd may grant more than
// asked: its minimum is about 1.5 election timeouts).
//
// Guarantees:
//  - Security: etcds:// speaks HTTPS (kj-tls): the members' certificates are checked against ca=
//    (PEM; the system's trust store without it) and the host names given; cert= and key= (PEM,
//    both or neither) are this client's certificate, for members started with
//    --client-cert-auth. The key file is read as the cookie is (a regular file of this user, mode
//    0600 or stricter). user= and password-file= (both or neither; the file checked the same way,
//    its trailing whitespace not part of the password) log in with etcd's authentication:
//    /v3/auth/authenticate gives a token that every request then carries in its Authorization
//    header; a token etcd no longer accepts (expired, or invalidated by a password change) is
//    replaced by logging in again, once per request. The options travel with the address, so the
//    children of a tree (which register themselves) use the same; files are read where each
//    process runs.
//  - Endpoints: each request goes to the endpoint that answered last; if it cannot be reached,
//    does not answer within the request timeout or answers 5xx (a member that lost its quorum or
//    its leader), the next one is tried, round after round, until the request's deadline. A 4xx
//    is an error at once, naming etcd's message.
//  - Watches are etcd watch streams; one that breaks is opened again on the next endpoint from
//    the revision it had reached, so no event is missed.
//  - An answer (or watch message) over 64 MiB fails its request: a broken or hostile endpoint
//    costs bounded memory.
//
// Why a client of our own: etcd's own clients speak gRPC, a dependency harrow does not have; the
// gateway needs only KJ's HTTP client and Cap'n Proto's JSON codec, which harrow links already,
// and the handful of calls a registry makes (range, put, delete, leases, watches) fit in one file.

#pragma once

#include <harrow/co/co.h>

#include <capnp/compat/json.h>
#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/vector.h>

namespace harrow {

struct EtcdAddress {
  kj::Vector<kj::String> endpoints;  // "host:port", in the order given
  kj::String prefix;                 // "/harrow" by default; never ends in '/'
  kj::Duration ttl = 5 * kj::SECONDS;
  bool tls = false;         // etcds://
  kj::String caFile;        // ca=: PEM of the CAs trusted for the members ("": system's)
  kj::String certFile;      // cert=: this client's certificate (PEM), with keyFile
  kj::String keyFile;       // key=
  kj::String user;          // user=: etcd's authentication, with passwordFile
  kj::String passwordFile;  // password-file=

  // Whether `address` is an etcd registry address (starts with "etcd://" or "etcds://").
  static bool matches(kj::StringPtr address);
  // Throws, naming the address and what is wrong with it.
  static EtcdAddress parse(kj::StringPtr address);
};

// A small etcd v3 client over the HTTP/JSON gateway, failing over between endpoints. Keys and
// values are bytes (text here); revisions and lease ids are etcd's int64s.
class EtcdClient {
public:
  // Plain HTTP, no authentication.
  EtcdClient(kj::Timer& timer, kj::Network& network, kj::ArrayPtr<const kj::String> endpoints,
             kj::Duration requestTimeout = 5 * kj::SECONDS);
  // The endpoints, TLS and authentication of `address` (its files are read here: a key or
  // password file others may read is harrow.UnsafeFile).
  EtcdClient(kj::Timer& timer, kj::Network& network, const EtcdAddress& address,
             kj::Duration requestTimeout = 5 * kj::SECONDS);
  ~EtcdClient() noexcept(false);
  KJ_DISALLOW_COPY(EtcdClient);

  struct KeyValue {
    kj::String key;
    kj::String value;
    int64_t createRevision = 0;
    int64_t modRevision = 0;
    int64_t lease = 0;
  };
  struct Range {
    kj::Array<KeyValue> kvs;  // in key order
    int64_t revision = 0;     // the store's revision when read
  };
  struct Event {
    bool deleted = false;  // DELETE, else PUT
    KeyValue kv;
    kj::Maybe<KeyValue> previous;  // with prevKv
  };

  // The keys in [key, rangeEnd), or just `key` if rangeEnd is empty.
  Co<Range> range(kj::StringPtr key, kj::StringPtr rangeEnd = nullptr);
  // The keys that start with `prefix`.
  Co<Range> rangePrefix(kj::StringPtr prefix);
  Co<void> put(kj::StringPtr key, kj::StringPtr value, int64_t lease = 0);
  Co<void> deleteKey(kj::StringPtr key);

  struct Lease {
    int64_t id = 0;
    kj::Duration ttl = 0 * kj::SECONDS;  // as granted
  };
  Co<Lease> grantLease(kj::Duration ttl);
  // The lease's remaining TTL after the keepalive; 0 if the lease is gone (expired or revoked).
  Co<kj::Duration> keepAlive(int64_t lease);
  // Revoking a lease that is gone already is no error.
  Co<void> revokeLease(int64_t lease);

  // A watch on the keys that start with `prefix`, from `startRevision` on.
  class Watch {
  public:
    virtual ~Watch() noexcept(false) = default;
    // The next batch of events (never empty). A broken stream is opened again (on the next
    // endpoint, from the revision reached); throws only if no endpoint can be reached.
    virtual Co<kj::Array<Event>> next() = 0;
  };
  kj::Own<Watch> watchPrefix(kj::StringPtr prefix, int64_t startRevision, bool prevKv);

  // The endpoint requests go to now (it changes on failover).
  kj::StringPtr currentEndpoint() const { return endpoints[current]; }
  // "etcd at host:port,host:port"
  kj::String describe() const;

  // The end of the range of keys that start with `prefix` (etcd's prefix convention).
  static kj::String prefixEnd(kj::StringPtr prefix);

private:
  class WatchImpl;
  struct Connection;

  struct Tls;

  kj::Timer& timer;
  kj::Network& network;
  kj::Array<kj::String> endpoints;
  kj::Duration requestTimeout;
  size_t current = 0;
  kj::Own<kj::HttpHeaderTable> headerTable;
  kj::HttpHeaderId authorizationHeader = kj::HttpHeaderId::HOST;  // set by the constructors
  kj::Own<Tls> tls;                                               // etcds://
  kj::StringPtr scheme = "http"_kj;
  kj::String user;  // etcd's authentication: empty for none
  kj::Array<kj::byte> password;
  kj::Maybe<kj::String> token;  // the one etcd gave us last, while it accepts it
  // The HTTP client, shared by reference count with each exchange and open watch that uses it:
  // one replaced by renewHttp() lives until the last of them is done, then goes.
  struct Http;
  kj::Own<Http> http;
  capnp::JsonCodec codec;

  // POSTs `body` (JSON) to `path` on the current endpoint, failing over as described above;
  // returns the response's JSON text. A 4xx answer is an error at once (naming etcd's message).
  // With authentication, the request carries the token (logging in first if there is none, and
  // again, once, if etcd answers that the token is invalid).
  Co<kj::String> post(kj::StringPtr path, kj::String body);
  Co<kj::String> post(kj::StringPtr path, kj::String body, bool authorize);
  // A fresh token from /v3/auth/authenticate.
  Co<void> logIn();
  // The request headers, with the token when there is one.
  kj::HttpHeaders requestHeaders(bool authorize);
  void failOver(size_t from);
  // After an answer that is not 200: a fresh HTTP client for what follows. etcd's gateway sends
  // errors chunked with a trailer (Grpc-Trailer-Content-Type) that kj-http 0.9 leaves unread, so
  // the next request on that connection would read the trailer as its status line.
  void renewHttp();
};

}  // namespace harrow
