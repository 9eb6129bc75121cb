// EtcdClient and EtcdAddress (<harrow/discovery/etcd_client.h>): the address parser, the HTTP
// exchange with failover and token renewal, and watch streams.
//
//   EtcdClient client(timer, network, EtcdAddress::parse(address));
//   auto range = co_await client.rangePrefix("/harrow/actors/");
//
// Guarantees (the header has them in full): a request fails over between endpoints until its
// deadline, a 4xx fails at once naming etcd's message, a refused token is renewed once per
// request, and a broken watch resumes from the revision it reached.
//
// Why a file of its own: the client knows HTTP, TLS and etcd's API, nothing of registries; the
// backend (etcd_backend.c++) knows entries and leases, nothing of HTTP (etcd.c++ was 917 lines,
// issue #23).

#include <harrow/discovery/etcd_client.h>

#include <harrow/actor/cookie.h>
#include <harrow/actor/log.h>
#include <harrow/co/cancel_scope.h>
#include <harrow/ipc/channel.h>
#include "runtime/discovery/internal/json.h"

#include <kj/compat/tls.h>
#include <kj/debug.h>
#include <kj/encoding.h>

#include <sodium.h>

#include <fstream>
#include <sstream>
#include <string.h>

namespace harrow {

using namespace json;  // internal/json.h

// ---------------------------------------------------------------------------------------------
// The address

bool EtcdAddress::matches(kj::StringPtr address) {
  return address.startsWith("etcd://") || address.startsWith("etcds://");
}

EtcdAddress EtcdAddress::parse(kj::StringPtr address) {
  KJ_REQUIRE(matches(address), "not an etcd registry address", address);
  EtcdAddress result;
  result.tls = address.startsWith("etcds://");
  kj::StringPtr rest = address.slice(result.tls ? strlen("etcds://") : strlen("etcd://"));
  auto bad = [&](kj::StringPtr why) {
    KJ_FAIL_REQUIRE(kj::str("bad etcd registry address \"", address, "\": ", why,
                            " (etcd[s]://HOST:PORT[,HOST:PORT...][/PREFIX][?ttl=SECONDS]"
                            "[&ca=PEM&cert=PEM&key=PEM][&user=NAME&password-file=PATH])"));
  };
  // Hosts up to the first '/' or '?'.
  size_t hostsEnd = rest.size();
  KJ_IF_MAYBE(slash, rest.findFirst('/')) hostsEnd = *slash;
  KJ_IF_MAYBE(question, rest.findFirst('?')) hostsEnd = kj::min(hostsEnd, *question);
  kj::String hosts = kj::heapString(rest.slice(0, hostsEnd));
  rest = rest.slice(hostsEnd);
  for (kj::StringPtr remaining = hosts;;) {
    size_t end = remaining.size();
    KJ_IF_MAYBE(comma, remaining.findFirst(',')) end = *comma;
    auto endpoint = kj::heapString(remaining.slice(0, end));
    KJ_IF_MAYBE(colon, endpoint.findLast(':')) {
      auto port = endpoint.slice(*colon + 1);
      bool digits = port.size() > 0 && port.size() <= 5;
      for (char c : port) digits = digits && c >= '0' && c <= '9';
      if (*colon == 0 || !digits || port.parseAs<uint>() > 65535) {
        bad(kj::str("\"", endpoint, "\" is not HOST:PORT"));
      }
    } else {
      bad(kj::str("\"", endpoint, "\" is not HOST:PORT"));
    }
    result.endpoints.add(kj::mv(endpoint));
    if (end == remaining.size()) break;
    remaining = remaining.slice(end + 1);
  }
  // The prefix, up to '?'.
  size_t pathEnd = rest.size();
  KJ_IF_MAYBE(question, rest.findFirst('?')) pathEnd = *question;
  kj::ArrayPtr<const char> path = rest.slice(0, pathEnd);
  while (path.size() > 0 && path[path.size() - 1] == '/') path = path.slice(0, path.size() - 1);
  result.prefix = path.size() == 0 ? kj::str("/harrow") : kj::heapString(path);
  // Options.
  if (pathEnd < rest.size()) {
    kj::StringPtr query = rest.slice(pathEnd + 1);
    for (;;) {
      size_t end = query.size();
      KJ_IF_MAYBE(amp, query.findFirst('&')) end = *amp;
      auto option = kj::heapString(query.slice(0, end));
      if (option.startsWith("ttl=")) {
        auto seconds = option.slice(4);
        bool digits = seconds.size() > 0 && seconds.size() <= 6;
        for (char c : seconds) digits = digits && c >= '0' && c <= '9';
        if (!digits || seconds.parseAs<uint>() == 0) bad("ttl must be a whole number of seconds");
        result.ttl = seconds.parseAs<uint>() * kj::SECONDS;
      } else if (option.startsWith("ca=")) {
        result.caFile = kj::heapString(option.slice(3));
      } else if (option.startsWith("cert=")) {
        result.certFile = kj::heapString(option.slice(5));
      } else if (option.startsWith("key=")) {
        result.keyFile = kj::heapString(option.slice(4));
      } else if (option.startsWith("user=")) {
        result.user = kj::heapString(option.slice(5));
      } else if (option.startsWith("password-file=")) {
        result.passwordFile = kj::heapString(option.slice(14));
      } else {
        bad(kj::str("unknown option \"", option, "\""));
      }
      if (end == query.size()) break;
      query = query.slice(end + 1);
    }
  }
  if (!result.tls && (result.caFile.size() > 0 || result.certFile.size() > 0 ||
                      result.keyFile.size() > 0)) {
    bad("ca=, cert= and key= are for TLS: etcds://");
  }
  if ((result.certFile.size() > 0) != (result.keyFile.size() > 0)) {
    bad("cert= and key= go together");
  }
  if ((result.user.size() > 0) != (result.passwordFile.size() > 0)) {
    bad("user= and password-file= go together");
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// JSON

namespace {

kj::String base64(kj::StringPtr text) { return kj::encodeBase64(text.asBytes()); }

// A base64 field as text (etcd's keys and values are bytes).
kj::String bytesField(JsonValue::Reader object, kj::StringPtr name) {
  auto decoded = kj::decodeBase64(textField(object, name));
  KJ_REQUIRE(!decoded.hadErrors, "etcd sent a field that is not base64", name);
  return kj::heapString(reinterpret_cast<const char*>(decoded.begin()), decoded.size());
}

EtcdClient::KeyValue keyValueOf(JsonValue::Reader kv) {
  EtcdClient::KeyValue result;
  result.key = bytesField(kv, "key");
  result.value = bytesField(kv, "value");
  result.createRevision = intField(kv, "create_revision");
  result.modRevision = intField(kv, "mod_revision");
  result.lease = intField(kv, "lease");
  return result;
}

// The length of the first complete JSON object in `text` (after leading whitespace), if there is
// one: streamed responses (watch, keepalive) are a sequence of objects.
kj::Maybe<size_t> firstObjectEnd(kj::ArrayPtr<const char> text) {
  size_t depth = 0;
  bool inString = false;
  bool escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (inString) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        inString = false;
      }
      continue;
    }
    switch (c) {
      case '"': inString = true; break;
      case '{': case '[': ++depth; break;
      case '}': case ']':
        KJ_REQUIRE(depth > 0, "etcd sent malformed JSON");
        if (--depth == 0) return i + 1;
        break;
      default:
        KJ_REQUIRE(depth > 0 || c == ' ' || c == '\n' || c == '\r' || c == '\t',
                   "etcd sent something that is not a JSON object");
    }
  }
  return nullptr;
}

// etcd's error answer: {"error": "...", "message": "...", "code": N}.
kj::String errorText(const capnp::JsonCodec& codec, kj::StringPtr body) {
  kj::String text;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    auto json = parseJson(codec, body);
    auto message = textField(json->root, "message");
    if (message.size() == 0) message = textField(json->root, "error");
    text = kj::heapString(message);
  })) {
    (void)e;
  }
  if (text.size() == 0) text = kj::heapString(body.slice(0, kj::min(body.size(), size_t(200))));
  return text;
}

