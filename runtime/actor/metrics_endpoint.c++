#include <harrow/actor/metrics_endpoint.h>

#include <harrow/actor/cookie.h>
#include <harrow/co/cancel_scope.h>
#include <harrow/co/log_level.h>

#include <kj/debug.h>

#include <sodium.h>
#include <stdlib.h>
#include <strings.h>

namespace harrow {

namespace {
constexpr kj::Duration COLLECT_TIMEOUT = 10 * kj::SECONDS;
}  // namespace

kj::String metricsListenAddress(kj::StringPtr requested) {
  kj::StringPtr address = requested.startsWith("tcp:") ? requested.slice(4) : requested;
  // No host: loopback. kj would take a bare port as every interface's.
  if (address.findFirst(':') == nullptr) return kj::str("127.0.0.1:", address);
  if (address.startsWith(":")) return kj::str("127.0.0.1", address);
  return kj::heapString(address);
}

MetricsEndpoint::MetricsEndpoint(Actor& actor, kj::StringPtr address,
                                 kj::Maybe<kj::Array<kj::byte>> bearerToken)
    : actor(actor), requested(metricsListenAddress(address)), token(kj::mv(bearerToken)) {
  kj::HttpHeaderTable::Builder builder;
  authorizationHeader = builder.add("Authorization");
  authenticateHeader = builder.add("WWW-Authenticate");
  headerTable = builder.build();
  // Collection is per actor; the endpoint needs it on here at least (children inherit
  // HARROW_METRICS, which harrow::main sets).
  actor.metrics().setEnabled(true);
}

MetricsEndpoint::~MetricsEndpoint() noexcept(false) {
  KJ_IF_MAYBE(t, token) sodium_memzero(t->begin(), t->size());
}

namespace {

// Whether a Connection header's tokens include "close".
bool asksToClose(kj::Maybe<kj::StringPtr> connection) {
  KJ_IF_MAYBE(value, connection) {
    kj::StringPtr rest = *value;
    while (rest.size() > 0) {
      size_t end = 0;
      while (end < rest.size() && rest[end] != ',') ++end;
      size_t start = 0;
      while (start < end && (rest[start] == ' ' || rest[start] == '\t')) ++start;
      size_t stop = end;
      while (stop > start && (rest[stop - 1] == ' ' || rest[stop - 1] == '\t')) --stop;
      if (stop - start == 5 && strncasecmp(rest.begin() + start, "close", 5) == 0) return true;
      rest = end < rest.size() ? rest.slice(end + 1) : ""_kj;
    }
  }
  return false;
}

}  // namespace

// One connection: its requests go to the endpoint; once a request that asked to close the
// connection is answered, its write side is shut down, so that the client sees the end at once.
// (kj-http 0.9 sends `Connection: close` when told to, but would still wait out its pipeline
// timeout, 5 s, for another request.)
class MetricsEndpoint::Exchange final : public kj::HttpService {
public:
  Exchange(MetricsEndpoint& endpoint, kj::AsyncIoStream& stream)
      : endpoint(endpoint), stream(stream) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& requestBody,
                            Response& response) override {
    (void)requestBody;
    bool close = asksToClose(headers.get(kj::HttpHeaderId::CONNECTION));
    auto answered = endpoint.respond(method, url, headers, response, close);
    if (!close) return answered;
    return answered.then([this]() { stream.shutdownWrite(); });
  }

private:
  MetricsEndpoint& endpoint;
  kj::AsyncIoStream& stream;
};

Co<void> MetricsEndpoint::start() {
  auto& network = actor.io().provider->getNetwork();
  kj::Own<kj::NetworkAddress> parsed;
  KJ_IF_MAYBE(e, co_await errorOf([&]() -> Co<void> {
    parsed = co_await network.parseAddress(requested);
    listener = parsed->listen();
  })) {
    kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
        kj::str("--harrow-metrics / HARROW_METRICS: cannot serve metrics at \"", requested,
                "\" (give HOST:PORT, e.g. 127.0.0.1:9464): ", e->getDescription())));
  }
  // The real port, for port 0.
  kj::String host = kj::heapString(requested);
  KJ_IF_MAYBE(colon, requested.findLast(':')) host = kj::heapString(requested.begin(), *colon);
  boundAddress = kj::str(host, ":", listener->getPort());
  kj::HttpServerSettings settings;
  settings.errorHandler = static_cast<kj::HttpServerErrorHandler&>(*this);
  settings.callbacks = static_cast<kj::HttpServerCallbacks&>(*this);
  server = kj::heap<kj::HttpServer>(
      actor.timer(), *headerTable,
      [this](kj::AsyncIoStream& stream) -> kj::Own<kj::HttpService> {
        return kj::heap<Exchange>(*this, stream);
      },
      settings);
  listening = server->listenHttp(*listener).eagerlyEvaluate([](kj::Exception&& e) {
    KJ_LOG(WARNING, "the metrics endpoint stopped", e);
  });
  KJ_LOG(INFO, "serving metrics", kj::str("http://", boundAddress, "/metrics"));
}

Co<void> MetricsEndpoint::stop() {
  listening = nullptr;  // cancels every request being served
  server = nullptr;
  listener = nullptr;
  co_return;
}

bool MetricsEndpoint::authorized(const kj::HttpHeaders& headers) const {
  KJ_IF_MAYBE(expected, token) {
    KJ_IF_MAYBE(given, headers.get(authorizationHeader)) {
      constexpr kj::StringPtr BEARER = "Bearer "_kj;
      if (given->size() != BEARER.size() + expected->size()) return false;
      if (strncasecmp(given->begin(), BEARER.begin(), BEARER.size()) != 0) return false;
      // In constant time: how much of the token a guess got right must not show in the timing.
      return sodium_memcmp(given->begin() + BEARER.size(), expected->begin(),
                           expected->size()) == 0;
    }
    return false;
  }
  return true;
}

