// Several "hosts" on one machine for the cluster tests: Linux network namespaces, each with one
// interface (eth0, 10.77.0.N/24) joined by veth pairs to a bridge in a hub namespace of their
// own, so that a test runs a tree across hosts that reach each other only over IP, and can cut a
// host's link (`ip link set eth0 down` inside it) while its processes run.
//
//   NetnsCluster cluster({"a", "b", "c"});   // a: 10.77.0.1, b: 10.77.0.2, c: 10.77.0.3
//   Program node(io, cluster.exec("b", {nodeBinary, "--listen=tcp:10.77.0.2:7000"}));
//   ...
//   EXPECT_EQ(cluster.processesIn("b").size(), 0);
//   // ~NetnsCluster: kills whatever is still running inside, deletes every namespace it made
//
// Every name carries a random token (tests/names.h), so copies of a test running side by side
// make disjoint namespaces, and the 10.77.0.0/24 addresses exist only inside them. Needs root
// and iproute2's `ip` (clusterUnavailable() says why not, for GTEST_SKIP). Setup and teardown
// run `ip` synchronously: call them while the test's event loop is not waiting on children it
// reaps (KJ reaps only children it was told about; these are waited for here).

#pragma once

#include "tests/names.h"
#include "tests/processes.h"

#include <kj/debug.h>
#include <kj/string.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

extern char** environ;

namespace harrow::testing {

inline const char* ipCommand() {
  for (const char* path : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return nullptr;
}

// Runs `args` (args[0] a path), waits; returns the exit status and, in `output`, what it printed
// (stdout and stderr together).
inline int runCommand(const std::vector<std::string>& args, std::string* output = nullptr) {
  int fds[2];
  KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  int error = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(fds[1]);
  if (error != 0) {
    close(fds[0]);
    KJ_FAIL_SYSCALL("posix_spawn", error, args[0]);
  }
  std::string text;
  char buffer[1024];
  for (;;) {
    ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, n);
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    KJ_ASSERT(errno == EINTR, "waitpid", errno);
  }
  if (output != nullptr) *output = text;
  return status;
}

// Why the cluster tests cannot run here, or nullptr if they can: they need root, `ip`, and
// network namespaces (a container may refuse them).
inline kj::Maybe<kj::String> clusterUnavailable() {
  if (geteuid() != 0) return kj::str("needs root (network namespaces, veth pairs)");
  const char* ip = ipCommand();
  if (ip == nullptr) return kj::str("needs iproute2's `ip` (apt-get install iproute2)");
  auto probe = kj::str("hwprobe-", randomToken());
  std::string output;
  int status = runCommand({ip, "netns", "add", probe.cStr()}, &output);
  if (status != 0) {
    return kj::str("`ip netns add` failed here: ", output.c_str());
  }
  runCommand({ip, "netns", "del", probe.cStr()});
  return nullptr;
}

class NetnsCluster {
public:
  // One namespace per host name (host i gets 10.77.0.<i+1>), plus the hub with the bridge.
  explicit NetnsCluster(std::vector<std::string> hostNames) {
    KJ_REQUIRE(ipCommand() != nullptr, "no `ip` command");
    ip = ipCommand();
    std::string token = randomToken().cStr();
    hub = "hw-" + token.substr(0, 8) + "-hub";
    make(hub);
    run(hub, {"link", "add", "br0", "type", "bridge"});
    run(hub, {"link", "set", "br0", "up"});
    run(hub, {"link", "set", "lo", "up"});
    for (size_t i = 0; i < hostNames.size(); ++i) {
      Host host;
      host.name = hostNames[i];
      host.ns = "hw-" + token.substr(0, 8) + "-" + host.name;
      host.address = "10.77.0." + std::to_string(i + 1);
      make(host.ns);
      // The veth's hub end: named after the host, short (IFNAMSIZ is 16).
      std::string hubEnd = "v" + token.substr(0, 6) + std::to_string(i);
      run(host.ns, {"link", "add", "eth0", "type", "veth", "peer", "name", hubEnd, "netns", hub});
      run(host.ns, {"addr", "add", host.address + "/24", "dev", "eth0"});
      run(host.ns, {"link", "set", "eth0", "up"});
      run(host.ns, {"link", "set", "lo", "up"});
      run(hub, {"link", "set", hubEnd, "master", "br0"});
      run(hub, {"link", "set", hubEnd, "up"});
      hosts.push_back(std::move(host));
    }
  }