// Whether a failed exchange should be tried on another endpoint: the endpoint could not be
// reached, broke off or was too slow. Cancellation and our own bugs are not.
bool worthFailingOver(const kj::Exception& e) {
  if (isCancelled(e)) return false;
  return e.getType() == kj::Exception::Type::DISCONNECTED ||
         e.getType() == kj::Exception::Type::OVERLOADED || isTransportClosed(e);
}

constexpr kj::Duration RETRY_PAUSE = 100 * kj::MILLISECONDS;

// The most of one answer (or one watch message) we take from etcd: a registry's entries are
// small; anything bigger is a broken or hostile endpoint, and fails the request.
constexpr size_t MAX_RESPONSE = 64u << 20;

}  // namespace

// ---------------------------------------------------------------------------------------------
// The client

namespace {

EtcdAddress plainAddress(kj::ArrayPtr<const kj::String> endpoints) {
  EtcdAddress address;
  for (auto& e : endpoints) address.endpoints.add(kj::heapString(e));
  return address;
}

// A PEM file (certificates: nothing secret in it).
kj::String readPemFile(kj::StringPtr what, kj::StringPtr path) {
  std::ifstream in(path.cStr());
  KJ_REQUIRE(in.good(), kj::str("cannot read ", what, " ", path, " (etcds://...?", what, "=)"));
  std::stringstream text;
  text << in.rdbuf();
  return kj::str(text.str().c_str());
}

kj::String jsonString(const capnp::JsonCodec& codec, kj::StringPtr text) {
  capnp::MallocMessageBuilder message;
  message.initRoot<JsonValue>().setString(text);
  return codec.encodeRaw(message.getRoot<JsonValue>().asReader());
}

// Whether an answer says the token we sent is no good (expired, or invalidated by a password
// change): gRPC's Unauthenticated is HTTP 401 through the gateway.
bool tokenRefused(uint status, kj::StringPtr text) {
  return status == 401 || strstr(text.cStr(), "invalid auth token") != nullptr ||
         strstr(text.cStr(), "auth store is old") != nullptr;
}

}  // namespace

