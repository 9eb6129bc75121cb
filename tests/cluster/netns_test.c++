// The test fixture itself (tests/cluster/netns.h): hosts reach each other over their veths and
// the bridge, a cut host is unreachable, and teardown leaves no namespace behind.

#include "tests/cluster/netns.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace harrow::testing {
namespace {

const char* selfPath;

// Modes this binary runs in inside a namespace (argv[1]):
//   --listen IP PORT   accept one connection, send "hello from IP", exit 0
//   --connect IP PORT  connect once, print what it reads, exit 0; exit 2 if refused or unreachable
int serveOnce(const char* ip, int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, ip, &addr.sin_addr);
  if (bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return 1;
  listen(s, 1);
  printf("listening\n");
  fflush(stdout);
  int c = accept(s, nullptr, nullptr);
  std::string text = std::string("hello from ") + ip;
  ssize_t n = write(c, text.data(), text.size());
  close(c);
  return n == ssize_t(text.size()) ? 0 : 1;
}

// The test starts it once the listener has said "listening".
int connectOnce(const char* ip, int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  timeval timeout = {1, 0};
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, ip, &addr.sin_addr);
  if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(s);
    return 2;  // refused, unreachable, timed out
  }
  char buffer[64];
  ssize_t n = read(s, buffer, sizeof(buffer));
  if (n > 0) fwrite(buffer, 1, n, stdout);
  close(s);
  return 0;
}

class NetnsTest : public ::testing::Test {
protected:
  void SetUp() override {
    KJ_IF_MAYBE(why, clusterUnavailable()) GTEST_SKIP() << why->cStr();
  }
};

TEST_F(NetnsTest, HostsReachEachOtherOverTheBridge) {
  NetnsCluster cluster({"a", "b", "c"});
  EXPECT_EQ(cluster.address("c"), "10.77.0.3");
  // b listens; a and c connect to it in turn.
  for (std::string client : {"a", "c"}) {
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    pid_t listener = fork();
    if (listener == 0) {
      dup2(ready[1], STDOUT_FILENO);
      close(ready[0]);
      close(ready[1]);
      auto argv = cluster.exec("b", {selfPath, "--listen", "10.77.0.2", "7000"});
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    // Connect once it listens (its first line), so that one attempt must succeed.
    close(ready[1]);
    std::string said;
    char c;
    while (read(ready[0], &c, 1) == 1 && c != '\n') said += c;
    close(ready[0]);
    ASSERT_EQ(said, "listening");
    std::string output;
    int status = runCommand(cluster.exec(client, {selfPath, "--connect", "10.77.0.2", "7000"}),
                            &output);
    EXPECT_EQ(status, 0) << output;
    EXPECT_EQ(output, "hello from 10.77.0.2");
    int listenerStatus;
    waitpid(listener, &listenerStatus, 0);
    EXPECT_EQ(listenerStatus, 0);
  }
  // The default namespace has no route to the cluster's addresses, and the cluster none out.
  EXPECT_TRUE(cluster.processesIn("b").empty());
}

TEST_F(NetnsTest, ACutHostIsUnreachableAndTeardownRemovesEverything) {
  std::string ns;
  {
    NetnsCluster cluster({"a", "b"});
    ns = cluster.ns("b");
    cluster.cut("b");
    std::string output;
    int status = runCommand(cluster.exec("a", {selfPath, "--connect", "10.77.0.2", "7001"}),
                            &output);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << output;
    cluster.restore("b");
  }
  std::string list;
  runCommand({ipCommand(), "netns", "list"}, &list);
  EXPECT_EQ(list.find(ns), std::string::npos) << list;
}

}  // namespace
}  // namespace harrow::testing

int main(int argc, char** argv) {
  harrow::testing::selfPath = argv[0];
  if (argc == 4 && std::string(argv[1]) == "--listen") {
    return harrow::testing::serveOnce(argv[2], atoi(argv[3]));
  }
  if (argc == 4 && std::string(argv[1]) == "--connect") {
    return harrow::testing::connectOnce(argv[2], atoi(argv[3]));
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
