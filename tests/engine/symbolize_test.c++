// The symbolizer's reading of frames (runtime/engine/internal/symbolize.h): what a user sees of a
// remote error's trace. The names below are GCC 12's, demangled, as they appeared in traces.

#include "runtime/engine/internal/symbolize.h"

#include <gtest/gtest.h>

#include <string>

namespace harrow::_ {
namespace {

std::string clean(kj::StringPtr name) { return cleanFunctionName(name).cStr(); }

TEST(SymbolizeTest, ACoroutineBodyReadsAsTheCallItRuns) {
  EXPECT_EQ(clean("(anonymous namespace)::StoreImpl::boom((anonymous namespace)::StoreImpl::boom("
                  "harrow::ServerCall<Kv::BoomParams, Kv::BoomResults>)::_ZN12_GLOBAL__N_19Store"
                  "Impl4boomEN6harrow10ServerCallIN2Kv10BoomParamsENS3_11BoomResultsEEE.Frame*) "
                  "[clone .actor]"),
            "StoreImpl::boom(harrow::ServerCall<Kv::BoomParams, Kv::BoomResults>)");
  // A coroutine lambda: the frame type repeats the whole lambda's name.
  EXPECT_EQ(clean("harrow::Peer::startIncoming(unsigned long)::{lambda()#2}::operator()(harrow::Peer"
                  "::startIncoming(unsigned long)::{lambda()#2}::operator()()::_ZZN6harrow4Peer13st"
                  "artIncomingEmENUlvE0_clEv.Frame*) [clone .actor]"),
            "harrow::Peer::startIncoming(unsigned long)::{lambda()#2}::operator()()");
}

TEST(SymbolizeTest, CloneSuffixesAndAnonymousNamespacesGo) {
  EXPECT_EQ(clean("(anonymous namespace)::run(harrow::Actor&) [clone .cold]"), "run(harrow::Actor&)");
  EXPECT_EQ(clean("ns::(anonymous namespace)::f(int) [clone .isra.0] [clone .constprop.1]"),
            "ns::f(int)");
  EXPECT_EQ(clean("main"), "main");
}

TEST(SymbolizeTest, FramesBelongToTheirLibraryByNameOrFile) {
  auto owner = [](kj::StringPtr name, kj::StringPtr file = "", kj::StringPtr module = "") {
    kj::StringPtr o = frameOwner(name, file, module);
    return std::string(o == nullptr ? "user" : o.cStr());
  };
  EXPECT_EQ(
      owner("KvImpl::remove(harrow::ServerCall<Kv::RemoveParams, Kv::RemoveResults>)", "main.c++"),
      "user");
  EXPECT_EQ(owner("harrow::CancelScope::run(kj::Function<kj::Promise<void> ()>)"), "harrow");
  // A return type in front, a user's lambda inside its template arguments: still KJ's frame.
  EXPECT_EQ(owner("kj::Maybe<kj::Exception> kj::runCatchingExceptions<KvActor::Server::dispatch("
                  "unsigned short, harrow::IncomingTask&)::{lambda()#1}>(KvActor::Server::dispatch("
                  "unsigned short, harrow::IncomingTask&)::{lambda()#1}&&)"), "kj");
  EXPECT_EQ(owner("std::__n4861::coroutine_handle<void>::resume() const",
                  "/usr/include/c++/12/coroutine"), "std");
  EXPECT_EQ(owner("__libc_start_call_main"), "libc");
  EXPECT_EQ(owner("/lib/x86_64-linux-gnu/libc.so.6+0x271ca", "", "/lib/x86_64-linux-gnu/libc.so.6"),
            "libc");
  // capnpc-harrow's bindings: harrow's, by their file or, without line tables, by their name.
  EXPECT_EQ(owner("KvActor::Server::dispatch(unsigned short, harrow::IncomingTask&)",
                  "bazel-out/k8-fastbuild/bin/kv.capnp.harrow.c++"), "harrow");
  EXPECT_EQ(owner("KvActor::Server::dispatch(unsigned short, harrow::IncomingTask&)"), "harrow");
  // harrow's headers included from an install or a build tree.
  EXPECT_EQ(owner("harrow::TaskNursery::runTask(kj::Function<kj::Promise<void> ()>)",
                  "/usr/include/harrow/co/nursery.h"), "harrow");
  // harrow's own tests are code in namespace harrow too, but not harrow's runtime: the user's.
  EXPECT_EQ(owner("harrow::ProbeServer::fail(harrow::ServerCall<harrow::probe::Words, "
                  "harrow::probe::Words>)",
                  "tests/engine/peer_test.c++"),
            "user");
}

}  // namespace
}  // namespace harrow::_