// TLS to the members: the trusted CAs, this client's keypair, the context and the network it
// wraps (kj-tls keeps references to the first two).
struct EtcdClient::Http : public kj::Refcounted {
  explicit Http(kj::Own<kj::HttpClient> client) : client(kj::mv(client)) {}
  kj::Own<kj::HttpClient> client;
};

struct EtcdClient::Tls {
  kj::Vector<kj::TlsCertificate> trusted;
  kj::Maybe<kj::TlsKeypair> keypair;
  kj::Own<kj::TlsContext> context;
  kj::Own<kj::Network> network;
};

EtcdClient::EtcdClient(kj::Timer& timer, kj::Network& network,
                       kj::ArrayPtr<const kj::String> endpointsParam, kj::Duration requestTimeout)
    : EtcdClient(timer, network, plainAddress(endpointsParam), requestTimeout) {}

EtcdClient::EtcdClient(kj::Timer& timer, kj::Network& network, const EtcdAddress& address,
                       kj::Duration requestTimeout)
    : timer(timer),
      network(network),
      endpoints(KJ_MAP(e, address.endpoints) { return kj::heapString(e); }),
      requestTimeout(requestTimeout),
      user(kj::heapString(address.user)) {
  KJ_REQUIRE(endpoints.size() > 0, "an etcd client needs an endpoint");
  kj::HttpHeaderTable::Builder builder;
  authorizationHeader = builder.add("Authorization");
  headerTable = builder.build();
  kj::Maybe<kj::Network&> tlsNetwork;
  if (address.tls) {
    tls = kj::heap<Tls>();
    kj::TlsContext::Options options;
    if (address.caFile.size() > 0) {
      options.useSystemTrustStore = false;  // only the CA given
      tls->trusted.add(kj::TlsCertificate(readPemFile("ca", address.caFile)));
      options.trustedCertificates = tls->trusted.asPtr();
    }
    if (address.certFile.size() > 0) {
      auto key = readSecretFile("the etcd client key file", address.keyFile);
      KJ_DEFER(sodium_memzero(key.begin(), key.size()));
      auto keyText = kj::heapString(key.asChars());
      KJ_DEFER(sodium_memzero(keyText.begin(), keyText.size()));
      tls->keypair = kj::TlsKeypair{kj::TlsPrivateKey(keyText),
                                    kj::TlsCertificate(readPemFile("cert", address.certFile))};
      options.defaultKeypair = KJ_ASSERT_NONNULL(tls->keypair);
    }
    tls->context = kj::heap<kj::TlsContext>(kj::mv(options));
    tls->network = tls->context->wrapNetwork(network);
    tlsNetwork = *tls->network;
    scheme = "https"_kj;
  }
  if (address.passwordFile.size() > 0) {
    password = readSecretFile("the etcd password file", address.passwordFile);
  }
  renewHttp();
}

