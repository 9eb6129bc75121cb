// examples/multi_program, the daemon: the root of its tree hosts the registry (at the address
// given with --harrow-registry=ADDR, or unix:<runtime dir>/registry.sock by default) and runs a Greeter actor,
// "greeter", in a child process, until Ctrl-C or SIGTERM. Other programs pointed at the same
// registry find "greeter" by name and call it (client.c++). See README.md.

#include <harrow/harrow.h>
#include "examples/multi_program/greeter.capnp.harrow.h"

#include <kj/debug.h>

#include <stdio.h>
#include <unistd.h>

namespace {

using harrow::Co;

void say(kj::StringPtr what) {
  printf("[daemon %d] %s\n", getpid(), what.cStr());
  fflush(stdout);
}

// Runs in the child process "greeter".
class GreeterImpl final : public GreeterActor::Server {
public:
  Co<void> greet(GreetCall call) override {
    call.results().setGreeting(kj::str("hello, ", call.params().getName()));
    call.results().setPid(getpid());
    co_return;
  }
};

Co<void> run(harrow::Actor& root) {
  co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> Co<void> {
    auto greeter = co_await an.startActor<GreeterActor>("greeter", "greeter");
    // A child registers before it serves its parent's first call: once this answers, "greeter"
    // can be found by name.
    auto hello = co_await greeter.greet("daemon");
    kj::StringPtr registry = "none";
    KJ_IF_MAYBE(address, harrow::registryAddress(root)) registry = *address;
    // What the registry knows about it (tractor: query_actor).
    auto entries = co_await harrow::queryActor(root, "greeter");
    KJ_REQUIRE(entries.size() > 0, "greeter is not registered");
    say(kj::str("ready registry=", registry, " hosted=", harrow::hostsRegistry(root) ? "yes" : "no",
                " greeter-pid=", hello->getPid(), " greeter-address=", entries[0].addresses[0],
                " address=", root.addresses().size() > 0 ? root.addresses()[0].asPtr() : "none"_kj));
    co_await root.whenCancelled();  // Ctrl-C / SIGTERM: the greeter is cancelled and reaped
  });
}

}  // namespace

int main(int argc, char** argv) {
  harrow::Implementations implementations;
  implementations.add<GreeterImpl>("greeter");
  return harrow::main(argc, argv, implementations, run);
}
