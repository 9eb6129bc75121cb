// A program a multi-process test starts (an example's binary, say): its stdout and stderr
// captured together, read line by line on the test's event loop, its exit awaited there.

#pragma once

#include <harrow/co/co.h>

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

extern char** environ;

namespace harrow::testing {

// Starts `args` (args[0]: a path) with stdin, stdout and stderr from `in`, `out` and `err` (-1:
// this process's own), `environment`'s NAME=VALUE entries over this process's environment, an
// empty signal mask and SIGPIPE and SIGCHLD at their defaults (the event loop blocks SIGCHLD and
// more). Returns the pid; throws naming the program.
inline pid_t spawnProgram(const std::vector<std::string>& args, int in, int out, int err,
                          const std::vector<std::string>& environment = {}) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  KJ_DEFER(posix_spawn_file_actions_destroy(&actions));
  if (in >= 0) posix_spawn_file_actions_adddup2(&actions, in, STDIN_FILENO);
  if (out >= 0) posix_spawn_file_actions_adddup2(&actions, out, STDOUT_FILENO);
  if (err >= 0) posix_spawn_file_actions_adddup2(&actions, err, STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  KJ_DEFER(posix_spawnattr_destroy(&attr));
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGCHLD);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> env;  // the extra entries first: getenv() finds the first match
  for (auto& e : environment) env.push_back(const_cast<char*>(e.c_str()));
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  env.push_back(nullptr);
  pid_t pid;
  int error = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), env.data());
  if (error != 0) KJ_FAIL_SYSCALL("posix_spawn", error, args[0]);
  return pid;
}

// One program started by the test, its stdout and stderr captured together.
class Program {
public:
  // `environment`: NAME=VALUE entries that override this process's environment.
  Program(kj::AsyncIoContext& io, std::vector<std::string> args,
          std::vector<std::string> environment = {})
      : io(io) {
    int fds[2];
    KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
    KJ_DEFER(close(fds[1]));
    KJ_ON_SCOPE_FAILURE(close(fds[0]));
    pid = spawnProgram(args, -1, fds[1], fds[1], environment);
    pidSlot = pid;
    output = io.lowLevelProvider->wrapInputFd(fds[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    exitStatus = io.unixEventPort.onChildExit(pidSlot).fork();
  }

  ~Program() noexcept(false) {
    if (!exited) {
      // A failed test: do not leave it behind.
      kill(pid, SIGKILL);
      KJ_IF_MAYBE(p, pidSlot) {
        int status;
        waitpid(*p, &status, 0);
      }
    }
  }

  pid_t getPid() const { return pid; }

  // The program's output up to the first line starting with `prefix` (which it returns).
  Co<std::string> waitForLine(std::string prefix) {
    for (;;) {
      size_t start = 0;
      while (true) {
        auto newline = text.find('\n', start);
        if (newline == std::string::npos) break;
        std::string line = text.substr(start, newline - start);
        // Lines are "[daemon PID] ..." or "[client PID] ...": match after the tag.
        auto tagEnd = line.find("] ");
        std::string body = tagEnd == std::string::npos ? line : line.substr(tagEnd + 2);
        if (body.rfind(prefix, 0) == 0) co_return body;
        start = newline + 1;
      }
      if (!co_await readMore()) {
        KJ_FAIL_REQUIRE("the program ended its output without the expected line", prefix, text);
      }
    }
  }

  // Waits until the output holds `count` lines containing `needle` (e.g. one per actor started).
  Co<void> waitForCount(std::string needle, size_t count) {
    for (;;) {
      size_t found = 0;
      for (size_t at = text.find(needle); at != std::string::npos;
           at = text.find(needle, at + needle.size())) {
        ++found;
      }
      if (found >= count) co_return;
      if (!co_await readMore()) {
        KJ_FAIL_REQUIRE("the program ended its output before enough lines", needle, count, text);
      }
    }
  }

  // Sends `signal` to the program (while it runs).
  void signal(int signal) {
    if (!exited) {
      KJ_SYSCALL(kill(pid, signal));
    }
  }

  // Reads everything until EOF, then waits for the exit; returns the wait status.
  Co<int> finish() {
    while (co_await readMore()) {}
    int status = co_await exitStatus.addBranch();
    exited = true;
    co_return status;
  }

  const std::string& outputSoFar() const { return text; }

private:
  kj::AsyncIoContext& io;
  pid_t pid = 0;
  kj::Maybe<pid_t> pidSlot;
  kj::Own<kj::AsyncInputStream> output;
  kj::ForkedPromise<int> exitStatus = nullptr;
  std::string text;
  bool exited = false;

  Co<bool> readMore() {
    char buffer[4096];
    size_t n = co_await output->tryRead(buffer, 1, sizeof(buffer));
    text.append(buffer, n);
    co_return n > 0;
  }
};

inline std::string field(const std::string& line, const std::string& key) {
  auto at = line.find(" " + key + "=");  // "ready a=1 b=2": every field follows a space
  if (at == std::string::npos) return "";
  at += key.size() + 2;
  auto end = line.find_first_of(" \n", at);
  return line.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

}  // namespace harrow::testing
