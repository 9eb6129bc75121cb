// The `harrow` command (programs/harrow/) against real trees: the examples run as programs (examples/tree
// --hold, examples/counter --serve, examples/multi_program's daemon), each hosting a registry at
// an address of its own, and `harrow` run as a subprocess, as a user would:
//  - ps lists every actor with the right parent links (JSON), a daemon's tree too;
//  - call answers a call with the right JSON, a stream with one line per item, a context with
//    its started value, the items it streams back for lines of stdin, and its result;
//  - stacks shows an open stream and an open context while they are in flight (synchronised on
//    the command's output, never on time);
//  - cancel ends an actor gracefully (its parent reaps it and carries on), and kills one whose
//    teardown outlasts the grace period (its parent sees it die), over a Unix socket and over
//    loopback TCP; it never signals a pid it was only told (an actor that lies about its pid:
//    the pid's process lives on), nor a process of another user (a tree run as `nobody`);
//  - a wrong cookie is refused (exit 4), an unknown name is exit 3, bad usage exit 2;
// and no process is left behind.
//
// Usage (from BUILD.bazel): cli_test HARROW TREE COUNTER DAEMON LIAR

#include <harrow/co/cancel_scope.h>
#include <harrow/co/version.h>
#include <harrow/wire.capnp.h>
#include "tests/cli/command.h"
#include "tests/names.h"
#include "tests/processes.h"
#include "tests/program.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace harrow {
namespace {

using testing::childrenOf;
using testing::Command;
using testing::describe;
using testing::field;
using testing::Finished;
using testing::Program;
using testing::readStat;

const char* harrowPath = nullptr;
const char* treePath = nullptr;
const char* counterPath = nullptr;
const char* daemonPath = nullptr;
const char* liarPath = nullptr;

constexpr kj::Duration GUARD = 60 * kj::SECONDS;
constexpr unsigned WATCHDOG_SECONDS = 120;

// This machine's host name, as `harrow ps` shows it for an actor running here.
std::string thisHost() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return host;
}

// A parsed JSON document (capnp's JSON codec), with lookups that fail the test clearly.
class Json {
public:
  explicit Json(const std::string& text) : text(text) {
    auto root = message.initRoot<capnp::JsonValue>();
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  capnp::JsonCodec().decodeRaw(kj::arrayPtr(text.data(), text.size()), root);
                })) {
      ADD_FAILURE() << "not JSON: " << text << "\n" << e->getDescription().cStr();
    }
  }
  capnp::JsonValue::Reader root() { return message.getRoot<capnp::JsonValue>().asReader(); }

private:
  std::string text;
  capnp::MallocMessageBuilder message;
};

capnp::JsonValue::Reader get(capnp::JsonValue::Reader object, kj::StringPtr name) {
  KJ_REQUIRE(object.isObject(), "not a JSON object", name);
  for (auto f : object.getObject()) {
    if (f.getName() == name) return f.getValue();
  }
  KJ_FAIL_REQUIRE("no such member", name);
}

std::string str(capnp::JsonValue::Reader value) {
  if (value.isNull()) return "null";
  KJ_REQUIRE(value.isString(), "not a JSON string");
  return value.getString();
}

double num(capnp::JsonValue::Reader value) {
  KJ_REQUIRE(value.isNumber(), "not a JSON number");
  return value.getNumber();
}

// Arguments built outside the coroutines (GCC 12 miscompiles braced lists of string literals
// inside one: "array used as initializer").
template <typename... Args>
std::vector<std::string> argv(Args&&... args) {
  return {std::string(args)...};
}

