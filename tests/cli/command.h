// A command a test runs (the `harrow` binary): standard output and standard error captured
// apart, read on the test's event loop; standard input from /dev/null or from a pipe the test
// writes and closes.

#pragma once

#include "tests/program.h"

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

struct Finished {
  int status = -1;  // the wait status
  std::string out, err;

  int exitCode() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
  // "exit 3; stdout: ...; stderr: ..." for failure messages.
  std::string describe() const {
    return "status " + std::to_string(status) + " (exit " + std::to_string(exitCode()) +
           ")\nstdout:\n" + out + "stderr:\n" + err;
  }
};

class Command {
public:
  // `withStdin`: the command reads a pipe the test writes (writeStdin, closeStdin); otherwise
  // /dev/null.
  Command(kj::AsyncIoContext& io, std::vector<std::string> args, bool withStdin = false) {
    int out[2], err[2], in[2];
    KJ_SYSCALL(pipe2(out, O_CLOEXEC));
    KJ_SYSCALL(pipe2(err, O_CLOEXEC));
    if (withStdin) {
      KJ_SYSCALL(pipe2(in, O_CLOEXEC));
    } else {
      in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
      KJ_REQUIRE(in[0] >= 0);
      in[1] = -1;
    }
    KJ_DEFER({
      close(in[0]);
      close(out[1]);
      close(err[1]);
    });
    KJ_ON_SCOPE_FAILURE({
      close(out[0]);
      close(err[0]);
      if (in[1] >= 0) close(in[1]);
    });
    pid = spawnProgram(args, in[0], out[1], err[1]);
    pidSlot = pid;
    stdinFd = in[1];
    stdoutStream = io.lowLevelProvider->wrapInputFd(out[0],
                                                    kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    stderrStream = io.lowLevelProvider->wrapInputFd(err[0],
                                                    kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    exitStatus = io.unixEventPort.onChildExit(pidSlot).fork();
  }

  ~Command() noexcept(false) {
    closeStdin();
    if (!exited) {
      kill(pid, SIGKILL);  // a failed test: leave nothing behind
      KJ_IF_MAYBE(p, pidSlot) {
        int status;
        waitpid(*p, &status, 0);
      }
    }
  }

  pid_t getPid() const { return pid; }

  // Writes to the command's standard input (blocking: a few lines fit the pipe).
  void writeStdin(kj::StringPtr text) {
    KJ_REQUIRE(stdinFd >= 0, "this command's stdin is not a pipe, or was closed");
    for (size_t done = 0; done < text.size();) {
      ssize_t n;
      KJ_SYSCALL(n = write(stdinFd, text.begin() + done, text.size() - done));
      done += n;
    }
  }
  void closeStdin() {
    if (stdinFd >= 0) close(stdinFd);
    stdinFd = -1;
  }

  // Standard output up to and including the first line containing `needle` (which it returns);
  // reads no further, so a command writing more blocks once the pipe is full.
  Co<std::string> waitForLine(std::string needle) {
    for (;;) {
      size_t start = 0;
      for (size_t newline; (newline = out.find('\n', start)) != std::string::npos;
           start = newline + 1) {
        std::string line = out.substr(start, newline - start);
        if (line.find(needle) != std::string::npos) co_return line;
      }
      char buffer[256];
      size_t n = co_await stdoutStream->tryRead(buffer, 1, sizeof(buffer));
      if (n == 0) KJ_FAIL_REQUIRE("the command ended its output without the line", needle, out);
      out.append(buffer, n);
    }
  }

  void signal(int signal) {
    if (!exited) kill(pid, signal);
  }

  // Reads both outputs to their end, then waits for the exit.
  Co<Finished> finish() {
    auto both = kj::heapArrayBuilder<kj::Promise<void>>(2);
    both.add(readAll(*stdoutStream, out));
    both.add(readAll(*stderrStream, err));
    co_await kj::joinPromises(both.finish());
    Finished result;
    result.status = co_await exitStatus.addBranch();
    exited = true;
    result.out = kj::mv(out);
    result.err = kj::mv(err);
    co_return result;
  }

private:
  pid_t pid = 0;
  kj::Maybe<pid_t> pidSlot;
  int stdinFd = -1;
  kj::Own<kj::AsyncInputStream> stdoutStream, stderrStream;
  kj::ForkedPromise<int> exitStatus = nullptr;
  std::string out, err;
  bool exited = false;

  static Co<void> readAll(kj::AsyncInputStream& stream, std::string& into) {
    for (;;) {
      char buffer[4096];
      size_t n = co_await stream.tryRead(buffer, 1, sizeof(buffer));
      if (n == 0) co_return;
      into.append(buffer, n);
    }
  }
};

}  // namespace harrow::testing
