// harrow: look at and act on a running tree of actors from the shell (git/kubectl style).
//
//   harrow ps                                   the live tree
//   harrow call counter-1 Counter.add '{"n": 5}'  a call with JSON in and out
//   harrow stacks --all                         every actor's open tasks
//   harrow cancel counter-1                     a graceful cancel, SIGKILL as the last resort
//
// The command is a peer of the tree like any other actor: it reads the tree's cookie and proves
// the secret in every handshake; it registers nowhere and listens nowhere. `harrow --help` and
// docs/REFERENCE.md ("The harrow command") describe the options and exit statuses.

#include "programs/harrow/commands.h"
#include "programs/harrow/errors.h"
#include "programs/harrow/format.h"

#include <harrow/actor/cookie.h>

#include <kj/async-io.h>
#include <kj/debug.h>

#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

namespace harrow::cli {
namespace {

Co<int> dispatch(Session& session) {
  auto& command = session.opts().command;
  if (command == "ps") return ps(session);
  if (command == "call") return call(session);
  if (command == "stacks") return stacks(session);
  return cancel(session);
}

int run(int argc, char** argv) {
  Options options;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { options = parseOptions(argc, argv); })) {
    fprintf(stderr, "harrow: %s\n", messageOf(*e).cStr());
    return exitCodeOf(*e);
  }
  if (options.help) {
    fputs(helpText(options.command).cStr(), stdout);
    return EXIT_OK;
  }
  if (options.version) {
    fputs(versionText().cStr(), stdout);
    return EXIT_OK;
  }

  // A cookie that does not exist is not created here (readCookie would): this command joins a
  // tree, it never starts one.
  struct stat st;
  if (stat(options.cookie.cStr(), &st) != 0) {
    fprintf(stderr, "harrow: no cookie at %s: no tree of this user runs with it (--cookie=PATH "
                    "or HARROW_COOKIE names another)\n", options.cookie.cStr());
    return EXIT_NOT_FOUND;
  }

  int status = EXIT_OK;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    auto io = kj::setupAsyncIo();
    Actor actor(io, ActorIdentity::random("harrow"));
    CurrentActorScope current(actor);
    actor.setTreeSecret(readCookie(options.cookie));
    Session session(actor, options);
    actor.serve([&]() -> kj::Promise<void> {
      return [](Session& session, int& status) -> Co<void> {
        status = co_await dispatch(session);
      }(session, status);
    }).wait(io.waitScope);
  })) {
    fprintf(stderr, "harrow: %s\n", messageOf(*e).cStr());
    return exitCodeOf(*e);
  }
  return status;
}

}  // namespace
}  // namespace harrow::cli

int main(int argc, char** argv) { return harrow::cli::run(argc, argv); }
