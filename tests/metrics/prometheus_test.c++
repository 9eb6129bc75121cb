// The tree's metrics as a real Prometheus sees them: tests/metrics/metrics_tree runs with
// --harrow-metrics=127.0.0.1:0 (root, counter-1, middle, and middle's child leaf); a Prometheus
// server started here scrapes the root every 200 ms; its query API must return the calls each
// actor served (5 Counter.add on counter-1, 7 on the grandchild leaf: collected through middle).
// promtool checks the exposition itself. With --harrow-log-format=json, a child's log line parses
// as JSON and names its actor and task. With --harrow-metrics=0 and a bearer token file, the
// endpoint listens on loopback only, answers 401 without the token, closes at once after a
// request with `Connection: close`, answers malformed HTTP 400 with nothing in the log, and a
// Prometheus given the token (`authorization: credentials_file`) scrapes it while one without
// gets 401 (up 0). Nothing is left running afterwards.
//
// Needs Debian's prometheus package (/usr/bin/prometheus, /usr/bin/promtool); ./dev installs it.
//
// Usage (from BUILD.bazel): prometheus_test METRICS_TREE

#include <harrow/co/cancel_scope.h>
#include "tests/metrics/http_get.h"
#include "tests/names.h"
#include "tests/processes.h"
#include "tests/program.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <kj/encoding.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

namespace harrow {
namespace {

using testing::childrenOf;
using testing::describe;
using testing::httpGet;
using testing::Program;
using testing::readStat;

const char* treePath = nullptr;

constexpr kj::Duration GUARD = 90 * kj::SECONDS;
constexpr unsigned WATCHDOG_SECONDS = 150;

std::string tempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/prometheus-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  KJ_ASSERT(mkdtemp(buffer.data()) != nullptr);
  return buffer.data();
}

// A TCP port nobody listens on right now, for Prometheus' own web listener (it cannot report one
// it picked itself).
int freePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KJ_ASSERT(fd >= 0);
  KJ_DEFER(close(fd));
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  KJ_SYSCALL(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  socklen_t size = sizeof(address);
  KJ_SYSCALL(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size));
  return ntohs(address.sin_port);
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  KJ_ASSERT(out.good(), path);
}

// The value of the first series an instant query returns, or nullptr while it returns none.
kj::Maybe<double> firstValue(kj::StringPtr json) {
  capnp::JsonCodec codec;
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<capnp::JsonValue>();
  codec.decodeRaw(json, root);
  auto field = [](capnp::JsonValue::Reader object,
                  kj::StringPtr name) -> kj::Maybe<capnp::JsonValue::Reader> {
    if (!object.isObject()) return nullptr;
    for (auto f : object.getObject()) {
      if (f.getName() == name) return f.getValue();
    }
    return nullptr;
  };
  auto status = KJ_REQUIRE_NONNULL(field(root, "status"), json);
  KJ_REQUIRE(status.isString() && status.getString() == "success", json);
  auto data = KJ_REQUIRE_NONNULL(field(root, "data"), json);
  auto result = KJ_REQUIRE_NONNULL(field(data, "result"), json);
  if (!result.isArray() || result.getArray().size() == 0) return nullptr;
  auto value = KJ_REQUIRE_NONNULL(field(result.getArray()[0], "value"), json);
  KJ_REQUIRE(value.isArray() && value.getArray().size() == 2, json);
  return atof(value.getArray()[1].getString().cStr());  // [timestamp, "value"]
}

bool exitedWith(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

class PrometheusTest : public ::testing::Test {
protected:
  ~PrometheusTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::vector<pid_t> known;  // the tree's processes, root included

  void SetUp() override { alarm(WATCHDOG_SECONDS); }

  void TearDown() override {
    alarm(0);
    for (auto& child : childrenOf(getpid())) {
      ADD_FAILURE() << "a child process is left: " << describe(child);
    }
    for (pid_t pid : known) {
      KJ_IF_MAYBE(stat, readStat(pid)) {
        if (stat->state == 'Z' && stat->ppid != getpid()) continue;  // exited; not ours to reap
        ADD_FAILURE() << "a process of the tree still exists: " << describe(*stat);
      }
    }
  }

  void run(kj::Function<kj::Promise<void>()> body) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  failAfter(io.provider->getTimer(), GUARD, kj::mv(body)).wait(io.waitScope);
                })) {
      ADD_FAILURE() << kj::str(*e).cStr();
    }
  }

  // Every process below `pid`, recursively (the tree's actors, once it is ready).
  void rememberTree(pid_t pid) {
    known.push_back(pid);
    for (auto& child : childrenOf(pid)) rememberTree(child.pid);
  }

  // Asks Prometheus `query` until it has a value (each scrape takes 200 ms; the guard bounds it).
  Co<double> queryUntilPresent(int port, kj::StringPtr query) {
    auto url = kj::str("http://127.0.0.1:", port, "/api/v1/query?query=",
                       kj::encodeUriComponent(query));
    for (;;) {
      kj::Maybe<kj::Exception> failure;
      try {
        auto reply = co_await httpGet(io, url);
        if (reply.status == 200) {
          KJ_IF_MAYBE(value, firstValue(reply.body)) co_return *value;
        }
      } catch (...) {
        failure = currentException();  // Prometheus is not listening yet
      }
      // Polling an external server: its API has no way to wait for a scrape. The test's guard
      // (GUARD) is what bounds this loop.
      co_await io.provider->getTimer().afterDelay(100 * kj::MILLISECONDS);
    }
  }
};