bool exitedWith(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

class CliTest : public ::testing::Test {
public:  // for the tests run twice, once per transport
  ~CliTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::string registry = testing::uniqueAbstractAddress("cli-registry").cStr();
  std::string cookie;
  std::set<pid_t> known;  // every pid of the trees, checked gone at the end

  void SetUp() override {
    alarm(WATCHDOG_SECONDS);
    cookie = newCookie("cookie");
    // The trees' roots read it (children get the secret from their parent), and so does harrow.
    setenv("HARROW_COOKIE", cookie.c_str(), 1);
  }

  void TearDown() override {
    alarm(0);
    // A leaf may still be on its way out (SIGSTOPped, then killed by PR_SET_PDEATHSIG and
    // re-parented): wait for each, bounded.
    for (auto& line : harrow::testing::leftBehind(known, 5000)) ADD_FAILURE() << line;
  }

  // A cookie file of its own (64 hex digits, mode 0600).
  static std::string newCookie(const char* name) {
    const char* tmp = getenv("TEST_TMPDIR");
    std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/" +
                       testing::uniqueName(name).cStr();
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    KJ_REQUIRE(fd >= 0, "cannot create the cookie", path);
    auto text = kj::str(testing::randomToken(), testing::randomToken(), testing::randomToken(),
                        testing::randomToken());
    KJ_REQUIRE(write(fd, text.begin(), text.size()) == ssize_t(text.size()));
    close(fd);
    return path;
  }

  void run(kj::Function<kj::Promise<void>()> body) {
    auto& timer = io.provider->getTimer();
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  failAfter(timer, GUARD, kj::mv(body)).wait(io.waitScope);
                })) {
      ADD_FAILURE() << kj::str(*e).cStr();
    }
  }

  std::vector<std::string> harrowArgs(std::vector<std::string> args) {
    std::vector<std::string> all = {harrowPath, "--registry=" + registry};
    for (auto& a : args) all.push_back(a);
    return all;
  }

  // `harrow ARGS...` to its end.
  Co<Finished> harrow(std::vector<std::string> args) {
    Command command(io, harrowArgs(args));
    co_return co_await command.finish();
  }

  kj::Own<Program> program(std::vector<std::string> args,
                           std::string transport = "unix-abstract",
                           std::vector<std::string> environment = {}) {
    args.push_back("--harrow-registry=" + registry);
    args.push_back("--harrow-transport=" + transport);
    auto p = kj::heap<Program>(io, args, environment);
    known.insert(p->getPid());
    return p;
  }

  // examples/counter --serve, once counter-1 is serving.
  Co<kj::Own<Program>> counter() {
    auto p = program(argv(counterPath, "--serve"));
    co_await p->waitForLine("serving:");
    co_return kj::mv(p);
  }

  // `harrow ps --json`: the document, and each actor's object by name.
  using Actors = std::map<std::string, capnp::JsonValue::Reader>;
  Co<kj::Own<Json>> ps(Actors& byName) {
    auto ran = co_await harrow(argv("ps", "--json"));
    EXPECT_EQ(ran.exitCode(), 0) << ran.describe();
    auto json = kj::heap<Json>(ran.out);
    byName.clear();
    auto list = get(json->root(), "actors").getArray();
    for (auto actor : list) {
      byName[str(get(actor, "name"))] = actor;
      known.insert(num(get(actor, "pid")));
    }
    co_return kj::mv(json);
  }

  // Interrupts a tree's root (its Ctrl-C) and waits for it: every actor of it exits.
  Co<int> stop(Program& root) {
    root.signal(SIGINT);
    co_return co_await root.finish();
  }
};

// examples/tree --depth=2 --width=2: each node and its parent ("null": the root).
std::map<std::string, std::string> treeParents() {
  return {{"tree", "null"}, {"n0", "tree"}, {"n1", "tree"}, {"n0.0", "n0"},
          {"n0.1", "n0"},   {"n1.0", "n1"}, {"n1.1", "n1"}};
}