void EtcdClient::renewHttp() {
  kj::Maybe<kj::Network&> tlsNetwork;
  if (tls.get() != nullptr) tlsNetwork = *tls->network;
  http = kj::refcounted<Http>(kj::newHttpClient(timer, *headerTable, network, tlsNetwork));
}

EtcdClient::~EtcdClient() noexcept(false) {
  sodium_memzero(password.begin(), password.size());
}

kj::HttpHeaders EtcdClient::requestHeaders(bool authorize) {
  kj::HttpHeaders headers(*headerTable);
  headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
  if (authorize) {
    KJ_IF_MAYBE(t, token) headers.set(authorizationHeader, *t);
  }
  return headers;
}

Co<void> EtcdClient::logIn() {
  token = nullptr;
  auto secret = kj::heapString(password.asChars());
  KJ_DEFER(sodium_memzero(secret.begin(), secret.size()));
  auto quoted = jsonString(codec, secret);
  KJ_DEFER(sodium_memzero(quoted.begin(), quoted.size()));
  auto body = kj::str("{\"name\":", jsonString(codec, user), ",\"password\":", quoted, "}");
  auto text = co_await post("/v3/auth/authenticate", kj::mv(body), false);
  auto json = parseJson(codec, text);
  auto given = textField(json->root, "token");
  KJ_REQUIRE(given.size() > 0, kj::str(describe(), ": /v3/auth/authenticate gave no token"));
  token = kj::heapString(given);
}

kj::String EtcdClient::describe() const {
  return kj::str("etcd at ", kj::strArray(endpoints, ","));
}

kj::String EtcdClient::prefixEnd(kj::StringPtr prefix) {
  // The first key after every key that starts with `prefix`: its last byte below 0xff, plus one.
  auto end = kj::heapString(prefix);
  for (size_t i = end.size(); i > 0; --i) {
    auto& c = reinterpret_cast<unsigned char&>(end[i - 1]);
    if (c < 0xff) {
      ++c;
      return kj::heapString(end.slice(0, i));
    }
  }
  return kj::heapString("\0", 1);  // every key (etcd's "from key" convention)
}

void EtcdClient::failOver(size_t from) {
  if (current == from) current = (from + 1) % endpoints.size();
}

Co<kj::String> EtcdClient::post(kj::StringPtr path, kj::String body) {
  return post(path, kj::mv(body), true);
}

