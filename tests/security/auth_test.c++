// Authenticated peers (docs/PROTOCOL.md, "authenticate" and "Threat model"): an actor serving on a
// real listener, and strangers speaking wire messages by hand. A stranger without the tree's secret
// cannot finish the handshake, cannot slip a cancelActor past it, cannot replay or forge a proof,
// learns no proof of the actor's, and fills no log; an actor that knows the secret is served; an
// acceptor that cannot prove the secret is refused by the opener; a process of another uid is
// closed before the handshake on a Unix socket; the cookie file is created safely and refused when
// others may read it.

#include <harrow/actor/actor.h>
#include <harrow/actor/cookie.h>
#include <harrow/co/cancel_scope.h>
#include <harrow/co/nursery.h>
#include <harrow/typed/typed.h>
#include "tests/engine/probe.capnp.h"

#include "tests/names.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <string.h>
#include <unistd.h>

#include <iostream>
#include <string>

namespace harrow {
namespace {

constexpr uint64_t PROBE_ID = 0x5679;
constexpr kj::Duration GUARD = 30 * kj::SECONDS;

// Echo (a call): what an authenticated peer uses to show the actor still serves.
class EchoServer final : public ActorServer {
public:
  uint64_t interfaceId() const override { return PROBE_ID; }
  kj::StringPtr interfaceName() const override { return "Echo"; }
  kj::Maybe<MethodKind> methodKind(uint16_t id) const override {
    if (id == 0) return MethodKind::CALL;
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t) const override { return "echo"; }
  Co<void> dispatch(uint16_t, IncomingTask& task) override {
    ServerCall<probe::Words, probe::Words> call(task);
    call.results().setText(call.params().getText());
    co_return;
  }
};

Co<kj::String> echo(Peer& peer, kj::StringPtr text) {
  auto start = peer.newStart(PROBE_ID, 0);
  start->init<probe::Words>().setText(text);
  auto result = co_await peer.call(kj::mv(start));
  co_return kj::str(result->get<probe::Words>().getText());
}

// Counts log lines at WARNING and above while it is installed (and passes every line on).
class LogCounter final : public kj::ExceptionCallback {
public:
  void logMessage(kj::LogSeverity severity, const char* file, int line, int contextDepth,
                  kj::String&& text) override {
    if (severity >= kj::LogSeverity::WARNING) {
      ++warnings;
      lines.append(text.cStr());
    }
    next.logMessage(severity, file, line, contextDepth, kj::mv(text));
  }
  int warnings = 0;
  std::string lines;
};

kj::Own<capnp::MallocMessageBuilder> newMessage(wire::Message::Builder& root) {
  auto builder = kj::heap<capnp::MallocMessageBuilder>();
  root = builder->initRoot<wire::Message>();
  return builder;
}

// The next message; the channel must not end before it.
Co<kj::Own<capnp::MessageReader>> receiveOne(Channel& channel) {
  auto received = co_await channel.receive();
  KJ_REQUIRE(received != nullptr, "the channel ended");
  co_return kj::mv(KJ_ASSERT_NONNULL(received));
}

bool contains(kj::StringPtr text, kj::StringPtr what) {
  return std::string(text.cStr()).find(what.cStr()) != std::string::npos;
}

// A stranger on a raw channel: it speaks the handshake by hand, right or wrong.
class Stranger {
public:
  explicit Stranger(kj::Own<Channel> channel) : channel(kj::mv(channel)) {}

  // Sends a hello; returns the acceptor's.
  Co<void> hello(kj::StringPtr name = "stranger") {
    wire::Message::Builder root = nullptr;
    ours = newMessage(root);
    auto hello = root.initHello();
    ActorIdentity::random(name).toWire(hello.initId());
    hello.setPid(getpid());
    hello.setProtocolVersion(wire::PROTOCOL_VERSION);
    setHelloNonce(hello);
    channel->send(*ours);
    theirs = co_await receiveOne(*channel);
    KJ_ASSERT(theirs->getRoot<wire::Message>().isHello());
  }

  wire::Hello::Reader openerHello() { return ours->getRoot<wire::Message>().getHello(); }
  wire::Hello::Reader acceptorHello() { return theirs->getRoot<wire::Message>().getHello(); }

  void sendProof(kj::ArrayPtr<const kj::byte> proof) {
    wire::Message::Builder root = nullptr;
    auto m = newMessage(root);
    root.setAuthenticate(capnp::Data::Reader(proof.begin(), proof.size()));
    channel->send(*m);
  }