TEST_F(CliTest, PsListsEveryActorUnderItsParent) {
  run([&]() -> Co<void> {
    // root "tree" -> n0, n1 -> n0.0, n0.1, n1.0, n1.1: seven actors, each a process.
    auto tree = program(argv(treePath, "--depth=2", "--width=2", "--fail=none", "--hold"));
    co_await tree->waitForCount("leaf, holding", 4);

    CliTest::Actors actors;
    auto json = co_await ps(actors);
    EXPECT_EQ(actors.size(), 7u) << tree->outputSoFar();
    for (auto& [name, parent] : treeParents()) {
      auto it = actors.find(name);
      if (it == actors.end()) {
        ADD_FAILURE() << "ps does not list " << name;
        continue;
      }
      auto actor = it->second;
      if (parent == "null") {
        EXPECT_TRUE(get(actor, "parent").isNull()) << name;
        EXPECT_EQ(num(get(actor, "depth")), 0);
      } else {
        EXPECT_EQ(str(get(actor, "parent")), str(get(actors.at(parent), "uuid"))) << name;
        EXPECT_EQ(str(get(actor, "parentName")), parent) << name;
      }
      EXPECT_TRUE(get(actor, "error").isNull()) << name;
      EXPECT_GT(num(get(actor, "residentBytes")), 0) << name;
      EXPECT_GE(num(get(actor, "uptimeSeconds")), 0) << name;
      EXPECT_EQ(str(get(actor, "host")), thisHost()) << name;  // where each one runs
    }
    // Each node's pid is the one it printed ("[n0.1] pid 1234: leaf, holding").
    EXPECT_NE(tree->outputSoFar().find(
                  "[n0.1] pid " + std::to_string(int(num(get(actors.at("n0.1"), "pid")))) + ":"),
              std::string::npos)
        << tree->outputSoFar();
    // A leaf holds its parent's grow call open: one task in flight; n0 has its parent's and one
    // per child.
    EXPECT_EQ(num(get(actors.at("n1.1"), "tasksInFlight")), 1);
    EXPECT_EQ(num(get(actors.at("n0"), "tasksInFlight")), 3);

    // A method that raises is a remote error: exit 1, the error (with its origin) on stderr.
    auto raised = co_await harrow(
        argv("call", "n1.1", "Node.grow", R"({"depth": 0, "width": 0, "failAt": ["leaves"]})"));
    EXPECT_EQ(raised.exitCode(), 1) << raised.describe();
    EXPECT_NE(raised.err.find("tree.NodeFailed from actor 'n1.1'"), std::string::npos)
        << raised.describe();
    EXPECT_EQ(raised.out, "");

    // The human form: children indented under their parent, in the order of the tree.
    auto human = co_await harrow(argv("ps"));
    EXPECT_EQ(human.exitCode(), 0) << human.describe();
    size_t root = human.out.find("\ntree ");
    size_t n0 = human.out.find("\n  n0 ");
    size_t n00 = human.out.find("\n    n0.0 ");
    size_t n1 = human.out.find("\n  n1 ");
    EXPECT_TRUE(root != std::string::npos && n0 != std::string::npos &&
                n00 != std::string::npos && n1 != std::string::npos && root < n0 && n0 < n00 &&
                n00 < n1)
        << human.out;

    EXPECT_TRUE(exitedWith(co_await stop(*tree), 128 + SIGINT)) << tree->outputSoFar();
  });
}

TEST_F(CliTest, PsListsADaemonsTree) {
  run([&]() -> Co<void> {
    auto daemon = program(argv(daemonPath));
    auto ready = co_await daemon->waitForLine("ready ");
    CliTest::Actors actors;
    auto json = co_await ps(actors);
    EXPECT_EQ(actors.size(), 2u);
    auto root = actors.find("greeter_daemon");
    auto greeter = actors.find("greeter");
    if (root == actors.end() || greeter == actors.end()) {
      ADD_FAILURE() << "ps lists neither the daemon nor its greeter";
    } else {
      EXPECT_TRUE(get(root->second, "parent").isNull());
      EXPECT_EQ(str(get(greeter->second, "parent")), str(get(root->second, "uuid")));
      EXPECT_EQ(std::to_string(int(num(get(greeter->second, "pid")))),
                field(ready, "greeter-pid"));
    }
    daemon->signal(SIGTERM);
    EXPECT_TRUE(exitedWith(co_await daemon->finish(), 128 + SIGTERM)) << daemon->outputSoFar();
  });
}

