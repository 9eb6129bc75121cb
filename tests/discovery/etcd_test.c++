// Discovery on etcd (runtime/discovery/etcd.h): a harrow tree whose registry is a real etcd,
// started here (Debian's etcd-server: /usr/bin/etcd), one member or a three-member cluster, on
// free loopback ports with data directories under $TEST_TMPDIR.
//
// This test binary is itself a harrow program: run with --harrow-child it is a Service actor
// (tests/discovery/service.capnp). Its children get the etcd address in their spawn spec and
// register themselves there, each under its own lease.
//
// Secured etcd: members started with TLS and --client-cert-auth (certificates from
// tests/cluster/make_certs.sh) serve a tree whose address is etcds://...?ca=&cert=&key=, children
// included, and refuse plain HTTP, a client without a certificate and one of another CA; a member
// with user authentication (root user and role, auth enabled through the gateway) serves a tree
// whose address names user= and password-file=, refuses a client without them or with a wrong
// password, and after a password change (which invalidates every token) the tree logs in again.
//
// Every test runs under failure guards (failAfter on the root's timer, an alarm); afterwards no
// process of ours may remain: neither an actor nor an etcd member.
//
// Usage (from BUILD.bazel): etcd_test --make-certs=PATH

#include <harrow/discovery/discovery.h>
#include <harrow/discovery/etcd.h>
#include <harrow/main.h>
#include <harrow/spawn/actor_nursery.h>
#include "tests/names.h"
#include "tests/processes.h"
#include "tests/discovery/service_impl.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/compat/http.h>
#include <kj/debug.h>
#include <kj/encoding.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace harrow {
namespace {

using testing::ServiceImpl;
using testing::serviceImplementations;

using testing::childrenOf;
using testing::describe;

std::string makeCertsScript;  // tests/cluster/make_certs.sh

// ---------------------------------------------------------------------------------------------
// etcd members

// A loopback port nobody listens on right now. etcd cannot report a port it chose itself, so
// this is racy against other programs; a member that loses the race fails to start and the
// cluster is started again on other ports (EtcdCluster::start).
uint16_t freePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KJ_ASSERT(fd >= 0);
  KJ_DEFER(close(fd));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  KJ_SYSCALL(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
  socklen_t len = sizeof(addr);
  KJ_SYSCALL(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len));
  return ntohs(addr.sin_port);
}

std::string tail(const std::string& path, size_t bytes = 3000) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  auto s = text.str();
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

// Waits up to `timeout` for process `pid` (our child) to exit, and reaps it. KJ reaps every child
// on SIGCHLD (captureChildExit), so the pid may be gone already: a pidfd tells exit either way.
bool waitForExit(pid_t pid, int timeoutMs) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno == ESRCH;  // gone and reaped
  KJ_DEFER(close(pidfd));
  pollfd p = {pidfd, POLLIN, 0};
  int n;
  do n = poll(&p, 1, timeoutMs); while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return true;
}

struct EtcdMember {
  kj::String name;
  uint16_t clientPort = 0;
  uint16_t peerPort = 0;
  kj::String dataDir;
  std::string logPath;
  pid_t pid = 0;
  // TLS for clients: DIR/localhost.pem and .key, clients' certificates checked against DIR/ca.pem.
  std::string certDir;

  // TLS certificates name "localhost"; plain members are reached by address.
  kj::String endpoint() const {
    return kj::str(certDir.empty() ? "127.0.0.1:" : "localhost:", clientPort);
  }
  kj::String peerUrl() const { return kj::str("http://127.0.0.1:", peerPort); }