Co<kj::String> EtcdClient::post(kj::StringPtr pathParam, kj::String body, bool authorize) {
  auto path = kj::heapString(pathParam);
  KJ_DEFER(sodium_memzero(body.begin(), body.size()));  // a password, maybe
  authorize = authorize && user.size() > 0;
  if (authorize && token == nullptr) co_await logIn();
  bool loggedInAgain = false;
  kj::TimePoint deadline = timer.now() + requestTimeout;
  kj::Duration perAttempt = kj::max(requestTimeout / 3, 1 * kj::SECONDS);
  kj::String lastProblem;
  for (size_t attempt = 1;; ++attempt) {
    size_t index = current;
    auto url = kj::str(scheme, "://", endpoints[index], path);
    uint status = 0;
    kj::String text;
    auto exchange = [&]() -> Co<void> {
      auto headers = requestHeaders(authorize);
      auto client = kj::addRef(*http);  // outlives a renewHttp() meanwhile
      auto request = client->client->request(kj::HttpMethod::POST, url, headers, body.size());
      co_await request.body->write(body.begin(), body.size());
      request.body = nullptr;
      auto response = co_await kj::mv(request.response);
      status = response.statusCode;
      text = co_await response.body->readAllText(MAX_RESPONSE);
    };
    kj::Duration left = deadline - timer.now();
    auto failure = co_await errorOf([&]() {
      return timer.timeoutAfter(kj::max(kj::min(left, perAttempt), 100 * kj::MILLISECONDS),
                                exchange());
    });
    if (failure == nullptr && status != 200) renewHttp();
    KJ_IF_MAYBE(e, failure) {
      if (!worthFailingOver(*e)) kj::throwFatalException(kj::mv(*e));
      lastProblem = kj::str(endpoints[index], ": ", e->getDescription());
    } else if (status >= 500) {
      // A member without a quorum or a leader: another may have one.
      lastProblem = kj::str(endpoints[index], " answered ", status, ": ", errorText(codec, text));
    } else if (status != 200 && authorize && !loggedInAgain && tokenRefused(status, text)) {
      // The token expired or was invalidated: log in again, then the same request, once.
      loggedInAgain = true;
      co_await logIn();
      continue;
    } else if (status != 200) {
      auto why = errorText(codec, text);
      kj::StringPtr hint = user.size() == 0 && strstr(why.cStr(), "user name is empty") != nullptr
          ? " (this etcd requires authentication: add user= and password-file= to the registry "
            "address)"_kj
          : ""_kj;
      KJ_FAIL_REQUIRE(kj::str(describe(), ": ", path, " answered ", status, ": ", why, hint));
    } else {
      co_return kj::mv(text);
    }
    HARROW_LOG_DEBUG("etcd request failed; trying the next endpoint", lastProblem);
    failOver(index);
    if (timer.now() >= deadline) {
      kj::throwFatalException(transportClosed(
          kj::str(describe(), " cannot be reached (", path, "); last: ", lastProblem)));
    }
    if (attempt % endpoints.size() == 0) {
      // A whole round failed (an election in progress, say): pause before the next.
      co_await timer.afterDelay(RETRY_PAUSE);
    }
  }
}

Co<EtcdClient::Range> EtcdClient::range(kj::StringPtr key, kj::StringPtr rangeEnd) {
  auto body = rangeEnd.size() == 0
      ? kj::str("{\"key\":\"", base64(key), "\"}")
      : kj::str("{\"key\":\"", base64(key), "\",\"range_end\":\"", base64(rangeEnd), "\"}");
  auto text = co_await post("/v3/kv/range", kj::mv(body));
  auto json = parseJson(codec, text);
  Range result;
  KJ_IF_MAYBE(header, field(json->root, "header")) result.revision = intField(*header, "revision");
  KJ_IF_MAYBE(kvs, field(json->root, "kvs")) {
    KJ_REQUIRE(kvs->isArray(), "etcd sent a range whose kvs is not an array");
    result.kvs = KJ_MAP(kv, kvs->getArray()) { return keyValueOf(kv); };
  }
  co_return kj::mv(result);
}

Co<EtcdClient::Range> EtcdClient::rangePrefix(kj::StringPtr prefix) {
  auto end = prefixEnd(prefix);
  co_return co_await range(prefix, end);
}

Co<void> EtcdClient::put(kj::StringPtr key, kj::StringPtr value, int64_t lease) {
  auto body = kj::str("{\"key\":\"", base64(key), "\",\"value\":\"", base64(value), "\"",
                      lease != 0 ? kj::str(",\"lease\":\"", lease, "\"") : kj::str(), "}");
  co_await post("/v3/kv/put", kj::mv(body));
}

Co<void> EtcdClient::deleteKey(kj::StringPtr key) {
  co_await post("/v3/kv/deleterange", kj::str("{\"key\":\"", base64(key), "\"}"));
}

Co<EtcdClient::Lease> EtcdClient::grantLease(kj::Duration ttl) {
  int64_t seconds = kj::max(ttl / kj::SECONDS, int64_t(1));
  auto text = co_await post("/v3/lease/grant", kj::str("{\"TTL\":\"", seconds, "\"}"));
  auto json = parseJson(codec, text);
  Lease lease;
  lease.id = intField(json->root, "ID");
  lease.ttl = intField(json->root, "TTL") * kj::SECONDS;
  KJ_REQUIRE(lease.id != 0, "etcd granted no lease", errorText(codec, text));
  co_return lease;
}