TEST_F(PrometheusTest, ScrapesTheWholeTree) {
  run([&]() -> Co<void> {
    Program tree(io, {treePath, "--harrow-metrics=127.0.0.1:0", "--harrow-name=root"});
    auto ready = co_await tree.waitForLine("ready ");
    std::string address = testing::field(ready, "metrics");
    KJ_REQUIRE(!address.empty(), ready);
    rememberTree(tree.getPid());
    EXPECT_GE(known.size(), 4u) << "root, counter-1, middle, leaf (and a zygote, if any)";

    // The exposition itself: promtool's checks (format and naming conventions).
    auto scraped = co_await httpGet(io, kj::str("http://", address, "/metrics"));
    EXPECT_EQ(scraped.status, 200u);
    std::string text = scraped.body.cStr();
    EXPECT_NE(text.find("harrow_calls_finished_total{actor=\"leaf\",interface=\"Counter\","
                        "method=\"add\"} 7\n"), std::string::npos) << text;
    EXPECT_NE(text.find("harrow_spawn_duration_seconds_count{actor=\"middle\"} 1\n"),
              std::string::npos) << text;  // leaf, spawned by middle
    EXPECT_NE(text.find("harrow_tasks_in_flight{actor=\"middle\",interface=\"Counter\","
                        "method=\"session\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("harrow_channel_received_bytes_total{actor=\"leaf\"} "),
              std::string::npos) << text;
    EXPECT_EQ(text.find("harrow.Metrics"), std::string::npos) << "scrapes count themselves";
    std::string dir = tempDir();
    writeFile(dir + "/metrics.txt", text);
    {
      Program promtool(io, {"/bin/sh", "-c", "exec promtool check metrics < \"$0\"",
                            dir + "/metrics.txt"});
      int status = co_await promtool.finish();
      EXPECT_TRUE(exitedWith(status, 0)) << promtool.outputSoFar() << "\n" << text;
    }

    // A real Prometheus scraping it.
    int webPort = freePort();
    writeFile(dir + "/prometheus.yml",
              "global:\n"
              "  scrape_interval: 200ms\n"
              "  scrape_timeout: 200ms\n"
              "scrape_configs:\n"
              "  - job_name: harrow\n"
              "    static_configs:\n"
              "      - targets: ['" + address + "']\n");
    Program prometheus(io, {"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
                            "--storage.tsdb.path=" + dir + "/data",
                            "--web.listen-address=127.0.0.1:" + std::to_string(webPort),
                            "--log.level=warn"});
    double counter = co_await queryUntilPresent(webPort,
        "harrow_calls_finished_total{actor=\"counter-1\",interface=\"Counter\",method=\"add\"}");
    EXPECT_EQ(counter, 5);
    double leaf = co_await queryUntilPresent(webPort,
        "harrow_calls_finished_total{actor=\"leaf\",interface=\"Counter\",method=\"add\"}");
    EXPECT_EQ(leaf, 7);
    double failed = co_await queryUntilPresent(webPort,
        "sum(harrow_calls_failed_total{method=\"add\"})");
    EXPECT_EQ(failed, 0);
    double histogram = co_await queryUntilPresent(webPort,
        "harrow_call_duration_seconds_count{actor=\"leaf\",method=\"add\"}");
    EXPECT_EQ(histogram, 7);
    double spawns = co_await queryUntilPresent(webPort,
        "harrow_spawn_duration_seconds_count{actor=\"root\"}");
    EXPECT_EQ(spawns, 2);
    double up = co_await queryUntilPresent(webPort, "up{job=\"harrow\"}");
    EXPECT_EQ(up, 1);

    kill(prometheus.getPid(), SIGTERM);
    int prometheusStatus = co_await prometheus.finish();
    EXPECT_TRUE(exitedWith(prometheusStatus, 0)) << prometheus.outputSoFar();

    kill(tree.getPid(), SIGTERM);
    int treeStatus = co_await tree.finish();
    EXPECT_TRUE(exitedWith(treeStatus, 128 + SIGTERM)) << tree.outputSoFar();
  });
}

// The local addresses listening on TCP `port` (/proc/net/tcp and tcp6), as /proc prints them
// (0100007F is 127.0.0.1, 00000000 every interface).
std::vector<std::string> listeningAddresses(int port) {
  std::vector<std::string> found;
  char suffix[16];
  snprintf(suffix, sizeof(suffix), ":%04X", port);
  for (auto table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      char local[64], remote[64], state[8];
      if (sscanf(line.c_str(), " %*s %63s %63s %7s", local, remote, state) != 3) continue;
      std::string address = local;
      if (std::string(state) != "0A") continue;  // LISTEN
      if (address.size() < 5 || address.substr(address.size() - 5) != suffix) continue;
      found.push_back(address.substr(0, address.size() - 5));
    }
  }
  return found;
}

