// The root's /metrics: Prometheus' text exposition of the whole tree's metrics over HTTP
// (kj-http), served while the actor serves. harrow::main attaches one to the root when
// --harrow-metrics=ADDR (HARROW_METRICS) is given; docs/REFERENCE.md lists the metrics.
//
// A scrape collects the tree right then (collectTree(), <harrow/engine/metrics.h>): one call to
// each actor over the channels the tree already has, nothing kept in between.

#pragma once

#include <harrow/actor/actor.h>

#include <kj/compat/http.h>

namespace harrow {

class MetricsEndpoint final : public ActorAttachment, public kj::HttpService {
public:
  // `address`: HOST:PORT (Prometheus' usual form; port 0 picks a free one), or tcp:HOST:PORT.
  MetricsEndpoint(Actor& actor, kj::StringPtr address);
  ~MetricsEndpoint() noexcept(false);

  // Once started: the address as bound ("127.0.0.1:9464"), with the real port.
  kj::StringPtr address() const { return boundAddress; }

  // ActorAttachment
  Co<void> start() override;
  Co<void> stop() override;

private:
  Actor& actor;
  kj::String requested;
  kj::String boundAddress;
  kj::HttpHeaderTable headerTable;
  kj::Own<kj::ConnectionReceiver> listener;
  kj::Own<kj::HttpServer> server;
  kj::Maybe<kj::Promise<void>> listening;

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& requestBody,
                            Response& response) override;
  Co<void> serveMetrics(Response& response);
};

// HARROW_METRICS, if set and not empty: the address the root serves /metrics on.
kj::Maybe<kj::String> metricsAddressFromEnvironment();

}  // namespace harrow