Co<kj::Duration> EtcdClient::keepAlive(int64_t lease) {
  // A keepalive stream with one request: one answer, then the stream ends.
  auto text = co_await post("/v3/lease/keepalive", kj::str("{\"ID\":\"", lease, "\"}"));
  size_t end = KJ_REQUIRE_NONNULL(firstObjectEnd(text), "etcd's keepalive answer is incomplete");
  auto json = parseJson(codec, text.slice(0, end));
  KJ_IF_MAYBE(result, field(json->root, "result")) {
    co_return intField(*result, "TTL") * kj::SECONDS;
  }
  KJ_IF_MAYBE(error, field(json->root, "error")) {
    KJ_FAIL_REQUIRE(kj::str(describe(), ": keepalive failed: ", textField(*error, "message")));
  }
  co_return 0 * kj::SECONDS;
}

Co<void> EtcdClient::revokeLease(int64_t lease) {
  KJ_IF_MAYBE(e, co_await errorOf([&]() {
    return post("/v3/lease/revoke", kj::str("{\"ID\":\"", lease, "\"}"));
  })) {
    // Gone already (expired, or revoked by an earlier attempt that timed out): done.
    if (strstr(e->getDescription().cStr(), "lease not found") != nullptr) co_return;
    kj::throwFatalException(kj::mv(*e));
  }
}

// ---------------------------------------------------------------------------------------------
// Watches

class EtcdClient::WatchImpl final : public EtcdClient::Watch {
public:
  WatchImpl(EtcdClient& client, kj::StringPtr prefix, int64_t startRevision, bool prevKv)
      : client(client), prefix(kj::heapString(prefix)), nextRevision(startRevision),
        prevKv(prevKv) {}

  Co<kj::Array<Event>> next() override {
    for (;;) {
      KJ_IF_MAYBE(end, firstObjectEnd(buffer)) {
        auto json = parseJson(client.codec, buffer.asPtr().slice(0, *end));
        auto rest = kj::heapArray<char>(buffer.asPtr().slice(*end, buffer.size()));
        buffer.clear();
        buffer.addAll(rest);
        auto events = take(json->root);
        if (events.size() > 0) co_return kj::mv(events);
        continue;
      }
      if (stream == nullptr) co_await open();
      auto& input = *KJ_ASSERT_NONNULL(stream);
      char chunk[4096];
      size_t n = 0;
      KJ_IF_MAYBE(e, co_await errorOf([&]() -> Co<void> {
        n = co_await input.tryRead(chunk, 1, sizeof(chunk));
      })) {
        if (!worthFailingOver(*e)) kj::throwFatalException(kj::mv(*e));
        HARROW_LOG_DEBUG("an etcd watch broke; opening it again", *e);
      }
      if (n == 0) {
        // The member went away (or ended the stream): watch again elsewhere, from where we were.
        client.failOver(endpoint);
        stream = nullptr;
        buffer.clear();
        continue;
      }
      KJ_REQUIRE(buffer.size() + n <= MAX_RESPONSE, "an etcd watch message is too large",
                 client.describe());
      buffer.addAll(kj::arrayPtr(chunk, n));
    }
  }

private:
  EtcdClient& client;
  kj::String prefix;
  int64_t nextRevision;
  bool prevKv;
  size_t endpoint = 0;
  kj::Maybe<kj::Own<kj::AsyncInputStream>> stream;
  kj::Vector<char> buffer;