TEST_F(CliTest, CallsWithJsonInAndOut) {
  run([&]() -> Co<void> {
    auto tree = co_await counter();  // its demo leaves counter-1's total at 14

    auto added = co_await harrow(argv("call", "counter-1", "Counter.add", R"({"n": 7})"));
    EXPECT_EQ(added.exitCode(), 0) << added.describe();
    EXPECT_EQ(added.out, "{\"total\":\"21\"}\n");  // capnp's JSON: 64-bit integers as strings

    auto stream = co_await harrow(argv("call", "counter-1", "Counter.count", R"({"upTo": 3})"));
    EXPECT_EQ(stream.exitCode(), 0) << stream.describe();
    EXPECT_EQ(stream.out, "{\"value\":\"0\"}\n{\"value\":\"1\"}\n{\"value\":\"2\"}\n");

    // A context: the started value, one item back per line of stdin, the result.
    Command session(
        io, harrowArgs(argv("call", "counter-1", "Counter.session", R"({"label": "sh"})")),
        /*withStdin=*/true);
    co_await session.waitForLine("\"started\"");
    session.writeStdin("{\"by\": 2}\n");
    co_await session.waitForLine("\"23\"");
    session.writeStdin("{\"by\": \"5\"}\n");  // 64-bit integers as strings read back too
    session.closeStdin();
    auto done = co_await session.finish();
    EXPECT_EQ(done.exitCode(), 0) << done.describe();
    EXPECT_EQ(done.out,
              "{\"started\": {\"start\":\"21\"}}\n"
              "{\"item\": {\"value\":\"23\"}}\n"
              "{\"item\": {\"value\":\"28\"}}\n"
              "{\"result\": {\"total\":\"28\"}}\n");

    EXPECT_TRUE(exitedWith(co_await stop(*tree), 128 + SIGINT)) << tree->outputSoFar();
  });
}

TEST_F(CliTest, StacksShowsAnOpenStreamAndContext) {
  run([&]() -> Co<void> {
    auto tree = co_await counter();

    // A stream far longer than the pipe: once this test stops reading, the command blocks on
    // its stdout, stops granting credit, and the stream stays open in counter-1.
    Command stream(
        io, harrowArgs(argv("call", "counter-1", "Counter.count", R"({"upTo": 4000000000})")));
    co_await stream.waitForLine("{\"value\":\"0\"}");
    // A context held open by its stdin.
    Command context(
        io, harrowArgs(argv("call", "counter-1", "Counter.session", R"({"label": "x"})")),
        /*withStdin=*/true);
    co_await context.waitForLine("\"started\"");

    auto stacks = co_await harrow(argv("stacks", "counter-1", "--json"));
    EXPECT_EQ(stacks.exitCode(), 0) << stacks.describe();
    Json json(stacks.out);
    auto actors = get(json.root(), "actors").getArray();
    EXPECT_EQ(actors.size(), 1u) << stacks.out;
    bool streamSeen = false, contextSeen = false;
    if (actors.size() == 1) {
      for (auto task : get(actors[0], "tasks").getArray()) {
        std::string method = str(get(task, "method"));
        EXPECT_EQ(str(get(task, "direction")), "in") << stacks.out;
        // "open", or "open, no credit (...)" once the stream has filled the command's stdout.
        EXPECT_EQ(str(get(task, "state")).rfind("open", 0), 0u) << stacks.out;
        EXPECT_EQ(str(get(get(task, "peer"), "role")), "peer") << stacks.out;
        EXPECT_EQ(str(get(get(task, "peer"), "name")), "harrow") << stacks.out;
        EXPECT_GE(num(get(task, "ageSeconds")), 0) << stacks.out;
        if (method == "Counter.count") {
          streamSeen = true;
          EXPECT_EQ(str(get(task, "kind")), "stream");
        } else if (method == "Counter.session") {
          contextSeen = true;
          EXPECT_EQ(str(get(task, "kind")), "context");
        } else {
          ADD_FAILURE() << "an unexpected task: " << method << "\n" << stacks.out;
        }
      }
    }
    EXPECT_TRUE(streamSeen && contextSeen) << stacks.out;

    // The root's side: it has no task open (its own calls to counter-1 are done), and the
    // human form names each task of counter-1.
    auto all = co_await harrow(argv("stacks", "--all"));
    EXPECT_EQ(all.exitCode(), 0) << all.describe();
    EXPECT_NE(all.out.find("counter-1 ("), std::string::npos) << all.out;
    EXPECT_NE(all.out.find("stream  Counter.count#"), std::string::npos) << all.out;
    EXPECT_NE(all.out.find("context Counter.session#"), std::string::npos) << all.out;

    // The context ends when its stdin does; the stream when its command is interrupted.
    context.closeStdin();
    auto contextDone = co_await context.finish();
    EXPECT_EQ(contextDone.exitCode(), 0) << contextDone.describe();
    EXPECT_NE(contextDone.out.find("{\"result\": {\"total\":\"14\"}}"), std::string::npos)
        << contextDone.out;
    stream.signal(SIGTERM);
    auto streamDone = co_await stream.finish();
    EXPECT_TRUE(WIFSIGNALED(streamDone.status)) << streamDone.describe();

    EXPECT_TRUE(exitedWith(co_await stop(*tree), 128 + SIGINT)) << tree->outputSoFar();
  });
}