kj::Own<kj::AsyncOutputStream> MetricsEndpoint::begin(Response& response, unsigned status,
                                                      kj::StringPtr statusText,
                                                      const kj::HttpHeaders& headers,
                                                      uint64_t bytes, bool close) {
  // shouldClose() is asked as the response begins, within send().
  closeThisResponse = close;
  KJ_DEFER(closeThisResponse = false);
  return response.send(status, statusText, headers, bytes);
}

kj::Promise<void> MetricsEndpoint::sendPlain(Response& response, unsigned status,
                                             kj::StringPtr statusText, kj::HttpHeaders& headers,
                                             bool close) {
  headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain");
  auto text = kj::str(statusText, "\n");
  auto body = begin(response, status, statusText, headers, text.size(), close);
  auto written = body->write(text.begin(), text.size());
  return written.attach(kj::mv(body), kj::mv(text));
}

kj::Promise<void> MetricsEndpoint::respond(kj::HttpMethod method, kj::StringPtr url,
                                           const kj::HttpHeaders& headers, Response& response,
                                           bool close) {
  kj::HttpHeaders answer(*headerTable);
  if (!authorized(headers)) {
    answer.set(authenticateHeader, "Bearer realm=\"harrow metrics\"");
    return sendPlain(response, 401, "Unauthorized", answer, close);
  }
  bool metricsPath = url == "/metrics" || url.startsWith("/metrics?");
  if (!metricsPath) return sendPlain(response, 404, "Not Found", answer, close);
  if (method != kj::HttpMethod::GET && method != kj::HttpMethod::HEAD) {
    return sendPlain(response, 405, "Method Not Allowed", answer, close);
  }
  return serveMetrics(response, close);
}

kj::Promise<void> MetricsEndpoint::handleClientProtocolError(
    kj::HttpHeaders::ProtocolError protocolError, Response& response) {
  // Whoever sent it gets a plain 400 (kj says 501 for an unknown method: also just malformed
  // here); the log one line at debug level, no trace: anyone who can connect could fill it.
  if (debugLogging()) {
    KJ_LOG(INFO, "metrics: a malformed HTTP request, answered 400", protocolError.description);
  }
  kj::HttpHeaders headers(*headerTable);
  return sendPlain(response, 400, "Bad Request", headers, true);
}

kj::Promise<void> MetricsEndpoint::handleApplicationError(kj::Exception exception,
                                                          kj::Maybe<Response&> response) {
  // respond() raises nothing of its own (serveMetrics answers a failed collection itself), so
  // what arrives here is kj-http's word on the request (an invalid Content-Length, say) or a
  // connection that broke: the client's doing, answered 400 if it still can be.
  if (exception.getType() == kj::Exception::Type::DISCONNECTED) return kj::READY_NOW;
  if (debugLogging()) {
    KJ_LOG(INFO, "metrics: a bad HTTP request, answered 400", exception.getDescription());
  }
  KJ_IF_MAYBE(r, response) {
    kj::HttpHeaders headers(*headerTable);
    return sendPlain(*r, 400, "Bad Request", headers, true);
  }
  return kj::READY_NOW;
}

Co<void> MetricsEndpoint::serveMetrics(Response& response,  // kj-http's, until this resolves
                                       bool close) {
  // Bounded: a child that neither answers nor dies (stopped with SIGSTOP, say) must not pile up
  // scrapes. Prometheus gives up sooner anyway (scrape_timeout, 10 s by default).
  auto collected = co_await errorOr([&]() {
    return collectTree(actor)
        .then([](kj::Own<capnp::MallocMessageBuilder> snapshot) {
          return kj::Maybe<kj::Own<capnp::MallocMessageBuilder>>(kj::mv(snapshot));
        })
        .exclusiveJoin(actor.timer().afterDelay(COLLECT_TIMEOUT).then([]() {
          return kj::Maybe<kj::Own<capnp::MallocMessageBuilder>>(nullptr);
        }));
  });
  kj::HttpHeaders headers(*headerTable);
  KJ_IF_MAYBE(e, collected.error()) {
    KJ_LOG(WARNING, "metrics: collecting the tree failed", e->getDescription());
    co_await sendPlain(response, 500, "Internal Server Error", headers, close);
    co_return;
  }
  kj::Own<capnp::MallocMessageBuilder> snapshot;
  KJ_IF_MAYBE(s, *collected) {
    snapshot = kj::mv(*s);
  } else {
    KJ_LOG(WARNING, "metrics: the tree did not answer a scrape in time", COLLECT_TIMEOUT);
    co_await sendPlain(response, 503, "Service Unavailable", headers, close);
    co_return;
  }
  auto text = renderExposition(snapshot->getRoot<metrics::Snapshot>());
  headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
  auto body = begin(response, 200, "OK", headers, text.size(), close);
  co_await body->write(text.begin(), text.size());
}

kj::Maybe<kj::String> metricsAddressFromEnvironment() {
  const char* address = getenv("HARROW_METRICS");
  if (address == nullptr || *address == '\0') return nullptr;
  return kj::heapString(address);
}

kj::Maybe<kj::Array<kj::byte>> metricsTokenFromEnvironment() {
  const char* path = getenv("HARROW_METRICS_TOKEN_FILE");
  if (path == nullptr || *path == '\0') return nullptr;
  auto token = readSecretFile("the metrics token file", path);
  if (token.size() == 0) {
    kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
        kj::str("the metrics token file ", path, " is empty (--harrow-metrics-token-file / "
                "HARROW_METRICS_TOKEN_FILE)")));
  }
  return kj::mv(token);
}

}  // namespace harrow
