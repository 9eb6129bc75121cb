#include <harrow/actor/metrics_endpoint.h>

#include <harrow/co/log_level.h>

#include <kj/debug.h>

#include <stdlib.h>

namespace harrow {

namespace {
constexpr kj::Duration COLLECT_TIMEOUT = 10 * kj::SECONDS;
}  // namespace

MetricsEndpoint::MetricsEndpoint(Actor& actor, kj::StringPtr address)
    : actor(actor),
      requested(kj::heapString(address.startsWith("tcp:") ? address.slice(4) : address)) {
  // Collection is per actor; the endpoint needs it on here at least (children inherit
  // HARROW_METRICS, which harrow::main sets).
  actor.metrics().setEnabled(true);
}

MetricsEndpoint::~MetricsEndpoint() noexcept(false) {}

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
  server = kj::heap<kj::HttpServer>(actor.timer(), headerTable, *this);
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

kj::Promise<void> MetricsEndpoint::request(kj::HttpMethod method, kj::StringPtr url,
                                           const kj::HttpHeaders& headers,
                                           kj::AsyncInputStream& requestBody,
                                           Response& response) {
  (void)headers;
  (void)requestBody;
  bool metricsPath = url == "/metrics" || url.startsWith("/metrics?");
  if (!metricsPath) return response.sendError(404, "Not Found", headerTable);
  if (method != kj::HttpMethod::GET && method != kj::HttpMethod::HEAD) {
    return response.sendError(405, "Method Not Allowed", headerTable);
  }
  return serveMetrics(response);
}

Co<void> MetricsEndpoint::serveMetrics(Response& response) {
  // Bounded: a child that neither answers nor dies (stopped with SIGSTOP, say) must not pile up
  // scrapes. Prometheus gives up sooner anyway (scrape_timeout, 10 s by default).
  kj::Maybe<kj::Own<capnp::MallocMessageBuilder>> collected =
      co_await collectTree(actor)
          .then([](kj::Own<capnp::MallocMessageBuilder> snapshot) {
            return kj::Maybe<kj::Own<capnp::MallocMessageBuilder>>(kj::mv(snapshot));
          })
          .exclusiveJoin(actor.timer().afterDelay(COLLECT_TIMEOUT).then([]() {
            return kj::Maybe<kj::Own<capnp::MallocMessageBuilder>>(nullptr);
          }));
  kj::Own<capnp::MallocMessageBuilder> snapshot;
  KJ_IF_MAYBE(s, collected) {
    snapshot = kj::mv(*s);
  } else {
    KJ_LOG(WARNING, "metrics: the tree did not answer a scrape in time", COLLECT_TIMEOUT);
    co_await response.sendError(503, "Service Unavailable", headerTable);
    co_return;
  }
  auto text = renderExposition(snapshot->getRoot<metrics::Snapshot>());
  kj::HttpHeaders headers(headerTable);
  headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
  auto body = response.send(200, "OK", headers, text.size());
  co_await body->write(text.begin(), text.size());
}

kj::Maybe<kj::String> metricsAddressFromEnvironment() {
  const char* address = getenv("HARROW_METRICS");
  if (address == nullptr || *address == '\0') return nullptr;
  return kj::heapString(address);
}

}  // namespace harrow