TEST_F(CliTest, CancelEndsAnActorAndItsParentCarriesOn) {
  run([&]() -> Co<void> {
    auto tree = co_await counter();
    CliTest::Actors actors;
    auto before = co_await ps(actors);
    EXPECT_EQ(actors.count("counter-1"), 1u);

    auto cancelled = co_await harrow(argv("cancel", "counter-1", "--json"));
    EXPECT_EQ(cancelled.exitCode(), 0) << cancelled.describe();
    Json result(cancelled.out);
    EXPECT_EQ(str(get(result.root(), "outcome")), "exited") << cancelled.out;
    EXPECT_EQ(str(get(result.root(), "name")), "counter-1") << cancelled.out;

    // It deregistered on its way out; the root is still there and serving.
    Actors left;
    auto after = co_await ps(left);
    EXPECT_EQ(left.size(), 1u) << cancelled.out;
    EXPECT_EQ(left.count("counter"), 1u);
    auto again = co_await harrow(argv("call", "counter-1", "Counter.add", R"({"n": 1})"));
    EXPECT_EQ(again.exitCode(), 3) << again.describe();

    // A daemon child leaving after cancel-actor is no error of its parent's: the root ends
    // as interrupted, not failed, and nothing is left (counter-1 was reaped).
    EXPECT_TRUE(exitedWith(co_await stop(*tree), 128 + SIGINT)) << tree->outputSoFar();
    EXPECT_EQ(tree->outputSoFar().find("ActorDied"), std::string::npos) << tree->outputSoFar();
  });
}