  void start(kj::StringPtr initialCluster, kj::StringPtr token) {
    auto clientUrl = kj::str(certDir.empty() ? "http" : "https", "://127.0.0.1:", clientPort);
    auto advertised = kj::str(certDir.empty() ? "http" : "https", "://", endpoint());
    auto peer = peerUrl();
    auto cluster = kj::str(initialCluster);
    kj::Vector<kj::String> args;
    args.add(kj::str("/usr/bin/etcd"));
    args.add(kj::str("--name=", name));
    args.add(kj::str("--data-dir=", dataDir));
    args.add(kj::str("--listen-client-urls=", clientUrl));
    args.add(kj::str("--advertise-client-urls=", advertised));
    if (!certDir.empty()) {
      args.add(kj::str("--cert-file=", certDir.c_str(), "/localhost.pem"));
      args.add(kj::str("--key-file=", certDir.c_str(), "/localhost.key"));
      args.add(kj::str("--client-cert-auth"));
      args.add(kj::str("--trusted-ca-file=", certDir.c_str(), "/ca.pem"));
    }
    args.add(kj::str("--listen-peer-urls=", peer));
    args.add(kj::str("--initial-advertise-peer-urls=", peer));
    args.add(kj::str("--initial-cluster=", cluster));
    args.add(kj::str("--initial-cluster-token=", token));
    args.add(kj::str("--initial-cluster-state=new"));
    // Fast elections (a lost leader is replaced within a second) and a short minimum lease TTL
    // (1.5 election timeouts): the test's leases are 2 seconds.
    args.add(kj::str("--heartbeat-interval=50"));
    args.add(kj::str("--election-timeout=500"));
    args.add(kj::str("--log-level=warn"));
    auto argv = KJ_MAP(a, args) { return const_cast<char*>(a.cStr()); };
    auto argvNull = kj::heapArray<char*>(argv.size() + 1);
    for (auto i : kj::indices(argv)) argvNull[i] = argv[i];
    argvNull[argv.size()] = nullptr;
    int log = open(logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    KJ_ASSERT(log >= 0);
    pid_t parent = getpid();
    pid = fork();
    KJ_ASSERT(pid >= 0);
    if (pid == 0) {
      // Dies with the test binary, whatever happens to it.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
      int null = open("/dev/null", O_RDONLY);
      if (null >= 0) dup2(null, STDIN_FILENO);
      execv(argvNull[0], argvNull.begin());
      _exit(127);
    }
    close(log);
  }

  bool running() {
    if (pid == 0) return false;
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) {
      pid = 0;
      return false;
    }
    return true;
  }

  void kill(int signal) {
    if (pid == 0) return;
    ::kill(pid, signal);
    KJ_ASSERT(waitForExit(pid, 10000), "etcd did not exit", name, signal);
    pid = 0;
  }

  void stop() {
    if (pid == 0) return;
    ::kill(pid, SIGTERM);
    if (!waitForExit(pid, 5000)) kill(SIGKILL);
    pid = 0;
  }
};

// GET http://endpoint/health answers {"health":"true"}?
bool healthy(kj::AsyncIoContext& io, kj::StringPtr endpoint) {
  kj::HttpHeaderTable table;
  auto client = kj::newHttpClient(io.provider->getTimer(), table, io.provider->getNetwork(),
                                  nullptr);
  bool ok = false;
  auto check = [&]() -> kj::Promise<void> {
    kj::HttpHeaders headers(table);
    return client->request(kj::HttpMethod::GET, kj::str("http://", endpoint, "/health"), headers)
        .response.then([&](kj::HttpClient::Response&& response) {
          auto status = response.statusCode;
          return response.body->readAllText().attach(kj::mv(response.body))
              .then([&, status](kj::String text) {
                ok = status == 200 && strstr(text.cStr(), "\"true\"") != nullptr;
              });
        });
  };
  auto result = kj::runCatchingExceptions([&]() {
    io.provider->getTimer().timeoutAfter(1 * kj::SECONDS, check()).wait(io.waitScope);
  });
  return ok && result == nullptr;
}

class EtcdCluster {
public:
  // `certDir`: TLS with its certificates (make_certs.sh DIR localhost), or "" for plain HTTP.
  EtcdCluster(kj::AsyncIoContext& io, size_t size, std::string certDir = "")
      : io(io), size(size), certDir(kj::mv(certDir)) {}
  ~EtcdCluster() noexcept(false) { stop(); }

  // Starts the members and waits until each answers /health (bounded: a failure guard).
  void start() {
    for (int attempt = 1;; ++attempt) {
      std::string why;
      if (tryStart(why)) return;
      stop();
      KJ_ASSERT(attempt < 3, "etcd did not start", why);
    }
  }

  void stop() {
    for (auto& m : members) m.stop();
  }

  kj::Vector<EtcdMember> members;

  // etcd://<every member>/<prefix>?ttl=<seconds>, or etcds://...&ca=&cert=&key= (the client's
  // certificate is `certName`'s in the certificate directory).
  kj::String url(kj::StringPtr prefix, uint ttlSeconds, kj::StringPtr certName = "localhost") {
    auto endpoints = KJ_MAP(m, members) { return m.endpoint(); };
    auto plain = kj::str(kj::strArray(endpoints, ","), prefix, "?ttl=", ttlSeconds);
    if (certDir.empty()) return kj::str("etcd://", plain);
    return kj::str("etcds://", plain, "&ca=", certDir.c_str(), "/ca.pem&cert=", certDir.c_str(),
                   "/", certName, ".pem&key=", certDir.c_str(), "/", certName, ".key");
  }

private:
  kj::AsyncIoContext& io;
  size_t size;
  std::string certDir;

