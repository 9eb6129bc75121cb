// The randomized fault campaign (issue: hardening). Each run starts fault_tree (a depth-3 tree
// with a call, a stream and a context in flight), waits until everything flows, injects ONE
// random fault at a random moment, and then checks:
//   - every waiting caller got a typed harrow error (never a hang, never an untyped one) within
//     1 s of the fault — for SIGSTOP, within the grace period, since a stopped process is only
//     noticed when the tree is torn down;
//   - after a kill -9 or a closed channel, at least one caller names the failure (not only
//     Cancelled);
//   - the root exits as it should (0, or 130 after SIGINT), and afterwards no process of the
//     tree is left: none running, no zombie, no orphan (this driver is a child subreaper, so
//     orphans come to it and are reaped and counted).
// Faults: kill -9 of a random actor, SIGSTOP of a random actor, SIGINT to the root's process
// group (a terminal's Ctrl-C), the root closing its channel under the stream.
//
//   fault_campaign --program=PATH [--runs=N] [--seed=S] [--verbose]
//
// Prints one line per failed run (all runs with --verbose), then "N passed, M failed".

#include <kj/debug.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr long CALLER_BOUND_MS = 1000;
constexpr long STOPPED_BOUND_MS = 1000 + 2000 + 500;  // the window, the grace period, slack

struct Root {
  pid_t pid = -1;
  int in = -1, out = -1;
};

Root start(const std::string& program) {
  int in[2], out[2];
  KJ_SYSCALL(pipe2(in, O_CLOEXEC));
  KJ_SYSCALL(pipe2(out, O_CLOEXEC));
  pid_t parent = getpid();
  pid_t pid = fork();
  KJ_SYSCALL(pid, "fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    setpgid(0, 0);  // a job of its own, as a shell would start it
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    const char* argv[] = {program.c_str(), "--harrow-registry=none", nullptr};
    execv(argv[0], const_cast<char**>(argv));
    _exit(127);
  }
  setpgid(pid, pid);
  close(in[0]);
  close(out[1]);
  return {pid, in[1], out[0]};
}

// One line from `fd`, bounded by `deadline` (a failure guard, not synchronisation).
bool readLine(int fd, std::string& buffer, std::string& line, Clock::time_point deadline) {
  for (;;) {
    auto newline = buffer.find('\n');
    if (newline != std::string::npos) {
      line = buffer.substr(0, newline);
      buffer.erase(0, newline + 1);
      return true;
    }
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    struct pollfd p = {fd, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    char chunk[512];
    ssize_t got = read(fd, chunk, sizeof(chunk));
    if (got <= 0) return false;
    buffer.append(chunk, got);
  }
}

bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  return stat.good();
}

// Our children (running or zombie) whose parent we are: orphans of the tree reparented to us.
std::vector<pid_t> ourChildren() {
  std::vector<pid_t> out;
  std::ifstream children("/proc/self/task/" + std::to_string(getpid()) + "/children");
  pid_t pid;
  while (children >> pid) out.push_back(pid);
  return out;
}

struct Outcome {
  bool ok = true;
  std::string why;
  void fail(const std::string& what) {
    ok = false;
    why += (why.empty() ? "" : "; ") + what;
  }
};