  void sendCancelActor() {
    wire::Message::Builder root = nullptr;
    auto m = newMessage(root);
    root.setCancelActor();
    channel->send(*m);
  }

  // What the actor answers before it closes: exactly one error (and no proof of its own), then
  // EOF. Returns the error's message.
  Co<kj::String> expectRefusal() {
    auto reader = co_await receiveOne(*channel);
    auto m = reader->getRoot<wire::Message>();
    KJ_ASSERT(m.isError(), "the actor answered something else than an error",
              static_cast<int>(m.which()));
    EXPECT_EQ(m.getError().getKind(), wire::ErrorKind::PROTOCOL_VIOLATION);
    EXPECT_EQ(m.getError().getRemoteTrace(), ""_kj) << "a stranger gets no stack trace";
    auto text = kj::str(m.getError().getType(), ": ", m.getError().getMessage());
    kj::Maybe<kj::Own<capnp::MessageReader>> after;
    kj::Maybe<kj::Exception> failure;
    try {
      after = co_await channel->receive();
    } catch (...) {
      failure = currentException();  // a reset is a close too
    }
    EXPECT_TRUE(after == nullptr) << "the actor sent more after refusing";
    co_return text;
  }

  kj::Own<Channel> channel;
  kj::Own<capnp::MallocMessageBuilder> ours;
  kj::Own<capnp::MessageReader> theirs;
};

class AuthTest : public ::testing::Test {
protected:
  ~AuthTest() noexcept override {}

  kj::AsyncIoContext io = kj::setupAsyncIo();
  int warnings = 0;  // log lines at WARNING and above while run() ran
  std::string warningLines;
  Actor victim{io, ActorIdentity::random("victim")};
  // Another actor of this process: it shares the victim's (process-wide) secret.
  Actor friendly{io, ActorIdentity::random("friend")};

  AuthTest() {
    victim.addServer(kj::heap<EchoServer>());
    ChannelServerOptions options;
    options.bindAddresses.add(testing::uniqueAbstractAddress("auth"));
    options.bindAddresses.add(kj::str("tcp:127.0.0.1:0"));
    options.handshakeTimeout = 5 * kj::SECONDS;
    victim.setChannelServer(kj::mv(options));
    friendly.setChannelServer({});
  }

  kj::Network& network() { return io.provider->getNetwork(); }
  kj::StringPtr unixAddress() { return victim.addresses()[0]; }
  kj::StringPtr tcpAddress() { return victim.addresses()[1]; }

  Co<Stranger> stranger(kj::StringPtr address) {
    co_return Stranger(co_await connect(network(), address));
  }

  // The victim serves while `body` runs, with `friendly` serving too (it connects out).
  void run(kj::Function<Co<void>()> body) {
    LogCounter log;
    KJ_DEFER(warnings = log.warnings; warningLines = log.lines);
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                  victim.serve([&]() -> Co<void> {
                    co_await friendly.serve([&]() {
                      return failAfter(victim.timer(), GUARD, kj::mv(body));
                    });
                  }).wait(io.waitScope);
                })) {
      ADD_FAILURE() << kj::str(*e).cStr();
    }
  }

  // An actor that knows the secret is still served, over both transports.
  Co<void> expectStillServing() {
    for (auto address : {unixAddress(), tcpAddress()}) {
      Peer* peer = co_await friendly.connectTo(address);
      EXPECT_EQ(co_await echo(*peer, "still here"), "still here"_kj);
      EXPECT_EQ(peer->trust(), PeerTrust::TREE_SECRET);
    }
    EXPECT_FALSE(victim.cancelCalled());
  }
};

TEST_F(AuthTest, AStrangerWithoutTheSecretCannotCompleteTheHello) {
  run([&]() -> Co<void> {
    for (int i = 0; i < 10; ++i) {
      auto s = co_await stranger(i % 2 ? unixAddress() : tcpAddress());
      co_await s.hello();
      // A proof made with a secret of its own: right form, wrong key.
      auto wrongSecret = TreeSecret::random();
      s.sendProof(handshakeProof(wrongSecret, HandshakeRole::OPENER, s.openerHello(),
                                 s.acceptorHello()));
      s.sendCancelActor();  // would cancel the victim if anything got through
      auto why = co_await s.expectRefusal();
      EXPECT_TRUE(contains(why, "harrow.AuthenticationFailed")) << why.cStr();
      EXPECT_TRUE(contains(why, "does not know this tree's secret")) << why.cStr();
    }
    co_await expectStillServing();
  });
  // Ten strangers: at most one warning (so a wrong cookie is noticed), the rest at debug level.
  EXPECT_LE(warnings, 1) << warningLines;
}