  // Whether `m` answers: /health over plain HTTP; over TLS, a read through a client of ours.
  bool answers(EtcdMember& m) {
    if (certDir.empty()) return healthy(io, m.endpoint());
    auto address = EtcdAddress::parse(url("/health-probe", 1));
    address.endpoints.clear();
    address.endpoints.add(m.endpoint());
    EtcdClient client(io.provider->getTimer(), io.provider->getNetwork(), address,
                      1 * kj::SECONDS);
    return kj::runCatchingExceptions([&]() {
             client.range("/health-probe").wait(io.waitScope);
           }) == nullptr;
  }

  bool tryStart(std::string& why) {
    members.clear();
    const char* tmp = getenv("TEST_TMPDIR");
    auto base = kj::str(tmp != nullptr && *tmp == '/' ? tmp : "/tmp", "/",
                        testing::uniqueName("etcd"));
    KJ_SYSCALL(mkdir(base.cStr(), 0700));
    kj::Vector<kj::String> peers;
    for (size_t i = 0; i < size; ++i) {
      EtcdMember m;
      m.name = kj::str("m", i);
      m.clientPort = freePort();
      do m.peerPort = freePort(); while (m.peerPort == m.clientPort);
      m.dataDir = kj::str(base, "/", m.name);
      m.logPath = kj::str(base, "/", m.name, ".log").cStr();
      m.certDir = certDir;
      peers.add(kj::str(m.name, "=", m.peerUrl()));
      members.add(kj::mv(m));
    }
    auto cluster = kj::strArray(peers, ",");
    auto token = testing::randomToken();
    for (auto& m : members) m.start(cluster, token);
    auto& timer = io.provider->getTimer();
    auto deadline = timer.now() + 20 * kj::SECONDS;
    for (auto& m : members) {
      while (!answers(m)) {
        if (!m.running()) {
          why = kj::str(m.name, " exited: ", tail(m.logPath).c_str()).cStr();
          return false;
        }
        if (timer.now() >= deadline) {
          why = kj::str(m.name, " is not healthy in time: ", tail(m.logPath).c_str()).cStr();
          return false;
        }
        timer.afterDelay(50 * kj::MILLISECONDS).wait(io.waitScope);
      }
    }
    return true;
  }
};

// ---------------------------------------------------------------------------------------------
// The fixture

constexpr kj::Duration GUARD = 45 * kj::SECONDS;
constexpr unsigned WATCHDOG_SECONDS = 90;
constexpr uint TTL_SECONDS = 2;

bool contains(const kj::Exception& e, kj::StringPtr what) {
  return strstr(e.getDescription().cStr(), what.cStr()) != nullptr;
}
std::string text(const kj::Exception& e) { return kj::str(e).cStr(); }

class EtcdDiscoveryTest : public ::testing::Test {
protected:
  ~EtcdDiscoveryTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Maybe<EtcdCluster> cluster;
  kj::String prefix = kj::str("/harrow-test/", testing::randomToken());
  kj::Own<Actor> root;
  kj::Maybe<CurrentActorScope> current;

  void SetUp() override { alarm(WATCHDOG_SECONDS); }

  void TearDown() override {
    current = nullptr;
    root = nullptr;
    KJ_IF_MAYBE(c, cluster) c->stop();
    alarm(0);
    for (auto& child : childrenOf(getpid())) {
      ADD_FAILURE() << "a child process is left: " << describe(child);
    }
  }

  EtcdCluster& startCluster(size_t size, std::string certDir = "") {
    auto& c = cluster.emplace(io, size, kj::mv(certDir));
    c.start();
    return c;
  }

  // A directory of the test's own (mode 0700).
  std::string newDirectory(kj::StringPtr name) {
    const char* tmp = getenv("TEST_TMPDIR");
    auto dir = kj::str(tmp != nullptr && *tmp == '/' ? tmp : "/tmp", "/",
                       testing::uniqueName(name));
    KJ_SYSCALL(mkdir(dir.cStr(), 0700));
    return dir.cStr();
  }