Outcome runOnce(const std::string& program, std::mt19937& random, std::string& description) {
  Outcome outcome;
  Root root = start(program);
  std::string buffer, line;
  auto deadline = Clock::now() + std::chrono::seconds(20);
  std::map<std::string, pid_t> tree;
  if (!readLine(root.out, buffer, line, deadline) || line.rfind("ready", 0) != 0) {
    outcome.fail("the tree never came up: '" + line + "'");
  } else {
    std::istringstream words(line.substr(5));
    std::string word;
    while (words >> word) {
      auto eq = word.find('=');
      tree[word.substr(0, eq)] = atoi(word.substr(eq + 1).c_str());
    }
  }

  const char* kinds[] = {"kill9", "sigstop", "sigint", "close"};
  std::string kind = kinds[random() % 4];
  std::vector<std::string> names;
  for (auto& entry : tree) names.push_back(entry.first);
  std::string target = names.empty() ? "" : names[random() % names.size()];
  int delayMs = random() % 50;
  description = kind + (kind == "kill9" || kind == "sigstop" ? " " + target : "") + " after " +
                std::to_string(delayMs) + " ms";

  std::map<std::string, std::string> callers;  // name -> "kind ms"
  std::string nursery;
  int status = -1;
  if (outcome.ok) {
    // The random moment: the tree is flowing (ticks every 20 ms); this is when the fault lands.
    struct timespec pause = {0, delayMs * 1000000L};
    nanosleep(&pause, nullptr);
    if (kind == "kill9") kill(tree[target], SIGKILL);
    if (kind == "sigstop") kill(tree[target], SIGSTOP);
    if (kind == "sigint") kill(-root.pid, SIGINT);
    std::string word = "fault " + kind + "\n";
    (void)!write(root.in, word.data(), word.size());

    deadline = Clock::now() + std::chrono::seconds(15);
    while (readLine(root.out, buffer, line, deadline)) {
      if (line.rfind("caller ", 0) == 0) {
        auto rest = line.substr(7);
        callers[rest.substr(0, rest.find(' '))] = rest.substr(rest.find(' ') + 1);
      } else if (line.rfind("nursery ", 0) == 0) {
        nursery = line.substr(8);
      } else if (line == "done") {
        break;
      }
    }
  }
  // The root's exit, bounded; a root that hangs is killed and counted as a failure.
  auto exitDeadline = Clock::now() + std::chrono::seconds(10);
  while (waitpid(root.pid, &status, WNOHANG) == 0) {
    if (Clock::now() > exitDeadline) {
      outcome.fail("the root did not exit");
      kill(-root.pid, SIGKILL);
      kill(root.pid, SIGKILL);
      waitpid(root.pid, &status, 0);
      break;
    }
    struct timespec tick = {0, 5 * 1000000L};
    nanosleep(&tick, nullptr);  // process exit is not an event a pipe gives us; bounded
  }
  close(root.in);
  close(root.out);

  if (outcome.ok) {
    bool interrupted = kind == "sigint";
    int expected = interrupted ? 128 + SIGINT : 0;
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == expected)) {
      outcome.fail("root exit status " + std::to_string(status) + ", expected exit " +
                   std::to_string(expected));
    }
    if (!interrupted) {
      // Which caller the fault is under: the subtree of the killed actor, or s for the closed
      // channel; a stopped actor is noticed by nobody until the teardown.
      std::string hit = kind == "close" ? "s" : kind == "kill9" ? target.substr(0, 1) : "";
      for (const char* name : {"c", "s", "h"}) {
        auto it = callers.find(name);
        if (it == callers.end()) {
          outcome.fail(std::string("caller ") + name + " never ended");
          continue;
        }
        std::istringstream fields(it->second);
        std::string errorKind;
        long ms = 0;
        fields >> errorKind >> ms;
        if (errorKind.rfind("untyped", 0) == 0 || errorKind == "returned") {
          outcome.fail(std::string("caller ") + name + ": " + it->second);
        }
        if (name == hit) {
          // Told of the fault itself, in time: a child killed under the call is ActorDied (it
          // names the actor and the signal); one deeper arrives relayed, as RemoteActorError, or
          // as a MultiError when the child's nursery raised that death with the call's failure.
          std::string want = kind == "close"                     ? "TransportClosed|ActorDied"
                             : target.size() == 1 && kind == "kill9" ? "ActorDied"
                                                                 : "RemoteActorError|MultiError";
          if (("|" + want + "|").find("|" + errorKind + "|") == std::string::npos) {
            outcome.fail(std::string("caller ") + name + " got " + errorKind + ", not " + want);
          }
          if (ms > CALLER_BOUND_MS) {
            outcome.fail(std::string("caller ") + name + " waited " + std::to_string(ms) + " ms");
          }
        } else if (ms > (kind == "sigstop" ? STOPPED_BOUND_MS : CALLER_BOUND_MS + 500)) {
          outcome.fail(std::string("caller ") + name + " waited " + std::to_string(ms) + " ms");
        }
      }
      if (nursery.rfind("untyped", 0) == 0) outcome.fail("nursery: " + nursery);
    }
  }

  // Nothing of the tree may be left: orphans of a kill -9 come to us (subreaper) to be reaped.
  auto cleanDeadline = Clock::now() + std::chrono::seconds(5);
  for (;;) {
    for (pid_t child : ourChildren()) {
      int s;
      waitpid(child, &s, WNOHANG);
    }
    bool left = !ourChildren().empty();
    for (auto& entry : tree) left = left || alive(entry.second);
    if (!left) break;
    if (Clock::now() > cleanDeadline) {
      std::string names;
      for (auto& entry : tree) {
        if (alive(entry.second)) names += " " + entry.first;
      }
      outcome.fail("left behind:" + names + " (" + std::to_string(ourChildren().size()) +
                   " children of the driver)");
      for (auto& entry : tree) kill(entry.second, SIGKILL);
      for (pid_t child : ourChildren()) kill(child, SIGKILL);
      cleanDeadline = Clock::now() + std::chrono::seconds(5);
    }
    struct timespec tick = {0, 5 * 1000000L};
    nanosleep(&tick, nullptr);  // reparenting is not an event we can wait on; bounded
  }
  std::string seen;
  for (auto& entry : callers) seen += " " + entry.first + ":" + entry.second;
  description += " ->" + seen + " nursery:" + nursery;
  return outcome;
}

}  // namespace

int main(int argc, char** argv) {
  std::string program;
  int runs = 50;
  unsigned seed = std::random_device()();
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--program=", 0) == 0) program = arg.substr(10);
    if (arg.rfind("--runs=", 0) == 0) runs = atoi(arg.substr(7).c_str());
    if (arg.rfind("--seed=", 0) == 0) seed = strtoul(arg.substr(7).c_str(), nullptr, 10);
    if (arg == "--verbose") verbose = true;
  }
  if (program.empty()) {
    fprintf(stderr, "usage: fault_campaign --program=PATH [--runs=N] [--seed=S] [--verbose]\n");
    return 2;
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  signal(SIGPIPE, SIG_IGN);
  printf("fault campaign: %d runs, seed %u\n", runs, seed);
  std::mt19937 random(seed);
  int passed = 0, failed = 0;
  std::map<std::string, int> byKind;
  for (int run = 1; run <= runs; ++run) {
    std::string description;
    auto outcome = runOnce(program, random, description);
    byKind[description.substr(0, description.find(' '))]++;
    if (outcome.ok) {
      ++passed;
      if (verbose) printf("ok   run %d: %s\n", run, description.c_str());
    } else {
      ++failed;
      printf("FAIL run %d: %s: %s\n", run, description.c_str(), outcome.why.c_str());
    }
    fflush(stdout);
  }
  std::string mix;
  for (auto& entry : byKind) mix += " " + entry.first + "=" + std::to_string(entry.second);
  printf("faults:%s\n", mix.c_str());
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
