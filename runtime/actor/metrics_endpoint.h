// The root's /metrics: Prometheus' text exposition of the whole tree's metrics over HTTP
// (kj-http), served while the actor serves. harrow::main attaches one to the root when
// --harrow-metrics=ADDR (HARROW_METRICS) is given; docs/REFERENCE.md lists the metrics.
//
// Exposure: an address without a host (`9464`, `:9464`, `0`) binds loopback only; every interface
// only when asked for by name (`0.0.0.0:9464`, `*:9464`). With a bearer token
// (--harrow-metrics-token-file=PATH, HARROW_METRICS_TOKEN_FILE: a file only this user may read,
// as the cookie) a request without `Authorization: Bearer TOKEN` is answered 401 and collects
// nothing (Prometheus: `authorization: {credentials_file: PATH}` in the scrape config). A
// request with `Connection: close` gets its answer with `Connection: close` and the connection
// closed at once; malformed HTTP is answered 400 and logged at debug level, one line, no trace.
//
// A scrape collects the tree right then (collectTree(), <harrow/engine/metrics.h>): one call to
// each actor over the channels the tree already has, nothing kept in between.

#pragma once

#include <harrow/actor/actor.h>

#include <kj/compat/http.h>

namespace harrow {

class MetricsEndpoint final : public ActorAttachment,
                              private kj::HttpServerErrorHandler,
                              private kj::HttpServerCallbacks {
public:
  // `address`: HOST:PORT (Prometheus' usual form; port 0 picks a free one), or tcp:HOST:PORT; a
  // PORT alone (or :PORT) is loopback's. `bearerToken`: if given, every request must carry it.
  MetricsEndpoint(Actor& actor, kj::StringPtr address,
                  kj::Maybe<kj::Array<kj::byte>> bearerToken = nullptr);
  ~MetricsEndpoint() noexcept(false);

  // Once started: the address as bound ("127.0.0.1:9464"), with the real port.
  kj::StringPtr address() const { return boundAddress; }

  // ActorAttachment
  Co<void> start() override;
  Co<void> stop() override;

private:
  class Exchange;  // one connection's HttpService
  using Response = kj::HttpService::Response;

  Actor& actor;
  kj::String requested;
  kj::String boundAddress;
  kj::Maybe<kj::Array<kj::byte>> token;
  kj::HttpHeaderId authorizationHeader = kj::HttpHeaderId::HOST;  // set by the constructor
  kj::HttpHeaderId authenticateHeader = kj::HttpHeaderId::HOST;
  kj::Own<kj::HttpHeaderTable> headerTable;
  // Whether the response being started must close its connection (the request asked to):
  // HttpServerCallbacks::shouldClose() is asked as each response begins.
  bool closeThisResponse = false;
  kj::Own<kj::ConnectionReceiver> listener;
  kj::Own<kj::HttpServer> server;
  kj::Maybe<kj::Promise<void>> listening;

  // The answer to one request; `close`: the request asked to close the connection after it.
  kj::Promise<void> respond(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, Response& response, bool close);
  Co<void> serveMetrics(Response& response, bool close);
  // Begins a response (Connection: close and the connection's end if `close`).
  kj::Own<kj::AsyncOutputStream> begin(Response& response, unsigned status, kj::StringPtr statusText,
                                       const kj::HttpHeaders& headers, uint64_t bytes,
                                       bool close);
  // A whole response whose body is its status text.
  kj::Promise<void> sendPlain(Response& response, unsigned status, kj::StringPtr statusText,
                              kj::HttpHeaders& headers, bool close);
  bool authorized(const kj::HttpHeaders& headers) const;

  // HttpServerErrorHandler, HttpServerCallbacks
  kj::Promise<void> handleClientProtocolError(kj::HttpHeaders::ProtocolError protocolError,
                                              Response& response) override;
  kj::Promise<void> handleApplicationError(kj::Exception exception,
                                           kj::Maybe<Response&> response) override;
  bool shouldClose() override { return closeThisResponse; }
};

// HARROW_METRICS, if set and not empty: the address the root serves /metrics on.
kj::Maybe<kj::String> metricsAddressFromEnvironment();

// The bearer token from the file HARROW_METRICS_TOKEN_FILE names, if set and not empty
// (readSecretFile's checks: harrow.UnsafeFile for a file others may read; an empty one is refused).
kj::Maybe<kj::Array<kj::byte>> metricsTokenFromEnvironment();

// The address to listen on for a --harrow-metrics value: "tcp:" dropped; a port alone, or
// ":PORT", on 127.0.0.1.
kj::String metricsListenAddress(kj::StringPtr requested);

}  // namespace harrow