  // The error a client of `address` gets for one read, or "" if the read worked.
  std::string refusal(kj::StringPtr address) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      EtcdClient client(io.provider->getTimer(), io.provider->getNetwork(),
                        EtcdAddress::parse(address), 1 * kj::SECONDS);
      client.range(kj::str(prefix, "/x")).wait(io.waitScope);
    })) {
      return text(*e);
    }
    return "";
  }

  // The root actor: a Service too, registered in etcd (the cluster's every member).
  void startRoot(kj::StringPtr name, kj::StringPtr registry) {
    root = kj::heap<Actor>(io, ActorIdentity::random(name), serviceImplementations());
    current.emplace(*root);
    DiscoveryOptions options;
    options.isRoot = true;
    options.mayHostRegistry = true;
    options.registryRequired = true;
    options.registryAddress = kj::heapString(registry);
    options.childTransport = TransportKind::UNIX_ABSTRACT;
    options.bindAddresses.add(newBindAddress(TransportKind::UNIX_ABSTRACT, name));
    setDiscovery(*root, kj::mv(options));
    root->addServer(kj::heap<ServiceImpl>());
  }

  kj::Maybe<kj::Exception> runRoot(kj::Function<kj::Promise<void>()> body) {
    return kj::runCatchingExceptions([&]() {
      root->serve([&]() { return failAfter(root->timer(), GUARD, kj::mv(body)); })
          .wait(io.waitScope);
    });
  }

  void expectOk(kj::Maybe<kj::Exception> failure) {
    KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  }

  Co<ServiceActor::Portal> startService(ActorNursery& nursery, kj::StringPtr name,
                                        pid_t* pidOut = nullptr) {
    auto service = co_await nursery.startActor<ServiceActor>(name, "service");
    auto report = co_await service.report();  // it registered before it answered
    if (pidOut != nullptr) *pidOut = report->getPid();
    co_return service;
  }

  // The keys under the test's prefix, read straight from etcd.
  size_t keysInEtcd() {
    auto& c = KJ_ASSERT_NONNULL(cluster);
    kj::Vector<kj::String> endpoints;
    for (auto& m : c.members) {
      if (m.pid != 0) endpoints.add(m.endpoint());
    }
    EtcdClient client(io.provider->getTimer(), io.provider->getNetwork(), endpoints);
    return client.rangePrefix(kj::str(prefix, "/")).wait(io.waitScope).kvs.size();
  }
};

// ---------------------------------------------------------------------------------------------

TEST(EtcdAddressTest, ParsesEndpointsPrefixTtlTlsAndCredentials) {
  auto a = EtcdAddress::parse("etcd://127.0.0.1:2379");
  ASSERT_EQ(a.endpoints.size(), 1u);
  EXPECT_EQ(a.endpoints[0], "127.0.0.1:2379");
  EXPECT_EQ(a.prefix, "/harrow");
  EXPECT_EQ(a.ttl, 5 * kj::SECONDS);

  auto b = EtcdAddress::parse("etcd://h1:1,h2:2,h3:3/harrow/farm/?ttl=10");
  ASSERT_EQ(b.endpoints.size(), 3u);
  EXPECT_EQ(b.endpoints[2], "h3:3");
  EXPECT_EQ(b.prefix, "/harrow/farm");
  EXPECT_EQ(b.ttl, 10 * kj::SECONDS);

  auto c = EtcdAddress::parse(
      "etcds://e1:2379/p?ttl=3&ca=/c/ca.pem&cert=/c/me.pem&key=/c/me.key&user=u&password-file=/c/pw");
  EXPECT_TRUE(c.tls);
  EXPECT_EQ(c.prefix, "/p");
  EXPECT_EQ(c.caFile, "/c/ca.pem");
  EXPECT_EQ(c.certFile, "/c/me.pem");
  EXPECT_EQ(c.keyFile, "/c/me.key");
  EXPECT_EQ(c.user, "u");
  EXPECT_EQ(c.passwordFile, "/c/pw");
  EXPECT_FALSE(a.tls);

  for (auto bad : {"etcd://", "etcd://host", "etcd://h:1,", "etcd://h:99999/x", "etcd://h:1?ttl=0",
                   "etcd://h:1/p?ttl=x", "etcd://h:1/p?color=red", "etcd://:1",
                   "etcd://h:1/p?ca=/ca.pem", "etcds://h:1/p?cert=/me.pem",
                   "etcds://h:1/p?key=/me.key", "etcd://h:1/p?user=u",
                   "etcd://h:1/p?password-file=/pw"}) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { EtcdAddress::parse(bad); })) {
      EXPECT_TRUE(contains(*e, "bad etcd registry address")) << bad << ": " << text(*e);
    } else {
      ADD_FAILURE() << "accepted " << bad;
    }
  }
  EXPECT_TRUE(EtcdAddress::matches("etcd://x:1"));
  EXPECT_TRUE(EtcdAddress::matches("etcds://x:1"));
  EXPECT_FALSE(EtcdAddress::matches("tcp:127.0.0.1:1616"));
}