TEST_F(AuthTest, SkippingTheProofWithCancelActorIsRefusedAndTheActorKeepsRunning) {
  run([&]() -> Co<void> {
    for (auto address : {unixAddress(), tcpAddress()}) {
      auto s = co_await stranger(address);
      co_await s.hello();
      s.sendCancelActor();
      auto why = co_await s.expectRefusal();
      EXPECT_TRUE(contains(why, "sent cancelActor before authenticating")) << why.cStr();
    }
    {
      // Not even a hello first.
      auto s = co_await stranger(unixAddress());
      s.sendCancelActor();
      auto reader = co_await receiveOne(*s.channel);
      EXPECT_TRUE(reader->getRoot<wire::Message>().isHello());  // sent before reading ours
      auto why = co_await s.expectRefusal();
      EXPECT_TRUE(contains(why, "first message is not hello")) << why.cStr();
    }
    co_await expectStillServing();
  });
  EXPECT_LE(warnings, 1) << warningLines;
}

// Before the proofs a frame may have 4 KiB: a stranger whose hello fills them (a long name) is
// still told why it is refused, in an error that fits.
TEST_F(AuthTest, AStrangerWithANameOfNearly4KiBIsStillRefusedWithAReason) {
  run([&]() -> Co<void> {
    auto s = co_await stranger(tcpAddress());
    auto name = kj::heapString(3900);
    for (auto& c : name) c = 'n';
    co_await s.hello(name);
    auto proof = handshakeProof(TreeSecret::random(), HandshakeRole::OPENER, s.openerHello(),
                                s.acceptorHello());
    s.sendProof(proof);
    auto why = co_await s.expectRefusal();
    EXPECT_TRUE(contains(why, "does not know this tree's secret")) << why.cStr();
  });
}

TEST_F(AuthTest, AWrongOrReplayedMacIsRefused) {
  run([&]() -> Co<void> {
    // The right key over the wrong transcript: the acceptor's role instead of the opener's (a
    // reflected proof), a flipped bit, a truncated MAC, an empty one.
    for (int variant = 0; variant < 4; ++variant) {
      auto s = co_await stranger(unixAddress());
      co_await s.hello();
      auto proof = handshakeProof(victim.treeSecret(),
                                  variant == 0 ? HandshakeRole::ACCEPTOR : HandshakeRole::OPENER,
                                  s.openerHello(), s.acceptorHello());
      if (variant == 1) proof[7] ^= 1;
      kj::ArrayPtr<const kj::byte> sent = proof;
      if (variant == 2) sent = sent.slice(0, 16);
      if (variant == 3) sent = sent.slice(0, 0);
      s.sendProof(sent);
      auto why = co_await s.expectRefusal();
      EXPECT_TRUE(contains(why, "does not know this tree's secret")) << variant << why.cStr();
    }
    // A good proof recorded on one channel is worthless on the next (fresh nonces).
    kj::Array<kj::byte> recorded;
    {
      auto s = co_await stranger(unixAddress());
      co_await s.hello();
      recorded = handshakeProof(victim.treeSecret(), HandshakeRole::OPENER, s.openerHello(),
                                s.acceptorHello());
      s.sendProof(recorded);
      auto reader = co_await receiveOne(*s.channel);
      EXPECT_TRUE(reader->getRoot<wire::Message>().isAuthenticate());  // accepted
    }
    {
      auto s = co_await stranger(unixAddress());
      co_await s.hello();
      s.sendProof(recorded);
      auto why = co_await s.expectRefusal();
      EXPECT_TRUE(contains(why, "does not know this tree's secret")) << why.cStr();
    }
    co_await expectStillServing();
  });
}

