// Process bookkeeping for the multi-process tests: which processes are our children, and does a
// pid still exist (a zombie counts as existing: nobody reaped it). Every such test checks
// afterwards that no process it started is left.

#pragma once

#include <kj/common.h>
#include <kj/debug.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace harrow::testing {

struct ProcStat {
  pid_t pid;
  char state;
  pid_t ppid;
  std::string comm;
};

inline kj::Maybe<ProcStat> readStat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!in || !std::getline(in, text)) return nullptr;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
  auto open = text.find('(');
  auto close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 2 >= text.size()) {
    return nullptr;
  }
  ProcStat stat;
  stat.pid = pid;
  stat.comm = text.substr(open + 1, close - open - 1);
  std::istringstream rest(text.substr(close + 2));
  rest >> stat.state >> stat.ppid;
  if (!rest) return nullptr;
  return stat;
}

inline std::vector<ProcStat> childrenOf(pid_t parent) {
  std::vector<ProcStat> children;
  DIR* dir = opendir("/proc");
  KJ_ASSERT(dir != nullptr);
  KJ_DEFER(closedir(dir));
  while (struct dirent* entry = readdir(dir)) {
    char* end;
    long pid = strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    KJ_IF_MAYBE(stat, readStat(pid)) {
      if (stat->ppid == parent) children.push_back(*stat);
    }
  }
  return children;
}

inline std::string describe(const ProcStat& p) {
  return "pid " + std::to_string(p.pid) + " (" + p.comm + ") state " + p.state + " ppid " +
         std::to_string(p.ppid);
}

// The last guard of a multi-process test binary: tests arm alarm(); should one hang past every
// bounded wait, SIGALRM ends the whole binary with a line naming it (its children die with it:
// PR_SET_PDEATHSIG). The message is made now: a signal handler may only write() it.
// Waits until `pid` (any process, not only a child) has exited, through a pidfd that turns
// readable then; `timeoutMs` is a failure guard. True once it has exited or is gone already.
inline bool waitForExit(pid_t pid, int timeoutMs) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno == ESRCH;
  pollfd exited{pidfd, POLLIN, 0};
  int ready = poll(&exited, 1, timeoutMs);
  close(pidfd);
  return ready == 1;
}

// What a multi-process test left behind, one line each for ADD_FAILURE(): a child of this process
// still there, or a process the test started (`known`) that still exists. A zombie that is not
// ours has exited (reaping it is its new parent's business). `waitMs` > 0 first waits that long
// (a failure guard) for each known process still on its way out. `keep` is a child that may
// outlive the test (the test process's forkserver zygote).
inline std::vector<std::string> leftBehind(const std::set<pid_t>& known, int waitMs = 0,
                                           kj::Maybe<pid_t> keep = nullptr) {
  std::vector<std::string> left;
  for (auto& child : childrenOf(getpid())) {
    if (keep == child.pid) continue;
    left.push_back("a child process is left: " + describe(child));
  }
  for (pid_t pid : known) {
    if (waitMs > 0) waitForExit(pid, waitMs);
    KJ_IF_MAYBE (stat, readStat(pid)) {
      if (stat->state == 'Z' && stat->ppid != getpid()) continue;
      left.push_back("a process of the test still exists: " + describe(*stat));
    }
  }
  return left;
}

inline char watchdogMessage[160];
inline size_t watchdogMessageSize = 0;

inline void installWatchdog(const char* program) {
  int n = snprintf(watchdogMessage, sizeof(watchdogMessage),
                   "%s: watchdog: a test hung past every guard\n", program);
  watchdogMessageSize = n > 0 ? kj::min(size_t(n), sizeof(watchdogMessage) - 1) : 0;
  struct sigaction watchdog = {};
  watchdog.sa_handler = [](int) {
    ssize_t ignored = write(STDERR_FILENO, watchdogMessage, watchdogMessageSize);
    (void)ignored;
    _exit(3);
  };
  sigaction(SIGALRM, &watchdog, nullptr);
}

}  // namespace harrow::testing