// Sends `request` to `address` (HOST:PORT) as raw bytes and reads until the server closes.
// `guard` is a failure guard: a server that keeps the connection open past it fails the test.
Co<std::string> exchange(kj::AsyncIoContext& io, std::string address, std::string request,
                         kj::Duration guard) {
  auto target = co_await io.provider->getNetwork().parseAddress(address.c_str());
  auto stream = co_await target->connect();
  co_await stream->write(request.data(), request.size());
  auto text = co_await stream->readAllText().exclusiveJoin(
      io.provider->getTimer().afterDelay(guard).then([]() -> kj::String {
        return kj::str("(the server kept the connection open)");
      }));
  co_return std::string(text.cStr());
}

TEST_F(PrometheusTest, ATokenGuardsTheEndpointOnLoopbackAndARealPrometheusScrapesWithIt) {
  run([&]() -> Co<void> {
    std::string dir = tempDir();
    std::string token = testing::randomToken().cStr();
    writeFile(dir + "/token", token + "\n");
    KJ_SYSCALL(chmod((dir + "/token").c_str(), 0600));
    // Port 0 and no host: a free port on loopback, never every interface.
    Program tree(io, {treePath, "--harrow-metrics=0", "--harrow-metrics-token-file=" + dir + "/token",
                      "--harrow-name=root"});
    auto ready = co_await tree.waitForLine("ready ");
    std::string address = testing::field(ready, "metrics");
    rememberTree(tree.getPid());
    EXPECT_EQ(address.rfind("127.0.0.1:", 0), 0u) << address;
    auto listening = listeningAddresses(atoi(address.substr(address.find(':') + 1).c_str()));
    EXPECT_EQ(listening, std::vector<std::string>{"0100007F"}) << "127.0.0.1 only";

    auto get = [&](std::string headers) {
      return exchange(io, address, "GET /metrics HTTP/1.1\r\nHost: " + address + "\r\n" +
                                       headers + "Connection: close\r\n\r\n",
                      2 * kj::SECONDS);
    };
    auto anonymous = co_await get("");
    EXPECT_EQ(anonymous.rfind("HTTP/1.1 401 ", 0), 0u) << anonymous;
    EXPECT_NE(anonymous.find("WWW-Authenticate: Bearer"), std::string::npos) << anonymous;
    auto wrong = co_await get("Authorization: Bearer " + token.substr(1) + "x\r\n");
    EXPECT_EQ(wrong.rfind("HTTP/1.1 401 ", 0), 0u) << wrong;
    // With the token: the whole exposition, and the connection closed right after it (a
    // request asking for that used to wait out kj-http's 5 s pipeline timeout).
    auto scraped = co_await get("Authorization: Bearer " + token + "\r\n");
    EXPECT_EQ(scraped.rfind("HTTP/1.1 200 OK", 0), 0u) << scraped.substr(0, 200);
    EXPECT_NE(scraped.find("harrow_calls_finished_total{actor=\"leaf\""), std::string::npos);
    EXPECT_EQ(scraped.find("(the server kept the connection open)"), std::string::npos);
    // Malformed requests: a plain 400, and nothing in the log.
    for (auto junk : {"GARBAGE\r\n\r\n", "\x01\x02\x03 / HTTP/1.1\r\n\r\n",
                      "GET /metrics HTTP/1.1\r\nContent-Length: zz\r\n\r\n"}) {
      auto answer = co_await exchange(io, address, junk, 2 * kj::SECONDS);
      EXPECT_EQ(answer.rfind("HTTP/1.1 400 Bad Request", 0), 0u) << answer;
    }

    // A real Prometheus: one job with the token, one without.
    int webPort = freePort();
    writeFile(dir + "/prometheus.yml",
              "global:\n"
              "  scrape_interval: 200ms\n"
              "  scrape_timeout: 200ms\n"
              "scrape_configs:\n"
              "  - job_name: harrow\n"
              "    authorization:\n"
              "      type: Bearer\n"
              "      credentials_file: " + dir + "/token\n"
              "    static_configs:\n"
              "      - targets: ['" + address + "']\n"
              "  - job_name: anonymous\n"
              "    static_configs:\n"
              "      - targets: ['" + address + "']\n");
    Program prometheus(io, {"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
                            "--storage.tsdb.path=" + dir + "/data",
                            "--web.listen-address=127.0.0.1:" + std::to_string(webPort),
                            "--log.level=warn"});
    double leaf = co_await queryUntilPresent(webPort,
        "harrow_calls_finished_total{job=\"harrow\",actor=\"leaf\",method=\"add\"}");
    EXPECT_EQ(leaf, 7);
    EXPECT_EQ(co_await queryUntilPresent(webPort, "up{job=\"harrow\"}"), 1);
    EXPECT_EQ(co_await queryUntilPresent(webPort, "up{job=\"anonymous\"}"), 0);
    kill(prometheus.getPid(), SIGTERM);
    EXPECT_TRUE(exitedWith(co_await prometheus.finish(), 0)) << prometheus.outputSoFar();

    kill(tree.getPid(), SIGTERM);
    EXPECT_TRUE(exitedWith(co_await tree.finish(), 128 + SIGTERM)) << tree.outputSoFar();
    // The refusals and the junk left no trace in the log.
    std::string log = tree.outputSoFar();
    for (auto quiet : {"metrics:", "HTTP", "Content-Length", "stack"}) {
      EXPECT_EQ(log.find(quiet), std::string::npos) << quiet << " in:\n" << log;
    }
  });
}