  Co<void> open() {
    kj::TimePoint deadline = client.timer.now() + client.requestTimeout;
    kj::String lastProblem;
    auto body = kj::str(
        "{\"create_request\":{\"key\":\"", base64(prefix), "\",\"range_end\":\"",
        base64(prefixEnd(prefix)), "\",\"start_revision\":\"", nextRevision, "\"",
        prevKv ? ",\"prev_kv\":true" : "", "}}");
    bool authorize = client.user.size() > 0;
    if (authorize && client.token == nullptr) co_await client.logIn();
    bool loggedInAgain = false;
    for (size_t attempt = 1;; ++attempt) {
      size_t index = client.current;
      auto url = kj::str(client.scheme, "://", client.endpoints[index], "/v3/watch");
      uint status = 0;
      kj::Own<kj::AsyncInputStream> responseBody;
      auto exchange = [&]() -> Co<void> {
        auto headers = client.requestHeaders(authorize);
        auto http = kj::addRef(*client.http);  // kept as long as the stream is read
        auto request = http->client->request(kj::HttpMethod::POST, url, headers, body.size());
        co_await request.body->write(body.begin(), body.size());
        request.body = nullptr;
        auto response = co_await kj::mv(request.response);
        status = response.statusCode;
        responseBody = kj::mv(response.body).attach(kj::mv(http));
      };
      kj::Duration left = deadline - client.timer.now();
      auto failure = co_await errorOf([&]() {
        return client.timer.timeoutAfter(kj::max(left, 100 * kj::MILLISECONDS), exchange());
      });
      KJ_IF_MAYBE(e, failure) {
        if (!worthFailingOver(*e)) kj::throwFatalException(kj::mv(*e));
        lastProblem = kj::str(client.endpoints[index], ": ", e->getDescription());
      } else if (status == 200) {
        endpoint = index;
        stream = kj::mv(responseBody);
        co_return;
      } else {
        auto text = co_await responseBody->readAllText(MAX_RESPONSE);
        client.renewHttp();
        if (authorize && !loggedInAgain && tokenRefused(status, text)) {
          loggedInAgain = true;
          co_await client.logIn();
          continue;
        }
        if (status < 500) {
          KJ_FAIL_REQUIRE(kj::str(client.describe(), ": /v3/watch answered ", status, ": ",
                                  errorText(client.codec, text)));
        }
        lastProblem = kj::str(client.endpoints[index], " answered ", status, ": ",
                              errorText(client.codec, text));
      }
      client.failOver(index);
      if (client.timer.now() >= deadline) {
        kj::throwFatalException(transportClosed(
            kj::str(client.describe(), " cannot be reached (/v3/watch); last: ", lastProblem)));
      }
      if (attempt % client.endpoints.size() == 0) co_await client.timer.afterDelay(RETRY_PAUSE);
    }
  }

  // The events of one watch response (none for "created" and progress notices).
  kj::Array<Event> take(JsonValue::Reader message) {
    KJ_IF_MAYBE(error, field(message, "error")) {
      KJ_FAIL_REQUIRE(kj::str(client.describe(), ": the watch failed: ",
                              textField(*error, "message")));
    }
    auto result = KJ_REQUIRE_NONNULL(field(message, "result"), "etcd sent a watch message "
                                     "without a result");
    if (boolField(result, "canceled")) {
      KJ_FAIL_REQUIRE(kj::str(client.describe(), ": etcd cancelled the watch on ", prefix, ": ",
                              textField(result, "cancel_reason"), " (compacted at revision ",
                              intField(result, "compact_revision"), ")"));
    }
    kj::Vector<Event> events;
    KJ_IF_MAYBE(list, field(result, "events")) {
      KJ_REQUIRE(list->isArray(), "etcd sent watch events that are not an array");
      for (auto e : list->getArray()) {
        Event event;
        event.deleted = textField(e, "type") == "DELETE";
        KJ_IF_MAYBE(kv, field(e, "kv")) event.kv = keyValueOf(*kv);
        KJ_IF_MAYBE(previous, field(e, "prev_kv")) event.previous = keyValueOf(*previous);
        nextRevision = kj::max(nextRevision, event.kv.modRevision + 1);
        events.add(kj::mv(event));
      }
    }
    return events.releaseAsArray();
  }
};

kj::Own<EtcdClient::Watch> EtcdClient::watchPrefix(kj::StringPtr prefix, int64_t startRevision,
                                                   bool prevKv) {
  return kj::heap<WatchImpl>(*this, prefix, startRevision, prevKv);
}

}  // namespace harrow
