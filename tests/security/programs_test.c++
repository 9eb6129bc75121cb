// Authentication between independent programs (examples/multi_program's daemon and client):
//  - two programs given the same cookie file meet (the first one creates it);
//  - a program with another cookie is refused with an error that says so, and the daemon carries
//    on; strangers that skip the proof, send cancelActor or a wrong MAC are refused the same way,
//    and the daemon logs at most one warning for all of them;
//  - a cookie file others may read stops the root with an error naming the file;
//  - a runtime directory another uid (nobody, through setpriv) created first stops the root at
//    once with harrow.UnsafeFile naming the directory, its owner and what to do;
//  - with no registry given, daemon and client meet in the default registry, a Unix socket in the
//    user's runtime directory, while a squatter of another uid (nobody, through setpriv) on the
//    old default, tcp:127.0.0.1:1616, gets no connection at all;
// and no process is left behind.
//
// Usage (from BUILD.bazel): programs_test DAEMON CLIENT SQUATTER

#include <harrow/actor/actor.h>
#include <harrow/co/cancel_scope.h>
#include "tests/security/daemon_test.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace harrow {
namespace {

using testing::Program;

const char* daemonPath = nullptr;
const char* clientPath = nullptr;
const char* squatterPath = nullptr;

constexpr unsigned WATCHDOG_SECONDS = 120;

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

int countLines(const std::string& text, const std::string& what) {
  int n = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (text.substr(start, end - start).find(what) != std::string::npos) ++n;
    start = end + 1;
  }
  return n;
}

class ProgramsTest : public testing::DaemonTest {
protected:
  ProgramsTest() : DaemonTest("programs") {}
  ~ProgramsTest() noexcept override {}

  void SetUp() override { alarm(WATCHDOG_SECONDS); }

  void TearDown() override {
    alarm(0);
    DaemonTest::TearDown();
  }

  kj::Own<Program> daemon(const std::string& cookie) {
    return kj::heap<Program>(io, std::vector<std::string>{
        daemonPath, "--harrow-registry=tcp:127.0.0.1:0", "--harrow-cookie=" + cookie});
  }

  // The client gets its cookie through the environment (HARROW_COOKIE), the daemon by flag.
  kj::Own<Program> client(const std::string& registry, const std::string& cookie) {
    return kj::heap<Program>(io,
        std::vector<std::string>{clientPath, "--harrow-registry=" + registry},
        std::vector<std::string>{"HARROW_COOKIE=" + cookie});
  }

  Co<void> expectGreeting(const std::string& registry, const std::string& cookie) {
    auto c = client(registry, cookie);
    known.insert(c->getPid());
    auto line = co_await c->waitForLine("greeter (pid ");
    EXPECT_TRUE(has(line, "says: hello, world")) << line;
    int status = co_await c->finish();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << c->outputSoFar();
  }

  Co<void> stop(Program& program) {
    kill(program.getPid(), SIGTERM);
    int status = co_await program.finish();
    EXPECT_TRUE(WIFEXITED(status)) << status;
  }
};

// A stranger's attempt at the daemon's registry, speaking wire messages by hand: its hello, then
// `proof` (if any), then cancelActor. It must get an error and EOF, and no proof.
Co<void> knock(kj::Network& network, kj::StringPtr address, kj::Maybe<const TreeSecret&> proofKey) {
  auto channel = co_await connect(network, address);
  capnp::MallocMessageBuilder hello;
  auto root = hello.initRoot<wire::Message>();
  ActorIdentity::random("stranger").toWire(root.initHello().initId());
  root.getHello().setProtocolVersion(wire::PROTOCOL_VERSION);
  setHelloNonce(root.getHello());
  channel->send(hello);
  auto theirs = co_await channel->receive();
  KJ_ASSERT(theirs != nullptr);
  KJ_IF_MAYBE(key, proofKey) {
    auto mac = handshakeProof(*key, HandshakeRole::OPENER, root.getHello().asReader(),
                              KJ_ASSERT_NONNULL(theirs)->getRoot<wire::Message>().getHello());
    capnp::MallocMessageBuilder proof;
    proof.initRoot<wire::Message>().setAuthenticate(capnp::Data::Reader(mac.begin(), mac.size()));
    channel->send(proof);
  }
  capnp::MallocMessageBuilder cancel;
  cancel.initRoot<wire::Message>().setCancelActor();
  channel->send(cancel);
  auto answer = co_await channel->receive();
  KJ_ASSERT(answer != nullptr);
  EXPECT_TRUE(KJ_ASSERT_NONNULL(answer)->getRoot<wire::Message>().isError());
  kj::Maybe<kj::Own<capnp::MessageReader>> after;
  try {
    after = co_await channel->receive();
  } catch (...) {
    // A reset is a close too.
  }
  EXPECT_TRUE(after == nullptr);
}