// Its process verified by SO_PEERCRED (Unix sockets) or by the socket it holds (loopback TCP).
void cancelKillsAnActorWhoseTeardownOutlastsTheGracePeriod(CliTest& test, std::string transport) {
  test.run([&]() -> Co<void> {
    // root "tree" -> n0 -> n0.0. With n0.0 stopped, n0's teardown waits out its own grace period
    // (0.75 s) for it: longer than the 0.05 s harrow gives n0 here.
    auto tree = test.program(
        argv(treePath, "--depth=2", "--width=1", "--fail=none", "--hold"), transport);
    co_await tree->waitForCount("leaf, holding", 1);
    CliTest::Actors actors;
    auto json = co_await test.ps(actors);
    pid_t leaf = num(get(actors.at("n0.0"), "pid"));
    KJ_SYSCALL(kill(leaf, SIGSTOP));

    auto cancelled = co_await test.harrow(argv("cancel", "n0", "--grace=0.05", "--json"));
    EXPECT_EQ(cancelled.exitCode(), 0) << cancelled.describe();
    Json result(cancelled.out);
    EXPECT_EQ(str(get(result.root(), "outcome")), "killed") << cancelled.out;

    // Its parent (the root) sees it die: ActorDied, and the whole tree comes down (n0.0 with
    // its parent: PR_SET_PDEATHSIG).
    int status = co_await tree->finish();
    EXPECT_TRUE(exitedWith(status, 1)) << tree->outputSoFar();
    EXPECT_NE(tree->outputSoFar().find("ActorDied: actor 'n0'"), std::string::npos)
        << tree->outputSoFar();
  });
}

TEST_F(CliTest, CancelKillsAnActorWhoseTeardownOutlastsTheGracePeriod) {
  cancelKillsAnActorWhoseTeardownOutlastsTheGracePeriod(*this, "unix-abstract");
}

TEST_F(CliTest, CancelKillsAnActorOnLoopbackTcpWhoseTeardownOutlastsTheGracePeriod) {
  cancelKillsAnActorWhoseTeardownOutlastsTheGracePeriod(*this, "tcp");
}

// An actor that registers, and answers Introspect.info, with the pid of a process that is no
// actor at all (tests/cli/liar.c++): harrow cancel asks it to leave, and never signals that pid,
// over a Unix socket (SO_PEERCRED names the liar) or loopback TCP (the victim holds no socket of
// the connection).
void cancelNeverKillsAPidItWasOnlyTold(CliTest& test, std::string transport) {
  test.run([&]() -> Co<void> {
    auto host = co_await test.counter();  // hosts the registry; outlives the liar
    Program victim(test.io, {"/bin/sleep", "600"});
    pid_t pid = victim.getPid();
    auto liar = test.program(argv(liarPath), transport,
                             {"HARROW_TEST_LIE_PID=" + std::to_string(pid)});
    co_await liar->waitForLine("serving: liar");
    CliTest::Actors actors;
    auto json = co_await test.ps(actors);
    test.known.erase(pid);  // ps listed the victim's pid for the liar; the victim is ours
    EXPECT_EQ(num(get(actors.at("liar"), "pid")), pid) << "the liar does not lie";

    auto cancelled = co_await test.harrow(argv("cancel", "liar", "--grace=5", "--json"));
    EXPECT_EQ(cancelled.exitCode(), 0) << cancelled.describe();
    Json result(cancelled.out);
    EXPECT_EQ(str(get(result.root(), "outcome")), "left the registry") << cancelled.out;
    KJ_IF_MAYBE(stat, readStat(pid)) {
      EXPECT_NE(stat->state, 'Z') << "the victim was killed";
    } else {
      ADD_FAILURE() << "the victim is gone";
    }
    victim.signal(SIGTERM);
    co_await victim.finish();
    co_await liar->finish();  // it was cancelled: it exits by itself
    EXPECT_TRUE(exitedWith(co_await test.stop(*host), 128 + SIGINT)) << host->outputSoFar();
  });
}

TEST_F(CliTest, CancelNeverKillsAPidItWasOnlyToldOverAUnixSocket) {
  cancelNeverKillsAPidItWasOnlyTold(*this, "unix-abstract");
}

TEST_F(CliTest, CancelNeverKillsAPidItWasOnlyToldOverLoopbackTcp) {
  cancelNeverKillsAPidItWasOnlyTold(*this, "tcp");
}