// One member: the tree registers, lookups find each actor by name (from the root and from a
// child), waitForActor wakes when the actor appears, a child killed with SIGKILL disappears once
// its lease expires, one cancelled deregisters at once, and the root deregisters on exit.
TEST_F(EtcdDiscoveryTest, SingleMember) {
  auto& etcd = startCluster(1);
  startRoot("etcd-root", etcd.url(prefix, TTL_SECONDS));
  kj::Maybe<kj::String> lateReply;
  kj::Maybe<Departure> killed;
  kj::Maybe<Departure> cancelled;
  kj::Maybe<kj::Exception> nurseryFailure;
  kj::Duration killedAfter = 0 * kj::SECONDS;
  expectOk(runRoot([&]() -> Co<void> {
    // Something under the prefix that is no entry of ours harms no lookup.
    {
      auto endpoints = KJ_MAP(m, etcd.members) { return m.endpoint(); };
      EtcdClient client(root->timer(), root->io().provider->getNetwork(), endpoints);
      co_await client.put(kj::str(prefix, "/actors/svc-a/not-an-entry"), "{\"name\": 7}");
    }
    EXPECT_TRUE(Discovery::of(*root).usesEtcd());
    EXPECT_FALSE(hostsRegistry(*root));
    auto roots = co_await queryActor(*root, "etcd-root");
    KJ_ASSERT(roots.size() == 1);
    EXPECT_EQ(roots[0].uuid, root->identity().uuid);
    EXPECT_EQ(roots[0].pid, uint32_t(getpid()));
    EXPECT_EQ(roots[0].addresses.size(), 1u);

    co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
      // Nobody is registered under "svc-late" yet: this waits on an etcd watch.
      tasks.startSoon([&]() -> Co<void> {
        auto late = co_await waitForActor<ServiceActor>(*root, "svc-late");
        auto reply = co_await late.echo("woken");
        lateReply = kj::str(reply->getText());
      });
      try {
        co_await openActorNursery(*root, [&](ActorNursery& nursery) -> Co<void> {
          pid_t pidA = 0;
          auto a = co_await startService(nursery, "svc-a", &pidA);
          auto bPortal = co_await startService(nursery, "svc-b");
          auto entries = co_await queryActor(*root, "svc-a");
          KJ_ASSERT(entries.size() == 1);
          EXPECT_EQ(entries[0].pid, uint32_t(pidA));
          EXPECT_EQ((co_await queryActor(*root, "")).size(), 3u) << "root, svc-a, svc-b";
          auto nobody = co_await findActor<ServiceActor>(*root, "svc-nobody");
          EXPECT_TRUE(nobody == nullptr);

          // Found by name, from the root and from a child.
          auto maybeFound = co_await findActor<ServiceActor>(*root, "svc-b");
          auto& found = KJ_ASSERT_NONNULL(maybeFound);
          EXPECT_EQ((co_await found.echo("hi"))->getText(), "svc-b: hi");
          auto viaChild = co_await a.lookup([](auto p) {
            p.setName("svc-b");
            p.setText("from a");
          });
          EXPECT_TRUE(viaChild->getFound());
          EXPECT_EQ(viaChild->getReply(), "svc-b: from a");

          // The waiter wakes when svc-late registers.
          co_await startService(nursery, "svc-late");

          // Cancelled: it deregisters on its way out. The departure watch reads the entry
          // before the cancel is even sent (the call runs up to its request at once).
          auto bEntries = co_await queryActor(*root, "svc-b");
          KJ_ASSERT(bEntries.size() == 1);
          auto bDeparture = waitForDeparture(*root, bEntries[0].uuid);
          nursery.cancelActor(bPortal);
          cancelled = co_await kj::mv(bDeparture);
          EXPECT_EQ((co_await queryActor(*root, "svc-b")).size(), 0u);

          // Killed: no deregistration; the entry goes when its lease expires (a TTL at the
          // earliest after its last keepalive: the waiter reads it long before).
          pid_t doomedPid = 0;
          co_await startService(nursery, "svc-doomed", &doomedPid);
          auto doomed = co_await queryActor(*root, "svc-doomed");
          KJ_ASSERT(doomed.size() == 1);
          auto doomedUuid = kj::heapArray(doomed[0].uuid.asPtr());
          tasks.startSoon([&, uuid = kj::mv(doomedUuid)]() -> Co<void> {
            auto before = root->timer().now();
            killed = co_await waitForDeparture(*root, uuid);
            killedAfter = root->timer().now() - before;
          });
          KJ_SYSCALL(kill(doomedPid, SIGKILL));
          // The nursery sees its child die and cancels this body.
          co_await kj::Promise<void>(kj::NEVER_DONE);
        });
      } catch (...) {
        nurseryFailure = currentException();
      }
    });  // joins the waiters
    EXPECT_EQ((co_await queryActor(*root, "svc-doomed")).size(), 0u);
    EXPECT_EQ((co_await queryActor(*root, "")).size(), 1u) << "only the root is left";
  }));
  KJ_IF_MAYBE(e, nurseryFailure) {
    EXPECT_TRUE(contains(*e, "harrow.ActorDied")) << text(*e);
  } else {
    ADD_FAILURE() << "the nursery did not report the killed child";
  }
  KJ_IF_MAYBE(reply, lateReply) {
    EXPECT_EQ(*reply, "svc-late: woken");
  } else {
    ADD_FAILURE() << "waitForActor did not wake";
  }
  KJ_IF_MAYBE(how, killed) {
    EXPECT_EQ(*how, Departure::CHANNEL_LOST);
    EXPECT_GE(killedAfter, 1 * kj::SECONDS) << "the entry went before its lease could expire";
  } else {
    ADD_FAILURE() << "no departure seen for the killed actor";
  }
  KJ_IF_MAYBE(how, cancelled) {
    EXPECT_EQ(*how, Departure::DEREGISTERED);
  } else {
    ADD_FAILURE() << "no departure seen for the cancelled actor";
  }
  // The root deregistered on its way out: only the test's own junk is left under the prefix.
  EXPECT_EQ(keysInEtcd(), 1u);
}