TEST_F(PrometheusTest, JsonLogLinesOfAChildNameActorAndTask) {
  run([&]() -> Co<void> {
    Program tree(io, {treePath, "--harrow-metrics=127.0.0.1:0", "--harrow-log-format=json",
                      "--harrow-name=root"});
    co_await tree.waitForLine("ready ");
    rememberTree(tree.getPid());
    kill(tree.getPid(), SIGTERM);
    int status = co_await tree.finish();
    EXPECT_TRUE(exitedWith(status, 128 + SIGTERM)) << tree.outputSoFar();

    // middle's session logs "session opened" at warning level (metrics_tree.c++).
    bool found = false;
    std::string output = tree.outputSoFar();
    size_t start = 0;
    while (start < output.size()) {
      size_t end = output.find('\n', start);
      if (end == std::string::npos) end = output.size();
      std::string line = output.substr(start, end - start);
      start = end + 1;
      if (line.find("session opened") == std::string::npos) continue;
      capnp::JsonCodec codec;
      capnp::MallocMessageBuilder message;
      auto root = message.initRoot<capnp::JsonValue>();
      codec.decodeRaw(kj::StringPtr(line.c_str()), root);  // throws unless it is JSON
      KJ_REQUIRE(root.isObject(), line);
      auto text = [&](kj::StringPtr name) -> std::string {
        for (auto f : root.asReader().getObject()) {
          if (f.getName() == name && f.getValue().isString()) return f.getValue().getString();
        }
        return "(missing)";
      };
      EXPECT_EQ(text("actor"), "middle") << line;
      EXPECT_EQ(text("task").rfind("Counter.session#", 0), 0u) << line;
      EXPECT_EQ(text("level"), "warning") << line;
      EXPECT_NE(text("message").find("session opened"), std::string::npos) << line;
      EXPECT_NE(text("file").find("metrics_tree.c++"), std::string::npos) << line;
      found = true;
    }
    EXPECT_TRUE(found) << output;
  });
}

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  KJ_REQUIRE(argc == 2, "usage: prometheus_test METRICS_TREE");
  harrow::treePath = argv[1];
  kj::UnixEventPort::captureChildExit();  // before any event loop: Program awaits exits on it
  harrow::testing::installWatchdog(argv[0]);
  return RUN_ALL_TESTS();
}