// A member of the tree (it knows the secret) that sends garbage, reconnecting each time the actor
// closes on it: the actor logs its first few violations with what was wrong, then counts, and
// never logs a stack trace for one (issue #19, 6: it was 2-3 warnings with traces per frame).
TEST_F(AuthTest, AMemberSendingMalformedFramesIsLoggedAFewTimesThenCountedWithoutTraces) {
  run([&]() -> Co<void> {
    auto identity = ActorIdentity::random("junk");
    for (int i = 0; i < 20; ++i) {
      auto channel = co_await connect(network(), unixAddress());
      wire::Message::Builder root = nullptr;
      auto ours = newMessage(root);
      auto hello = root.initHello();
      identity.toWire(hello.initId());
      hello.setProtocolVersion(wire::PROTOCOL_VERSION);
      setHelloNonce(hello);
      channel->send(*ours);
      auto theirs = co_await receiveOne(*channel);
      auto proof = handshakeProof(victim.treeSecret(), HandshakeRole::OPENER, hello.asReader(),
                                  theirs->getRoot<wire::Message>().getHello());
      auto m = newMessage(root);
      root.setAuthenticate(capnp::Data::Reader(proof.begin(), proof.size()));
      channel->send(*m);
      auto answer = co_await receiveOne(*channel);
      KJ_ASSERT(answer->getRoot<wire::Message>().isAuthenticate());
      co_await channel->flush();
      // A segment table claiming 2^32 segments: a malformed frame, which ends the channel.
      static const kj::byte garbage[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
      co_await channel->getStream().write(garbage, sizeof(garbage));
      kj::Maybe<kj::Own<capnp::MessageReader>> next;
      do {
        next = nullptr;
        KJ_IF_MAYBE(e, co_await errorOf([&]() -> Co<void> { next = co_await channel->receive(); })) {
          break;  // a reset is a close too
        }
      } while (next != nullptr);
    }
    co_await expectStillServing();
  });
  EXPECT_LE(warnings, int(ViolationLog::VIOLATIONS_IN_DETAIL)) << warningLines;
  EXPECT_EQ(warningLines.find("stack:"), std::string::npos) << warningLines;
  EXPECT_NE(warningLines.find("further ones are counted"), std::string::npos) << warningLines;
}

TEST_F(AuthTest, AnActorRefusesAnAcceptorThatCannotProveTheSecret) {
  // An impostor listens where the friend connects: it answers the hello and a made-up proof.
  run([&]() -> Co<void> {
    auto listener = co_await Listener::bind(network(), "tcp:127.0.0.1:0");
    auto impostor = [&]() -> Co<void> {
      auto channel = co_await listener->accept();
      wire::Message::Builder root = nullptr;
      auto hello = newMessage(root);
      ActorIdentity::random("impostor").toWire(root.initHello().initId());
      root.getHello().setProtocolVersion(wire::PROTOCOL_VERSION);
      setHelloNonce(root.getHello());
      channel->send(*hello);
      auto theirs = co_await receiveOne(*channel);
      auto theirProof = co_await receiveOne(*channel);
      KJ_ASSERT(theirProof->getRoot<wire::Message>().isAuthenticate());
      auto wrong = TreeSecret::random();
      auto proof = handshakeProof(wrong, HandshakeRole::ACCEPTOR,
                                  theirs->getRoot<wire::Message>().getHello(),
                                  root.getHello().asReader());
      wire::Message::Builder answer = nullptr;
      auto m = newMessage(answer);
      answer.setAuthenticate(capnp::Data::Reader(proof.begin(), proof.size()));
      channel->send(*m);
      auto refusal = co_await receiveOne(*channel);
      EXPECT_TRUE(refusal->getRoot<wire::Message>().isError());
    };
    kj::Maybe<kj::Exception> failure;
    co_await openNursery([&](TaskNursery& n) -> Co<void> {
      n.startSoon(impostor);
      try {
        co_await friendly.connectTo(listener->getAddress());
      } catch (...) {
        failure = currentException();
      }
    });
    auto& e = KJ_ASSERT_NONNULL(failure);
    EXPECT_TRUE(isAuthenticationFailed(e)) << kj::str(e).cStr();
  });
}

// ---------------------------------------------------------------------------------------------
// Another uid on a Unix socket.

// In a child process running as `nobody`: connect to the abstract socket `name`, send a hello's
// worth of bytes, and report (exit status 0) whether the server closed without sending anything.
int connectAsNobody(const std::string& name, uid_t uid, gid_t gid) {
  if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) return 10;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 11;
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  memcpy(address.sun_path + 1, name.data(), name.size());
  socklen_t length = offsetof(sockaddr_un, sun_path) + 1 + name.size();
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) return 12;
  char junk[64] = {};
  (void)!write(fd, junk, sizeof(junk));
  char buffer[256];
  ssize_t n = read(fd, buffer, sizeof(buffer));
  if (n == 0 || (n < 0 && errno == ECONNRESET)) return 0;  // closed; not even a hello
  return 13;
}