// An etcd nobody runs: a root that asked for it fails with a clear error, in bounded time.
TEST_F(EtcdDiscoveryTest, UnreachableEtcdIsAClearError) {
  startRoot("etcd-lonely-root", kj::str("etcd://127.0.0.1:", freePort(), "/nobody"));
  bool ran = false;
  auto failure = runRoot([&]() -> Co<void> {
    ran = true;
    co_return;
  });
  EXPECT_FALSE(ran);
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(contains(*e, "harrow.RegistryUnavailable")) << text(*e);
    EXPECT_TRUE(contains(*e, "cannot be reached")) << text(*e);
  } else {
    ADD_FAILURE() << "the root ran without its registry";
  }
}

// Three members: the member the tree talks to (the first listed) is killed; registration,
// lookups, an open watch and the leases' keepalives carry on with the other two.
TEST_F(EtcdDiscoveryTest, ClusterSurvivesLosingTheMemberInUse) {
  auto& etcd = startCluster(3);
  startRoot("etcd-cluster-root", etcd.url(prefix, TTL_SECONDS));
  kj::Maybe<kj::String> lateReply;
  expectOk(runRoot([&]() -> Co<void> {
    // A client of our own with a watch open on the first member (an event through it proves it
    // is open) when that member dies.
    auto endpoints = KJ_MAP(m, etcd.members) { return m.endpoint(); };
    EtcdClient client(root->timer(), root->io().provider->getNetwork(), endpoints);
    auto watched = kj::str(prefix, "/watched/");
    auto range = co_await client.rangePrefix(watched);
    auto watch = client.watchPrefix(watched, range.revision + 1, false);
    co_await client.put(kj::str(watched, "1"), "before");
    auto first = co_await watch->next();
    KJ_ASSERT(first.size() == 1);
    EXPECT_EQ(first[0].kv.value, "before");
    EXPECT_EQ(client.currentEndpoint(), etcd.members[0].endpoint());

    co_await openActorNursery(*root, [&](ActorNursery& nursery) -> Co<void> {
      auto a = co_await startService(nursery, "svc-a");
      EXPECT_EQ((co_await queryActor(*root, "svc-a")).size(), 1u);

      etcd.members[0].kill(SIGKILL);

      // The watch reopens on another member from the revision it had reached: nothing lost.
      co_await client.put(kj::str(watched, "2"), "after");
      EXPECT_NE(client.currentEndpoint(), etcd.members[0].endpoint());
      auto second = co_await watch->next();
      KJ_ASSERT(second.size() == 1);
      EXPECT_EQ(second[0].kv.value, "after");

      // A new child registers (its first endpoint refuses: it fails over) and is found.
      auto b = co_await startService(nursery, "svc-b");
      EXPECT_EQ((co_await queryActor(*root, "svc-b")).size(), 1u);
      auto viaChild = co_await b.lookup([](auto p) {
        p.setName("svc-a");
        p.setText("still there");
      });
      EXPECT_TRUE(viaChild->getFound());
      EXPECT_EQ(viaChild->getReply(), "svc-a: still there");
      co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
        tasks.startSoon([&]() -> Co<void> {
          auto late = co_await waitForActor<ServiceActor>(*root, "svc-late");
          lateReply = kj::str((co_await late.echo("after failover"))->getText());
        });
        co_await startService(nursery, "svc-late");
      });
      // The keepalives go on: well past a TTL after the member died, every entry is there.
      co_await root->timer().afterDelay(TTL_SECONDS * 3 / 2 * kj::SECONDS);
      auto everyone = co_await queryActor(*root, "");
      EXPECT_EQ(everyone.size(), 4u) << "root, svc-a, svc-b, svc-late";
      (void)a;
      nursery.cancel();
    });
  }));
  KJ_IF_MAYBE(reply, lateReply) {
    EXPECT_EQ(*reply, "svc-late: after failover");
  } else {
    ADD_FAILURE() << "waitForActor did not wake after the failover";
  }
  // Every actor deregistered; only the test's own keys are left.
  EXPECT_EQ(keysInEtcd(), 2u);
}

