// The Service actor (tests/discovery/service.capnp) the discovery tests run in their children
// and in their roots:
//
//   harrow::main(argc, argv, serviceImplementations(), ...);   // a child: a Service
//   root.addServer(kj::heap<ServiceImpl>());                    // the test's root serves one too
//
// echo answers "<actor name>: <text>"; lookup finds another actor by name from inside this one
// (findActor), callRoot calls the tree's root (rootActor). One implementation for every test of
// the folder, so that what a test expects of a child is what every other test expects.

#pragma once

#include <harrow/discovery/discovery.h>
#include <harrow/spawn/actor_nursery.h>

#include "tests/discovery/service.capnp.harrow.h"

namespace harrow::testing {

class ServiceImpl final : public ServiceActor::Server {
public:
  ServiceImpl() = default;
  // For a second actor in the test's process (currentActor() is the test's root there).
  explicit ServiceImpl(kj::StringPtr name) : fixedName(kj::str(name)) {}

  Co<void> echo(EchoCall call) override {
    call.results().setText(kj::str(name(), ": ", call.params().getText()));
    co_return;
  }

  Co<void> report(ReportCall call) override {
    call.results().setPid(getpid());
    call.results().setName(name());
    co_return;
  }

  Co<void> lookup(LookupCall call) override {
    auto name = kj::str(call.params().getName());
    auto text = kj::str(call.params().getText());
    KJ_IF_MAYBE (other, co_await findActor<ServiceActor>(name)) {
      auto reply = co_await other->echo(text);
      call.results().setFound(true);
      call.results().setReply(reply->getText());
    } else {
      call.results().setFound(false);
    }
  }

  Co<void> callRoot(CallRootCall call) override {
    auto text = kj::str(call.params().getText());
    auto root = co_await rootActor<ServiceActor>();
    auto reply = co_await root.echo(text);
    call.results().setReply(reply->getText());
  }

private:
  kj::Maybe<kj::String> fixedName;

  kj::StringPtr name() {
    KJ_IF_MAYBE (n, fixedName) return *n;
    return currentActor().identity().name;
  }
};

// What a test binary of this folder runs in its children: a Service.
inline Implementations& serviceImplementations() {
  static Implementations* impls = []() {
    auto result = new Implementations;
    result->add<ServiceImpl>("service");
    return result;
  }();
  return *impls;
}

}  // namespace harrow::testing