TEST_F(AuthTest, AProcessOfAnotherUidIsRefusedBeforeTheHello) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (to run a connecting child as nobody)";
  struct passwd* nobody = getpwnam("nobody");
  if (nobody == nullptr) GTEST_SKIP() << "no user 'nobody'";
  uid_t uid = nobody->pw_uid;
  gid_t gid = nobody->pw_gid;
  run([&]() -> Co<void> {
    std::string name = unixAddress().slice(6).cStr();  // after "unix:@"
    int fds[2];
    KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
    pid_t pid = fork();
    KJ_ASSERT(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      char status = char(connectAsNobody(name, uid, gid));
      (void)!write(fds[1], &status, 1);
      _exit(0);
    }
    close(fds[1]);
    auto pipe = io.lowLevelProvider->wrapInputFd(fds[0],
                                                kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    char status = 99;
    size_t n = co_await pipe->tryRead(&status, 1, 1);
    int wstatus;
    waitpid(pid, &wstatus, 0);
    EXPECT_EQ(n, 1u);
    if (status == 10) {
      std::cerr << "could not become nobody (a user namespace?): not tested\n";
      co_return;
    }
    EXPECT_EQ(int(status), 0) << "12: connect failed, 13: the actor answered";
    co_await expectStillServing();
  });
  EXPECT_EQ(warnings, 0) << warningLines;
}

// A relay that passes the hellos on may not change what either side said: the proof covers every
// field of both hellos (protocol 2), the message limit and shared memory included.
TEST(HandshakeProofTest, CoversEveryFieldOfBothHellos) {
  auto secret = TreeSecret::random();
  capnp::MallocMessageBuilder openerMessage, acceptorMessage;
  auto opener = openerMessage.initRoot<wire::Hello>();
  auto acceptor = acceptorMessage.initRoot<wire::Hello>();
  for (auto hello : {opener, acceptor}) {
    hello.initId().setName("a");
    hello.setPid(7);
    hello.setProtocolVersion(wire::PROTOCOL_VERSION);
    hello.setMaxMessageBytes(1u << 20);
    setHelloNonce(hello);
  }
  auto proof = handshakeProof(secret, HandshakeRole::ACCEPTOR, opener, acceptor);
  EXPECT_TRUE(verifyHandshakeProof(secret, HandshakeRole::ACCEPTOR, opener, acceptor, proof));

  acceptor.setMaxMessageBytes(64u << 20);
  EXPECT_FALSE(verifyHandshakeProof(secret, HandshakeRole::ACCEPTOR, opener, acceptor, proof));
  acceptor.setMaxMessageBytes(1u << 20);
  opener.setSharedMemory(true);
  EXPECT_FALSE(verifyHandshakeProof(secret, HandshakeRole::ACCEPTOR, opener, acceptor, proof));
  opener.setSharedMemory(false);
  acceptor.setFrameProtection(wire::FrameProtection::AUTHENTICATED);
  EXPECT_FALSE(verifyHandshakeProof(secret, HandshakeRole::ACCEPTOR, opener, acceptor, proof));
  acceptor.setFrameProtection(wire::FrameProtection::NONE);
  EXPECT_TRUE(verifyHandshakeProof(secret, HandshakeRole::ACCEPTOR, opener, acceptor, proof));
  // The keys of a channel are its own: another nonce, other keys.
  auto keys = frameKeys(secret, opener, acceptor);
  setHelloNonce(opener);
  auto other = frameKeys(secret, opener, acceptor);
  EXPECT_NE(0, memcmp(keys->openerToAcceptor, other->openerToAcceptor, FrameKeys::SIZE));
  EXPECT_NE(0, memcmp(keys->openerToAcceptor, keys->acceptorToOpener, FrameKeys::SIZE));
}