// One request to etcd's JSON gateway by hand (as etcdctl would make it): the status and body.
Co<std::pair<uint, std::string>> gateway(kj::AsyncIoContext& io, std::string endpoint,
                                         std::string path, std::string body,
                                         std::string token = "") {
  kj::HttpHeaderTable::Builder builder;
  auto authorization = builder.add("Authorization");
  auto table = builder.build();
  auto client = kj::newHttpClient(io.provider->getTimer(), *table, io.provider->getNetwork(),
                                  nullptr);
  kj::HttpHeaders headers(*table);
  if (!token.empty()) headers.set(authorization, token.c_str());
  auto request = client->request(kj::HttpMethod::POST,
                                 kj::str("http://", endpoint.c_str(), path.c_str()), headers,
                                 uint64_t(body.size()));
  co_await request.body->write(body.data(), body.size());
  request.body = nullptr;
  auto response = co_await kj::mv(request.response);
  auto text = co_await response.body->readAllText();
  co_return std::make_pair(response.statusCode, std::string(text.cStr()));
}

void writeSecret(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  KJ_ASSERT(fd >= 0, path);
  KJ_ASSERT(write(fd, text.data(), text.size()) == ssize_t(text.size()));
  close(fd);
}

// A tree whose etcd speaks only TLS and wants clients' certificates: the root and a child it
// spawns (the address, with its ca=, cert= and key=, travels in the spawn spec) register and find
// each other; plain HTTP, TLS without a client certificate and a certificate of another CA get
// nothing, and a key file others may read is refused before anything is sent.
TEST_F(EtcdDiscoveryTest, OverTlsWithClientCertificates) {
  if (makeCertsScript.empty()) GTEST_SKIP() << "no --make-certs=PATH";
  std::string certs = newDirectory("etcd-certs");
  std::string command = "/bin/bash '" + makeCertsScript + "' '" + certs + "' localhost";
  ASSERT_EQ(system(command.c_str()), 0);
  auto& etcd = startCluster(1, certs);
  auto url = etcd.url(prefix, TTL_SECONDS);
  startRoot("etcd-tls-root", url);
  expectOk(runRoot([&]() -> Co<void> {
    co_await openActorNursery(*root, [&](ActorNursery& nursery) -> Co<void> {
      co_await startService(nursery, "svc-tls");
      auto maybeFound = co_await findActor<ServiceActor>(*root, "svc-tls");
      auto& found = KJ_ASSERT_NONNULL(maybeFound);
      EXPECT_EQ((co_await found.echo("over tls"))->getText(), "svc-tls: over tls");
      EXPECT_EQ((co_await queryActor(*root, "")).size(), 2u) << "root, svc-tls";
      nursery.cancel();
    });
  }));
  EXPECT_EQ(refusal(url), "");
  auto endpoint = etcd.members[0].endpoint();
  EXPECT_NE(refusal(kj::str("etcd://", endpoint, prefix)), "") << "plain HTTP to a TLS member";
  EXPECT_NE(refusal(kj::str("etcds://", endpoint, prefix, "?ca=", certs.c_str(), "/ca.pem")), "")
      << "no client certificate";
  EXPECT_NE(refusal(etcd.url(prefix, TTL_SECONDS, "rogue")), "") << "a certificate of another CA";
  KJ_SYSCALL(chmod((certs + "/localhost.key").c_str(), 0644));
  auto unsafe = refusal(url);
  EXPECT_NE(unsafe.find("harrow.UnsafeFile: the etcd client key file"), std::string::npos)
      << unsafe;
}

