// One HTTP GET from a test (kj-http): the status and the body.

#pragma once

#include <harrow/co/co.h>

#include <kj/async-io.h>
#include <kj/compat/http.h>

namespace harrow::testing {

struct HttpReply {
  unsigned status;
  kj::String body;
};

// `url`: http://HOST:PORT/path...
inline Co<HttpReply> httpGet(kj::AsyncIoContext& io, kj::StringPtr url) {
  kj::HttpHeaderTable table;
  auto client = kj::newHttpClient(io.provider->getTimer(), table, io.provider->getNetwork(),
                                  nullptr);
  auto request = client->request(kj::HttpMethod::GET, url, kj::HttpHeaders(table));
  auto response = co_await kj::mv(request.response);
  auto body = co_await response.body->readAllText();
  co_return HttpReply{response.statusCode, kj::mv(body)};
}

}  // namespace harrow::testing
