// A relay in the middle of a TCP channel (issue #19, 1): a process of another user (`nobody`,
// when the test runs as root) listens where a client connects, passes the client's handshake on
// to examples/multi_program's daemon unchanged, and then injects a forged cancelActor, drops,
// reorders, modifies or replays the client's frames (tests/security/relay.c++). Every attempt
// ends that channel, which the daemon logs as a frame that failed its tag; the client's calls on
// it fail; the daemon is not cancelled and goes on serving everyone else. Untouched (`pass`), the
// same relay carries the calls through, so what fails is the tampering, not the relaying. No
// process is left behind. The same relay on a link between hosts (network namespaces) is
// tests/cluster: ARelayOnALinkThatTampersWithAFrameEndsThatLinkAndNothingElse.
//
// Usage (from BUILD.bazel): relay_test DAEMON RELAY

#include <harrow/actor/actor.h>
#include <harrow/actor/cookie.h>
#include <harrow/co/cancel_scope.h>
#include <harrow/co/nursery.h>
#include <harrow/registry.capnp.harrow.h>
#include "tests/security/daemon_test.h"

#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/encoding.h>

#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace harrow {
namespace {

using testing::Program;

const char* daemonPath = nullptr;
const char* relayPath = nullptr;

// The frame a relay would love to slip in: cancel the actor.
std::string cancelActorHex() {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Message>().setCancelActor();
  auto flat = capnp::messageToFlatArray(message);
  return kj::encodeHex(flat.asBytes()).cStr();
}

class RelayTest : public testing::DaemonTest {
protected:
  RelayTest() : DaemonTest("relay", 0755) {}  // the relay's copy must be reachable by `nobody`
  ~RelayTest() noexcept override {}

  std::string cookie = dir + "/cookie";

  // The relay, as `nobody` if this process may run it so (from a copy nobody can execute).
  kj::Own<Program> relay(int targetPort, const std::string& mode) {
    std::vector<std::string> args = {relayPath, std::to_string(targetPort), mode};
    if (mode == "inject") args.push_back(cancelActorHex());
    if (geteuid() == 0 && getpwnam("nobody") != nullptr && access("/usr/bin/setpriv", X_OK) == 0) {
      std::string copy = dir + "/relay";
      if (access(copy.c_str(), X_OK) != 0) {
        std::string command = "cp '" + std::string(relayPath) + "' '" + copy + "'";
        KJ_ASSERT(system(command.c_str()) == 0);
        chmod(copy.c_str(), 0755);
      }
      args[0] = copy;
      args.insert(args.begin(), {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup",
                                 "--clear-groups"});
    }
    auto program = kj::heap<Program>(io, args);
    known.insert(program->getPid());
    return program;
  }
};

// Two registry calls at once through `peer` (two frames in one write): how many succeeded.
Co<int> twoCalls(Peer& peer, kj::Timer& timer) {
  registry::RegistryActor::Portal registry(peer);
  int ok = 0;
  co_await openNursery([&](TaskNursery& n) -> Co<void> {
    for (int i = 0; i < 2; ++i) {
      n.startSoon([&]() -> Co<void> {
        auto failed = co_await errorOf([&]() {
          return failAfter(timer, 10 * kj::SECONDS, [&]() -> Co<void> {
            auto found = co_await registry.find("no-such-actor");
            EXPECT_FALSE(found->getFound());
          });
        });
        if (failed == nullptr) ++ok;
      });
    }
    co_return;
  });
  co_return ok;
}

TEST_F(RelayTest, EveryTamperingAfterTheHandshakeEndsThatChannelAndNothingElse) {
  run([&]() -> Co<void> {
    Program daemon(io,
                   {daemonPath, "--harrow-registry=tcp:127.0.0.1:0", "--harrow-cookie=" + cookie});
    std::string registry = co_await ready(daemon);
    int port = std::stoi(registry.substr(registry.rfind(':') + 1));

    size_t tampered = 0;
    for (std::string mode : {"pass", "inject", "drop", "reorder", "modify", "replay"}) {
      SCOPED_TRACE(mode);
      auto r = relay(port, mode);
      auto listening = co_await r->waitForLine("listening ");
      auto through = kj::str("tcp:127.0.0.1:", listening.substr(10));

      // A member of the tree (it has the cookie), a new one each time.
      Actor client{io, ActorIdentity::random(kj::str("client-", mode))};
      client.setTreeSecret(readCookie(kj::StringPtr(cookie.c_str())));
      client.setChannelServer({});
      int ok = -1;
      co_await client.serve([&]() -> Co<void> {
        Peer* peer = co_await client.connectTo(through);
        EXPECT_EQ(peer->trust(), PeerTrust::TREE_SECRET);
        ok = co_await twoCalls(*peer, client.timer());
      });
      if (mode == "pass") {
        EXPECT_EQ(ok, 2) << "the relay itself must carry an untouched channel";
      } else if (mode == "replay") {
        // The genuine first frame is through (its call may answer before the channel ends);
        // its copy, and everything after it, is not.
        EXPECT_LE(ok, 1) << "a replayed call ran";
        co_await daemon.waitForCount("a frame failed its tag", ++tampered);
      } else {
        EXPECT_EQ(ok, 0) << "a call went through a tampered channel";
        // The daemon logged it, as a frame that failed its tag.
        co_await daemon.waitForCount("a frame failed its tag", ++tampered);
      }
      co_await r->waitForLine("done ");
      EXPECT_EQ(co_await r->finish(), 0);

      // The daemon was not cancelled, and serves a client that connects directly.
      Actor direct{io, ActorIdentity::random("direct")};
      direct.setTreeSecret(readCookie(kj::StringPtr(cookie.c_str())));
      direct.setChannelServer({});
      co_await direct.serve([&]() -> Co<void> {
        Peer* peer = co_await direct.connectTo(kj::StringPtr(registry.c_str()));
        EXPECT_EQ(co_await twoCalls(*peer, direct.timer()), 2);
      });
      EXPECT_EQ(kill(daemon.getPid(), 0), 0);
    }
    daemon.signal(SIGTERM);
    int status = co_await daemon.finish();
    EXPECT_TRUE(WIFEXITED(status)) << status << daemon.outputSoFar();
  });
}

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  return harrow::testing::daemonTestMain(argc, argv, "relay_test", "DAEMON RELAY",
                                         {&harrow::daemonPath, &harrow::relayPath});
}
