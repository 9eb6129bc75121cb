// examples/multi_program, the client: a separate program that joins the registry of a running
// daemon (--harrow-registry=ADDR, the same address as the daemon's), finds the actor "greeter" by
// name and calls it through its typed portal. See README.md.
//
//   greeter_client --harrow-registry=ADDR [--name=NAME] [--wait-for=ACTOR]
//
// --name=NAME        whom to greet (default: world)
// --wait-for=ACTOR   first wait until an actor named ACTOR registers (harrow::waitForActor),
//                    e.g. to start the client before the daemon's greeter is up
//
// Exits 1 with a clear message when there is no greeter, or when the registry goes away.

#include <harrow/harrow.h>
#include "examples/multi_program/greeter.capnp.harrow.h"

#include <kj/debug.h>

#include <stdio.h>
#include <unistd.h>

namespace {

using harrow::Co;

void say(kj::StringPtr what) {
  printf("[client %d] %s\n", getpid(), what.cStr());
  fflush(stdout);
}

struct Request {
  kj::String greetName = kj::str("world");
  kj::Maybe<kj::String> waitFor;
};

Co<void> run(harrow::Actor& root, const Request& request) {
  kj::StringPtr greetName = request.greetName;
  kj::StringPtr registry = KJ_REQUIRE_NONNULL(harrow::registryAddress(root), "no registry");
  KJ_IF_MAYBE(name, request.waitFor) {
    say(kj::str("waiting for '", *name, "' at the registry ", registry));
    co_await harrow::waitForActor<GreeterActor>(*name);
  }
  KJ_IF_MAYBE(greeter, co_await harrow::findActor<GreeterActor>("greeter")) {
    auto reply = co_await greeter->greet(greetName);
    say(kj::str("greeter (pid ", reply->getPid(), ") says: ", reply->getGreeting()));
  } else {
    KJ_FAIL_REQUIRE(kj::str(
        "no actor named 'greeter' is registered with the registry at ", registry,
        harrow::hostsRegistry(root) ? " (no registry was running there: this program hosted one "
                               "itself; is the daemon running?)"
                             : ""));
  }
}

}  // namespace

int main(int argc, char** argv) {
  Request request;
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (arg.startsWith("--name=")) request.greetName = kj::str(arg.slice(7));
    if (arg.startsWith("--wait-for=")) request.waitFor = kj::str(arg.slice(11));
  }
  harrow::Implementations implementations;  // the client spawns no actors
  return harrow::main(argc, argv, implementations,
                      [&](harrow::Actor& root) { return run(root, request); });
}
