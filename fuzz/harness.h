// What the harnesses share: one event loop for the process, quiet logging, a victim actor that
// serves a probe interface (every method kind), and the rogue's end of an in-memory channel.

#pragma once

#include "fuzz/frames.h"

#include <harrow/actor/actor.h>
#include <harrow/typed/typed.h>
#include "tests/engine/probe.capnp.h"

#include <kj/async-io.h>
#include <kj/debug.h>

#include <stdlib.h>

namespace harrow::fuzz {

// One event loop for the whole process (libFuzzer calls the harness millions of times).
inline kj::AsyncIoContext& io() {
  static kj::AsyncIoContext* context = [] {
    // Peers that violate the protocol are logged; at fuzzing rates that is noise. HARROW_FUZZ_LOG
    // (any value) keeps KJ's default level, for reproducing a finding.
    if (getenv("HARROW_FUZZ_LOG") == nullptr) kj::_::Debug::setLogLevel(kj::LogSeverity::FATAL);
    // Errors the victim sends the rogue go without their symbolized stack: nobody reads them, and
    // symbolizing took most of an engine input's time (docs/FUZZING.md, Speed). HARROW_TRACE set
    // (e.g. to full) keeps them.
    setenv("HARROW_TRACE", "off", 0);
    return new kj::AsyncIoContext(kj::setupAsyncIo());
  }();
  return *context;
}

constexpr uint64_t PROBE_ID = 0x5678;

// Method 0: echo (call). 1: a context that reads items until the caller stops, streaming one
// back per item. 2: a context that never reads. 3: a stream of Count.n items (at most 16).
class ProbeServer final : public ActorServer {
public:
  uint64_t interfaceId() const override { return PROBE_ID; }
  kj::StringPtr interfaceName() const override { return "Probe"; }
  kj::Maybe<MethodKind> methodKind(uint16_t id) const override {
    switch (id) {
      case 0: return MethodKind::CALL;
      case 1: case 2: return MethodKind::CONTEXT;
      case 3: return MethodKind::STREAM;
    }
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t id) const override { return id == 0 ? "echo" : "other"; }
  Co<void> dispatch(uint16_t id, IncomingTask& task) override {
    if (id == 0) {
      ServerCall<probe::Words, probe::Words> call(task);
      call.results().setText(call.params().getText());
      co_return;
    }
    if (id == 3) {
      ServerStream<probe::Count, probe::Item> stream(task);
      uint32_t n = kj::min(stream.params().getN(), 16u);
      for (uint32_t i = 0; i < n; ++i) {
        co_await stream.yield([i](probe::Item::Builder b) { b.setI(i); });
      }
      co_return;
    }
    ServerContext<probe::Count, probe::Count, probe::Count, probe::Item, probe::Item> ctx(task);
    co_await ctx.started([](probe::Count::Builder b) { b.setN(1); });
    if (id == 2) co_await kj::Promise<void>(kj::NEVER_DONE);
    co_await ctx.openStream([&](MsgStream<probe::Item, probe::Item>& s) -> Co<void> {
      while (auto item = co_await s.receive()) {
        uint32_t i = item->getI();
        co_await s.send([i](probe::Item::Builder b) { b.setI(i + 1); });
      }
    });
    ctx.results().setN(2);
  }
};

// The rogue's side of a channel: bytes written as they are, whatever comes back read and
// dropped.
struct Rogue {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Promise<void> writing = nullptr;
  kj::Promise<void> draining = nullptr;
  kj::byte sink[4096];

  explicit Rogue(kj::Own<kj::AsyncIoStream> s) : stream(kj::mv(s)) {
    draining = drain().eagerlyEvaluate(nullptr);
  }
  kj::Promise<void> drain() {
    return stream->tryRead(sink, 1, sizeof(sink))
        .then([this](size_t n) -> kj::Promise<void> {
          if (n == 0) return kj::READY_NOW;
          return drain();
        }, [](kj::Exception&&) {});
  }
  // Writes `bytes` (kept alive by the caller) then shuts down the write side.
  void send(kj::ArrayPtr<const kj::byte> bytes) {
    writing = stream->write(bytes.begin(), bytes.size())
                  .then([this]() { stream->shutdownWrite(); })
                  .then([]() {}, [](kj::Exception&&) {})
                  .eagerlyEvaluate(nullptr);
  }
};

// A hello as on the trusted parent-child socketpair (no nonce: no proof follows).
inline std::string helloFrame(kj::StringPtr name) {
  capnp::MallocMessageBuilder builder;
  auto hello = builder.initRoot<wire::Message>().initHello();
  ActorIdentity::random(name).toWire(hello.initId());
  hello.setProtocolVersion(wire::PROTOCOL_VERSION);
  return frameOf(builder);
}

// The bytes a rogue peer sends for an input (a flags byte, then its frames): with flags bit 0 a
// valid hello first, so that the input starts past the hellos.
inline std::string rogueBytes(const uint8_t* data, size_t size) {
  std::string bytes;
  if (data[0] & 1) bytes = helloFrame("rogue");
  bytes.append(reinterpret_cast<const char*>(data + 1), size - 1);
  return bytes;
}

}  // namespace harrow::fuzz