  ~NetnsCluster() noexcept(false) {
    // Whatever a failed test left running dies first: a namespace with processes in it would
    // outlive its name.
    for (auto& ns : made) killAllIn(ns);
    for (auto it = made.rbegin(); it != made.rend(); ++it) {
      runCommand({ip, "netns", "del", *it});
    }
  }
  KJ_DISALLOW_COPY(NetnsCluster);

  const std::string& ns(const std::string& host) const { return find(host).ns; }
  const std::string& address(const std::string& host) const { return find(host).address; }

  // The argv that runs `args` inside `host`'s namespace (`ip netns exec` execs it: the pid is the
  // program's own).
  std::vector<std::string> exec(const std::string& host, std::vector<std::string> args) const {
    std::vector<std::string> argv = {ip, "netns", "exec", find(host).ns};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // Runs `ip ARGS` in `host`'s namespace, synchronously; throws with its output if it fails.
  void ipIn(const std::string& host, std::vector<std::string> args) { run(find(host).ns, args); }

  // Cuts `host` off: its interface goes down, so packets neither leave nor arrive, and the peers
  // of its connections hear nothing (no reset, no FIN).
  void cut(const std::string& host) { ipIn(host, {"link", "set", "eth0", "down"}); }
  void restore(const std::string& host) { ipIn(host, {"link", "set", "eth0", "up"}); }

  // The pids of every process whose network namespace is `host`'s (`ip netns pids`).
  std::vector<pid_t> processesIn(const std::string& host) const {
    return pidsIn(find(host).ns);
  }

private:
  struct Host {
    std::string name;
    std::string ns;
    std::string address;
  };
  std::string ip;
  std::string hub;
  std::vector<Host> hosts;
  std::vector<std::string> made;

  const Host& find(const std::string& name) const {
    for (auto& host : hosts) {
      if (host.name == name) return host;
    }
    KJ_FAIL_REQUIRE("no such host in the cluster", name);
  }

  void make(const std::string& ns) {
    std::string output;
    int status = runCommand({ip, "netns", "add", ns}, &output);
    KJ_REQUIRE(status == 0, "ip netns add failed", ns, output);
    made.push_back(ns);
  }

  void run(const std::string& ns, std::vector<std::string> args) {
    std::vector<std::string> argv = {ip, "-n", ns};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string output;
    int status = runCommand(argv, &output);
    if (status != 0) {
      std::string line;
      for (auto& a : argv) line += a + " ";
      KJ_FAIL_REQUIRE("command failed", line, output);
    }
  }

  std::vector<pid_t> pidsIn(const std::string& ns) const {
    std::string output;
    runCommand({ip, "netns", "pids", ns}, &output);
    std::vector<pid_t> pids;
    size_t at = 0;
    while (at < output.size()) {
      size_t end = output.find('\n', at);
      if (end == std::string::npos) end = output.size();
      std::string line = output.substr(at, end - at);
      if (!line.empty()) pids.push_back(atoi(line.c_str()));
      at = end + 1;
    }
    return pids;
  }

  void killAllIn(const std::string& ns) {
    auto pids = pidsIn(ns);
    if (pids.empty()) return;
    for (pid_t pid : pids) {
      KJ_LOG(WARNING, "killing a process left in a test namespace", ns, pid);
      ::kill(pid, SIGKILL);
    }
    // Not our children (most of them): wait until each has exited (2 s: a failure guard).
    for (pid_t pid : pids) waitForExit(pid, 2000);
  }
};

}  // namespace harrow::testing