TEST(ListenerTest, ConnectionsFromAnotherUidAreNotAcceptedAndSocketFilesAre0600) {
  auto io = kj::setupAsyncIo();
  auto& network = io.provider->getNetwork();
  auto path = testing::uniqueSocketPath("auth-listener");
  {
    auto file = Listener::bind(network, kj::str("unix:", path)).wait(io.waitScope);
    struct stat st;
    ASSERT_EQ(lstat(path.cStr(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  if (geteuid() != 0) GTEST_SKIP() << "needs root (to run a connecting child as nobody)";
  struct passwd* nobody = getpwnam("nobody");
  if (nobody == nullptr) GTEST_SKIP() << "no user 'nobody'";
  auto name = testing::uniqueName("harrow-auth-listener");
  auto listener = Listener::bind(network, kj::str("unix:@", name)).wait(io.waitScope);
  auto accepted = listener->accept().eagerlyEvaluate(nullptr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(connectAsNobody(name.cStr(), nobody->pw_uid, nobody->pw_gid));
  // The child's connection is accepted by the kernel and closed by accept() unseen; the child
  // exits once it sees EOF. Run the loop until its pidfd says it has exited (an event; the
  // test's timeout bounds it).
  int exitFd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  ASSERT_GE(exitFd, 0);
  {
    kj::UnixEventPort::FdObserver exit(io.unixEventPort, exitFd,
                                       kj::UnixEventPort::FdObserver::OBSERVE_READ);
    exit.whenBecomesReadable().wait(io.waitScope);
  }
  close(exitFd);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  if (WEXITSTATUS(status) == 10) GTEST_SKIP() << "could not become nobody (a user namespace?)";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "12: connect failed, 13: the connection was served";
  io.waitScope.poll();
  EXPECT_FALSE(accepted.poll(io.waitScope)) << "accept() handed out the foreign connection";
  // A connection of our own uid is accepted.
  auto own = connect(network, listener->getAddress()).wait(io.waitScope);
  auto channel = accepted.wait(io.waitScope);
  EXPECT_EQ(listener->refusedConnections(), 1u);
}

// ---------------------------------------------------------------------------------------------
// The cookie file.

class CookieTest : public ::testing::Test {
protected:
  ~CookieTest() noexcept override {
    unlink(cookie.cStr());
    unlink(other.cStr());
    rmdir(dir.cStr());
  }
  kj::String dir = []() {
    char buffer[] = "/tmp/harrow-cookie-test-XXXXXX";
    KJ_ASSERT(mkdtemp(buffer) != nullptr);
    return kj::str(buffer);
  }();
  kj::String cookie = kj::str(dir, "/cookie");
  kj::String other = kj::str(dir, "/other");

  void write(kj::StringPtr path, kj::StringPtr text, mode_t mode) {
    int fd = open(path.cStr(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    KJ_ASSERT(fd >= 0);
    KJ_ASSERT(::write(fd, text.begin(), text.size()) == ssize_t(text.size()));
    close(fd);
    KJ_SYSCALL(chmod(path.cStr(), mode));
  }

  std::string refusal(kj::StringPtr path) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { readCookie(path); })) {
      return e->getDescription().cStr();
    }
    ADD_FAILURE() << "the cookie was accepted";
    return "";
  }
};

TEST_F(CookieTest, AMissingCookieIsCreatedPrivateAndReadAlikeEveryTime) {
  auto first = readCookie(cookie);
  struct stat st;
  ASSERT_EQ(stat(cookie.cStr(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 65);  // 64 hex digits and a newline
  auto second = readCookie(cookie);
  EXPECT_EQ(first.bytes(), second.bytes());
  // Another cookie, another secret.
  write(other, "a cookie a user wrote by hand\n", 0600);
  EXPECT_NE(readCookie(other).bytes(), first.bytes());
}

TEST_F(CookieTest, ACookieOthersMayReadIsRefusedNamingTheFile) {
  write(cookie, "0123456789abcdef0123456789abcdef\n", 0644);
  auto why = refusal(cookie);
  EXPECT_NE(why.find(cookie.cStr()), std::string::npos) << why;
  EXPECT_NE(why.find("mode 0644"), std::string::npos) << why;
  write(cookie, "0123456789abcdef0123456789abcdef\n", 0620);
  EXPECT_NE(refusal(cookie).find("mode 0620"), std::string::npos);
}

TEST_F(CookieTest, AShortCookieOrOneOfAnotherUserIsRefused) {
  write(cookie, "short\n", 0600);
  EXPECT_NE(refusal(cookie).find("at least 16"), std::string::npos);
  if (geteuid() != 0) GTEST_SKIP() << "needs root (to give the file to nobody)";
  struct passwd* nobody = getpwnam("nobody");
  if (nobody == nullptr) GTEST_SKIP() << "no user 'nobody'";
  write(cookie, "0123456789abcdef0123456789abcdef\n", 0600);
  KJ_SYSCALL(chown(cookie.cStr(), nobody->pw_uid, nobody->pw_gid));
  auto why = refusal(cookie);
  EXPECT_NE(why.find("not to this user"), std::string::npos) << why;
}

}  // namespace
}  // namespace harrow