// A tree whose etcd has user authentication on: the root and its child log in (user=,
// password-file=) and carry the token; a password change invalidates every token, and the tree
// logs in again by itself. A client without credentials or with a wrong password is refused,
// saying why.
TEST_F(EtcdDiscoveryTest, WithUserAuthenticationLoggingInAgainWhenTheTokenIsDropped) {
  auto& etcd = startCluster(1);
  std::string endpoint = etcd.members[0].endpoint().cStr();
  std::string password = testing::randomToken().cStr();
  std::string credentials = R"({"name": "root", "password": ")" + password + R"("})";
  auto setUp = [&]() -> Co<void> {
    std::vector<std::pair<std::string, std::string>> steps = {
        {"/v3/auth/user/add", credentials},
        {"/v3/auth/role/add", R"({"name": "root"})"},
        {"/v3/auth/user/grant", R"({"user": "root", "role": "root"})"},
        {"/v3/auth/enable", "{}"}};
    for (auto& step : steps) {
      auto answer = co_await gateway(io, endpoint, step.first, step.second);
      KJ_REQUIRE(answer.first == 200, step.first, answer.second);
    }
  };
  setUp().wait(io.waitScope);
  std::string secrets = newDirectory("etcd-auth");
  writeSecret(secrets + "/password", password + "\n");
  writeSecret(secrets + "/wrong", "not-the-password\n");
  auto url = kj::str(etcd.url(prefix, TTL_SECONDS), "&user=root&password-file=",
                     secrets.c_str(), "/password");
  startRoot("etcd-auth-root", url);
  expectOk(runRoot([&]() -> Co<void> {
    co_await openActorNursery(*root, [&](ActorNursery& nursery) -> Co<void> {
      auto a = co_await startService(nursery, "svc-auth");
      EXPECT_EQ((co_await queryActor(*root, "")).size(), 2u) << "root, svc-auth";

      // Every token etcd gave goes with a password change (to the same password).
      auto login = co_await gateway(io, endpoint, "/v3/auth/authenticate", credentials);
      KJ_REQUIRE(login.first == 200, login.second);
      auto token = login.second.substr(login.second.find("\"token\":\"") + 9);
      token = token.substr(0, token.find('"'));
      auto changed = co_await gateway(io, endpoint, "/v3/auth/user/changepw", credentials, token);
      KJ_REQUIRE(changed.first == 200, changed.second);
      auto stale = co_await gateway(io, endpoint, "/v3/kv/range", R"({"key": "eA=="})", token);
      EXPECT_EQ(stale.first, 401u) << "the token still works: " << stale.second;

      // The root and the child log in again by themselves.
      auto maybeFound = co_await findActor<ServiceActor>(*root, "svc-auth");
      auto& found = KJ_ASSERT_NONNULL(maybeFound);
      EXPECT_EQ((co_await found.echo("again"))->getText(), "svc-auth: again");
      auto viaChild = co_await a.lookup([](auto p) {
        p.setName("etcd-auth-root");
        p.setText("from the child");
      });
      EXPECT_TRUE(viaChild->getFound());
      nursery.cancel();
    });
  }));
  EXPECT_EQ(refusal(url), "");
  auto anonymous = refusal(etcd.url(prefix, TTL_SECONDS));
  EXPECT_NE(anonymous.find("requires authentication: add user= and password-file="),
            std::string::npos) << anonymous;
  auto wrong = refusal(kj::str(etcd.url(prefix, TTL_SECONDS), "&user=root&password-file=",
                               secrets.c_str(), "/wrong"));
  EXPECT_NE(wrong.find("authentication failed"), std::string::npos) << wrong;
}

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  if (argc > 1 && kj::StringPtr(argv[1]) == "--harrow-child") {
    return harrow::main(argc, argv, harrow::testing::serviceImplementations(),
                        [](harrow::Actor&) -> kj::Promise<void> { return kj::READY_NOW; });
  }
  kj::UnixEventPort::captureChildExit();
  harrow::testing::installWatchdog("etcd_test");
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--make-certs=", 0) == 0) harrow::makeCertsScript = arg.substr(13);
  }
  return RUN_ALL_TESTS();
}