// An honest actor of another user (its tree runs as `nobody`, through setpriv, with a copy of the
// cookie and a TCP registry): root may signal any process, but harrow cancel signals only this
// user's. Asked to leave, the actor's teardown outlasts the grace period (a stopped leaf below
// it): harrow says it could not verify the process (its uid) and does not kill it.
TEST_F(CliTest, CancelNeverKillsAProcessOfAnotherUser) {
  if (geteuid() != 0 || getpwnam("nobody") == nullptr || access("/usr/bin/setpriv", X_OK) != 0) {
    GTEST_SKIP() << "needs root, user nobody and setpriv";
  }
  struct passwd* nobody = getpwnam("nobody");
  // What `nobody` may use: a copy of the tree program, a copy of the cookie it owns, a runtime
  // directory of its own.
  char buffer[] = "/tmp/harrow-cli-other-user-XXXXXX";
  ASSERT_NE(mkdtemp(buffer), nullptr);
  std::string dir = buffer;
  KJ_DEFER((void)!system(("rm -rf '" + dir + "'").c_str()));
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  ASSERT_EQ(system(("cp '" + std::string(treePath) + "' '" + dir + "/tree'").c_str()), 0);
  ASSERT_EQ(system(("cp '" + cookie + "' '" + dir + "/cookie'").c_str()), 0);
  ASSERT_EQ(chown((dir + "/cookie").c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  ASSERT_EQ(mkdir((dir + "/run").c_str(), 0700), 0);
  ASSERT_EQ(chown((dir + "/run").c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  int port = 0;
  {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in address = {};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    socklen_t size = sizeof(address);
    ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size), 0);
    port = ntohs(address.sin_port);
    close(fd);
  }
  registry = "tcp:127.0.0.1:" + std::to_string(port);
  run([&]() -> Co<void> {
    auto tree = kj::heap<Program>(io, std::vector<std::string>{
        "/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
        dir + "/tree", "--depth=2", "--width=1", "--fail=none", "--hold",
        "--harrow-registry=" + registry, "--harrow-transport=tcp",
        "--harrow-cookie=" + dir + "/cookie"},
        std::vector<std::string>{"XDG_RUNTIME_DIR=" + dir + "/run"});
    known.insert(tree->getPid());
    co_await tree->waitForCount("leaf, holding", 1);
    Actors actors;
    auto json = co_await ps(actors);
    pid_t n0 = num(get(actors.at("n0"), "pid"));
    pid_t leaf = num(get(actors.at("n0.0"), "pid"));
    KJ_SYSCALL(kill(leaf, SIGSTOP));

    auto cancelled = co_await harrow(argv("cancel", "n0", "--grace=0.05"));
    EXPECT_EQ(cancelled.exitCode(), 1) << cancelled.describe();
    EXPECT_NE(cancelled.err.find("runs as uid " + std::to_string(nobody->pw_uid)),
              std::string::npos) << cancelled.describe();
    EXPECT_NE(cancelled.err.find("not killed"), std::string::npos) << cancelled.describe();
    KJ_IF_MAYBE(stat, readStat(n0)) {
      EXPECT_NE(stat->state, 'Z') << "n0 was killed";
    }
    // n0 leaves by itself once its own grace period for the stopped leaf is over.
    KJ_SYSCALL(kill(leaf, SIGCONT));
    EXPECT_TRUE(harrow::testing::waitForExit(n0, 10000)) << "n0 did not leave";
    tree->signal(SIGINT);
    co_await tree->finish();
  });
}

TEST_F(CliTest, AWrongCookieIsRefused) {
  run([&]() -> Co<void> {
    auto tree = co_await counter();
    std::string other = newCookie("other-cookie");
    auto refused = co_await harrow(argv("--cookie=" + other, "ps"));
    EXPECT_EQ(refused.exitCode(), 4) << refused.describe();
    EXPECT_NE(refused.err.find("harrow.AuthenticationFailed"), std::string::npos)
        << refused.describe();
    EXPECT_EQ(refused.out, "");

    auto missing = co_await harrow(argv("--cookie=" + other + ".missing", "ps"));
    EXPECT_EQ(missing.exitCode(), 3) << missing.describe();
    EXPECT_NE(missing.err.find("no cookie at"), std::string::npos) << missing.describe();

    EXPECT_TRUE(exitedWith(co_await stop(*tree), 128 + SIGINT)) << tree->outputSoFar();
  });
}

struct BadCommand {
  std::vector<std::string> args;
  int exit;
  std::string says;
};

std::vector<BadCommand> badCommands() {
  return {
      {argv("call", "nobody", "Counter.add", "{}"), 3, "no actor named 'nobody'"},
      {argv("stacks", "nobody"), 3, "no actor named 'nobody'"},
      {argv("cancel", "nobody"), 3, "no actor named 'nobody'"},
      {argv("call", "counter-1", "Counter.nope", "{}"), 3, "serves no Counter.nope"},
      {argv("call", "counter-1", "Counter.add", "{\"n\": "), 2, "is not a Counter.add$Params"},
      {argv("call", "counter-1", "add"), 2, "is not Interface.method"},
      // capnp's codec alone skips a member it does not know: add({"m": 1}) would run add(0).
      {argv("call", "counter-1", "Counter.add", R"({"m": 1})"), 2,
       "'m' is not a field of Counter.add$Params (its fields: n)"},
      {argv("call", "counter-1", "Counter.add", R"({"n": true})"), 2,
       "'n' is of type Int64, not true"},
      {argv("call", "counter-1", "Counter.add", R"({"n": 1.5})"), 2,
       "'n' is of type Int64, not 1.5"},
      {argv("call", "counter-1", "Counter.session", R"({"label": 5})"), 2,
       "'label' is of type Text, not 5"},
      {argv("call", "counter-1", "Counter.add", "[7]"), 2,
       "the document is an array, not a JSON object"},
      {argv("frob"), 2, "unknown command 'frob'"},
      {argv("ps", "--bogus"), 2, "unknown option '--bogus'"},
      {argv("ps", "--registry=" + std::string(testing::uniqueAbstractAddress("nobody").cStr())),
       3, "no registry answers at"},
  };
}

TEST_F(CliTest, ExitStatusesSayWhatWentWrong) {
  run([&]() -> Co<void> {
    auto tree = co_await counter();
    for (auto& c : badCommands()) {
      auto ran = co_await harrow(c.args);
      EXPECT_EQ(ran.exitCode(), c.exit) << c.args[0] << " " << ran.describe();
      EXPECT_NE(ran.err.find(c.says), std::string::npos) << ran.describe();
    }
    auto help = co_await harrow(argv("--help"));
    EXPECT_EQ(help.exitCode(), 0);
    EXPECT_NE(help.out.find("Exit status"), std::string::npos) << help.out;
    auto callHelp = co_await harrow(argv("call", "--help"));
    EXPECT_NE(callHelp.out.find("usage: harrow call"), std::string::npos) << callHelp.out;

    EXPECT_TRUE(exitedWith(co_await stop(*tree), 128 + SIGINT)) << tree->outputSoFar();
  });
}

TEST_F(CliTest, VersionNamesTheReleaseAndTheProtocolItsHandshakesCheck) {
  run([&]() -> Co<void> {
    auto version = co_await harrow(argv("--version"));
    EXPECT_EQ(version.exitCode(), 0) << version.describe();
    EXPECT_EQ(version.out, std::string(kj::str("harrow ", VERSION, " (wire protocol ",
                                               wire::PROTOCOL_VERSION, ")\n").cStr()));
    co_return;
  });
}

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  kj::UnixEventPort::captureChildExit();
  harrow::testing::installWatchdog("cli_test");
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 6) {
    fprintf(stderr, "usage: cli_test HARROW TREE COUNTER DAEMON LIAR\n");
    return 2;
  }
  harrow::harrowPath = argv[1];
  harrow::treePath = argv[2];
  harrow::counterPath = argv[3];
  harrow::daemonPath = argv[4];
  harrow::liarPath = argv[5];
  return RUN_ALL_TESTS();
}