TEST_F(ProgramsTest, ProgramsSharingACookieMeetAndOthersAreRefused) {
  std::string cookie = dir + "/cookie";
  std::string other = dir + "/other";
  run([&]() -> Co<void> {
    auto d = daemon(cookie);  // creates the cookie file
    std::string registry = co_await ready(*d);
    struct stat st;
    EXPECT_EQ(stat(cookie.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    co_await expectGreeting(registry, cookie);

    // Another cookie: the client's probe of the registry fails authentication.
    {
      auto c = client(registry, other);
      known.insert(c->getPid());
      int status = co_await c->finish();
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << c->outputSoFar();
      EXPECT_TRUE(has(c->outputSoFar(), "belongs to another tree")) << c->outputSoFar();
      EXPECT_TRUE(has(c->outputSoFar(), "same cookie")) << c->outputSoFar();
    }

    // Strangers: no proof, a proof with a key of their own; each then tries cancelActor.
    auto& network = io.provider->getNetwork();
    auto wrongKey = TreeSecret::random();
    for (int i = 0; i < 5; ++i) {
      co_await knock(network, registry, nullptr);
      co_await knock(network, registry, wrongKey);
    }

    // The daemon carries on: its greeter is still found and answers.
    co_await expectGreeting(registry, cookie);
    co_await stop(*d);
    // Eleven refusals, at most one warning line about them (the rest at debug level).
    EXPECT_LE(countLines(d->outputSoFar(), "warning"), 1) << d->outputSoFar();
  });
}

TEST_F(ProgramsTest, ACookieOthersMayReadStopsTheRootWithAnErrorNamingIt) {
  std::string cookie = dir + "/cookie";
  int fd = open(cookie.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "0123456789abcdef0123456789abcdef\n", 33), 33);
  close(fd);
  ASSERT_EQ(chmod(cookie.c_str(), 0644), 0);
  run([&]() -> Co<void> {
    auto d = daemon(cookie);
    known.insert(d->getPid());
    int status = co_await d->finish();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
    EXPECT_TRUE(has(d->outputSoFar(), "the cookie file " + cookie + " has mode 0644"))
        << d->outputSoFar();
    EXPECT_FALSE(has(d->outputSoFar(), "ready")) << d->outputSoFar();
  });
}

TEST_F(ProgramsTest, ARuntimeDirectoryAnotherUserCreatedFirstStopsTheRootSayingWhoAndWhatToDo) {
  if (geteuid() != 0 || getpwnam("nobody") == nullptr || access("/usr/bin/setpriv", X_OK) != 0) {
    GTEST_SKIP() << "needs root, user nobody and setpriv (to squat as another uid)";
  }
  // $XDG_RUNTIME_DIR stands in for /tmp: anyone may create names in it.
  std::string xdg = dir + "/xdg";
  ASSERT_EQ(mkdir(xdg.c_str(), 0700), 0);
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  ASSERT_EQ(chmod(xdg.c_str(), 01777), 0);
  pid_t squatter = testing::spawnProgram({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup",
                                          "--clear-groups", "/bin/mkdir", "-m", "0777",
                                          xdg + "/harrow"}, -1, -1, -1);
  int status;
  ASSERT_EQ(waitpid(squatter, &status, 0), squatter);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  run([&]() -> Co<void> {
    Program d(io, {daemonPath}, {"XDG_RUNTIME_DIR=" + xdg, "HARROW_REGISTRY=", "HARROW_COOKIE="});
    known.insert(d.getPid());
    int exit = co_await d.finish();
    EXPECT_TRUE(WIFEXITED(exit) && WEXITSTATUS(exit) == 1) << exit << d.outputSoFar();
    auto output = d.outputSoFar();
    EXPECT_TRUE(has(output, "harrow.UnsafeFile: harrow's runtime directory " + xdg + "/harrow"))
        << output;
    EXPECT_TRUE(has(output, " (nobody), not to this user")) << output;
    EXPECT_TRUE(has(output, "XDG_RUNTIME_DIR")) << output;
    EXPECT_FALSE(has(output, "ready")) << output;
  });
  // Nothing of the root's went into the squatted directory.
  EXPECT_NE(access((xdg + "/harrow/cookie").c_str(), F_OK), 0);
}

TEST_F(ProgramsTest, TheDefaultRegistryIsPrivateAndASquatterOnTheOldPortGetsNothing) {
  if (geteuid() != 0 || getpwnam("nobody") == nullptr || access("/usr/bin/setpriv", X_OK) != 0) {
    GTEST_SKIP() << "needs root, user nobody and setpriv (to run the squatter as another uid)";
  }
  // The one machine-wide thing a test binds (tests/names.h): other copies of this test wait.
  int lock = open("/tmp/harrow-test-port-1616.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(lock, 0);
  KJ_DEFER(close(lock));
  ASSERT_EQ(flock(lock, LOCK_EX), 0);
  // The squatter runs from a copy `nobody` may execute (Bazel's output tree is root's only).
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  std::string squatter = dir + "/squatter";
  std::string copy = "cp '" + std::string(squatterPath) + "' '" + squatter + "'";
  ASSERT_EQ(system(copy.c_str()), 0);
  ASSERT_EQ(chmod(squatter.c_str(), 0755), 0);
  // This test's own runtime directory (and so its own default cookie and registry).
  std::string xdg = dir + "/xdg";
  ASSERT_EQ(mkdir(xdg.c_str(), 0700), 0);
  std::vector<std::string> defaults = {"XDG_RUNTIME_DIR=" + xdg, "HARROW_REGISTRY=",
                                       "HARROW_COOKIE="};
  bool portTaken = false;
  run([&]() -> Co<void> {
    Program squat(io, {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                       squatter, "1616"});
    known.insert(squat.getPid());
    auto listening = co_await squat.waitForLine("");
    if (listening != "listening on 1616") {
      portTaken = true;  // another program of the machine holds it
      co_await squat.finish();
      co_return;
    }

    Program d(io, {daemonPath}, defaults);
    std::string registry = co_await ready(d);
    EXPECT_EQ(registry, "unix:" + xdg + "/harrow/registry.sock");
    EXPECT_TRUE(has(d.outputSoFar(), "hosted=yes")) << d.outputSoFar();
    {
      Program c(io, {clientPath}, defaults);
      known.insert(c.getPid());
      auto line = co_await c.waitForLine("greeter (pid ");
      EXPECT_TRUE(has(line, "says: hello, world")) << line;
      int status = co_await c.finish();
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << c.outputSoFar();
    }
    co_await stop(d);

    squat.signal(SIGTERM);
    co_await squat.finish();
    EXPECT_FALSE(has(squat.outputSoFar(), "connection")) << squat.outputSoFar();
  });
  if (portTaken) GTEST_SKIP() << "tcp:127.0.0.1:1616 is taken by another program: not tested";
}

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  return harrow::testing::daemonTestMain(
      argc, argv, "programs_test", "DAEMON CLIENT SQUATTER",
      {&harrow::daemonPath, &harrow::clientPath, &harrow::squatterPath});
}
