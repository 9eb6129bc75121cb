// Writes the seed corpora under DIR/<harness>/ (fuzz/build.sh seeds): small, readable sequences
// of well-formed frames covering every message type and method kind, plus a few known-bad ones
// (the decode boundary's cases, a wrong protocol version, broken framing). The fuzzers mutate
// from here; the frames are built with capnp, so they follow the schema as it changes.
//
//   seeds DIR

#include "fuzz/frames.h"

#include <harrow/discovery/registry.h>
#include <harrow/engine/remote_error.h>
#include "tests/engine/probe.capnp.h"

#include <capnp/any.h>
#include <kj/debug.h>

#include <fstream>
#include <sys/stat.h>

namespace harrow::fuzz {
namespace {

constexpr uint64_t PROBE_ID = 0x5678;

// One seed: a flags byte and frames.
class Seed {
public:
  explicit Seed(uint8_t flags) : bytes(1, char(flags)) {}

  wire::Message::Builder add(uint64_t callId) {
    flush();
    pending = kj::heap<capnp::MallocMessageBuilder>();
    auto root = pending->initRoot<wire::Message>();
    root.setCallId(callId);
    return root;
  }
  void raw(std::string frame) { flush(); bytes += frame; }

  void hello(uint32_t version = wire::PROTOCOL_VERSION) {
    auto h = add(0).initHello();
    auto id = h.initId();
    id.setName("rogue");
    id.setUuid(kj::heapArray<kj::byte>(16).asPtr());
    h.setPid(42);
    h.setProtocolVersion(version);
  }
  template <typename T>
  typename T::Builder start(uint64_t callId, uint64_t iface, uint16_t method, uint32_t window = 4) {
    auto s = add(callId).initStart();
    s.setInterfaceId(iface);
    s.setMethodId(method);
    s.setWindow(window);
    s.initParams().setTypeId(capnp::typeId<T>());
    return s.getParams().initValue().template initAs<T>();
  }
  template <typename T>
  typename T::Builder payload(wire::Payload::Builder p) {
    p.setTypeId(capnp::typeId<T>());
    return p.initValue().template initAs<T>();
  }
  void item(uint64_t callId, uint32_t i) { payload<probe::Item>(add(callId).initYield()).setI(i); }
  void ack(uint64_t callId, wire::MethodKind kind) {
    auto a = add(callId).initStartAck();
    a.setKind(kind);
    a.setWindow(4);
  }
  void error(uint64_t callId, wire::ErrorKind kind) {
    auto e = add(callId).initError();
    e.setType("kj::Exception(FAILED)");
    e.setMessage("it broke");
    e.setFile("x.c++");
    e.setLine(3);
    e.initOrigin().setName("rogue");
    e.initRelayPath(1)[0].setName("relay");
    e.setKind(kind);
  }

  void write(const std::string& dir, const std::string& name) {
    flush();
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
  }

private:
  std::string bytes;
  kj::Own<capnp::MallocMessageBuilder> pending;
  void flush() {
    if (pending.get() != nullptr) bytes += frameOf(*pending);
    pending = nullptr;
  }
};

// Pointer `index` of `target` replaced by a list: a pointer of the wrong kind.
template <typename Builder>
void junkList(Builder target, unsigned index) {
  capnp::AnyStruct::Builder(kj::mv(target)).getPointerSection()[index]
      .template initAs<capnp::List<uint32_t>>(2);
}

void engine(const std::string& dir) {
  {  // the victim serves every method kind
    Seed s(1);
    s.start<probe::Words>(1, PROBE_ID, 0).setText("echo");
    s.start<probe::Count>(3, PROBE_ID, 3).setN(3);
    s.start<probe::Count>(5, PROBE_ID, 1);
    s.item(5, 1);
    s.item(5, 2);
    s.add(5).setCredit(2);
    s.add(5).setStop();
    s.start<probe::Count>(7, PROBE_ID, 2);
    s.item(7, 1);
    s.add(7).setCancelTask();
    s.add(3).setCredit(4);
    s.write(dir, "serve-every-kind");
  }
  {  // the victim calls: answers for its call (2), stream (4) and context (6)
    Seed s(1 | 2);
    s.payload<probe::Words>(s.add(2).initReturn()).setText("back");
    s.ack(4, wire::MethodKind::STREAM);
    s.item(4, 0);
    s.item(4, 1);
    s.add(4).setStop();
    s.payload<probe::Empty>(s.add(4).initReturn());
    s.ack(6, wire::MethodKind::CONTEXT);
    s.payload<probe::Count>(s.add(6).initStarted()).setN(1);
    s.item(6, 5);
    s.add(6).setCredit(1);
    s.add(6).setStop();
    s.payload<probe::Count>(s.add(6).initReturn()).setN(2);
    s.write(dir, "call-every-kind");
  }
  {  // errors and cancel acks in answer to the victim's calls
    Seed s(1 | 2);
    s.error(2, wire::ErrorKind::FAILED);
    s.ack(4, wire::MethodKind::STREAM);
    s.error(4, wire::ErrorKind::CONTEXT_CANCELLED);
    s.add(6).setCancelTaskAck();
    s.write(dir, "call-errors");
  }
  {  // the handshake done by the input, then a call
    Seed s(0);
    s.hello();
    s.start<probe::Words>(1, PROBE_ID, 0).setText("echo");
    s.write(dir, "own-hello");
  }
  {  // channel-level messages
    Seed s(1);
    s.hello();
    auto spec = s.add(0).initSpawnSpec();
    spec.setImplementation("x");
    spec.initBindAddresses(1).set(0, "unix:@x");
    s.add(0).setCancelActorAck();
    s.error(0, wire::ErrorKind::PROTOCOL_VIOLATION);
    s.start<probe::Words>(0, PROBE_ID, 0);
    s.write(dir, "channel-level");
    Seed c(1);
    c.add(0).setCancelActor();
    c.write(dir, "cancel-actor");
  }
  {  // refusals: unknown interface and method, bad ids, items beyond credit
    Seed s(1);
    s.start<probe::Words>(1, 0x1234, 0);
    s.start<probe::Words>(3, PROBE_ID, 9);
    s.start<probe::Words>(2, PROBE_ID, 0);
    s.start<probe::Words>(1, PROBE_ID, 0);
    s.item(99, 1);
    s.start<probe::Count>(5, PROBE_ID, 2);
    for (uint32_t i = 0; i < 6; ++i) s.item(5, i);
    s.write(dir, "refusals");
  }
  {  // the decode boundary: pointers of the wrong kind
    Seed s(1);
    s.start<probe::Words>(1, PROBE_ID, 0);
    auto m = s.add(3);
    m.initStart().setInterfaceId(PROBE_ID);
    junkList(m.getStart(), 0);
    s.start<probe::Words>(5, PROBE_ID, 0);
    auto y = s.add(7);
    y.initStart().setInterfaceId(PROBE_ID);
    y.getStart().initParams().setTypeId(capnp::typeId<probe::Words>());
    junkList(y.getStart().getParams(), 0);
    auto e = s.add(1);
    e.initError();
    junkList(e.getError(), 0);
    s.write(dir, "wrong-kinds");
  }
}

void handshake(const std::string& dir) {
  for (uint8_t flags : {0, 1}) {
    Seed s(flags);
    s.hello();
    s.write(dir, flags ? "hello-initiator" : "hello-acceptor");
  }
  for (uint8_t flags : {4, 5}) {  // the trusted parent-child socketpair: no proof follows
    Seed s(flags);
    s.hello();
    s.write(dir, flags & 1 ? "trusted-hello-initiator" : "trusted-hello-acceptor");
  }
  {
    Seed s(2 | 4);  // as a real child reads it: on the trusted socketpair
    s.hello();
    auto spec = s.add(0).initSpawnSpec();
    spec.setImplementation("worker");
    auto addresses = spec.initBindAddresses(2);
    addresses.set(0, "unix:@a");
    addresses.set(1, "tcp:127.0.0.1:0");
    spec.setRegistryAddress("tcp:127.0.0.1:1616");
    spec.setRootAddress("unix:@root");
    spec.setLogLevel("debug");
    spec.getArgs().initAs<probe::Words>().setText("args");
    s.write(dir, "hello-spawn-spec");
  }
  {
    Seed s(0);
    s.hello(99);
    s.write(dir, "wrong-version");
    Seed n(0);
    n.add(0).setCancelActor();
    n.write(dir, "not-hello");
    Seed m(0);
    auto h = m.add(0).initHello();
    h.setProtocolVersion(wire::PROTOCOL_VERSION);
    junkList(h, 0);
    m.write(dir, "malformed-hello");
  }
}

void channel(const std::string& dir) {
  {
    Seed s(0);
    s.hello();
    s.start<probe::Words>(1, PROBE_ID, 0).setText("echo");
    s.error(1, wire::ErrorKind::FAILED);
    s.write(dir, "frames");
  }
  {  // a message over several segments (far pointers)
    capnp::MallocMessageBuilder builder(1, capnp::AllocationStrategy::FIXED_SIZE);
    auto error = builder.initRoot<wire::Message>().initError();
    error.setMessage("spread over segments");
    error.initRelayPath(3)[2].setName("far");
    Seed s(3);
    s.raw(frameOf(builder));
    s.write(dir, "segments");
  }
  {  // broken framing: a truncated frame, a bogus segment table
    Seed s(0);
    s.hello();
    std::string bytes(1, '\0');
    capnp::MallocMessageBuilder builder;
    builder.initRoot<wire::Message>().setCancelActor();
    auto frame = frameOf(builder);
    s.raw(frame.substr(0, frame.size() - 3));
    s.write(dir, "truncated");
    Seed t(8);
    t.raw(std::string("\xff\xff\x00\x00\x01\x00\x00\x00", 8));
    t.write(dir, "bogus-table");
  }
}

void registryCalls(const std::string& dir) {
  using R = registry::Registry;
  constexpr uint64_t ID = capnp::typeId<R>();
  auto uuid = kj::heapArray<kj::byte>(16);
  for (auto& b : uuid) b = 7;
  {
    Seed s(1);
    auto entry = s.start<R::RegisterActorParams>(1, ID, 0).initEntry();
    entry.setName("rogue");
    entry.setUuid(uuid);
    entry.setPid(9);
    entry.initAddresses(1).set(0, "unix:@rogue");
    s.start<R::FindParams>(3, ID, 2).setName("rogue");
    s.start<R::QueryParams>(5, ID, 3);
    s.start<R::WaitForParams>(7, ID, 4).setName("later");
    s.start<R::WaitForDepartureParams>(9, ID, 5).setUuid(uuid);
    s.start<R::InfoParams>(11, ID, 6);
    s.start<R::DeregisterActorParams>(13, ID, 1).setUuid(uuid);
    s.write(dir, "every-method");
  }
  {
    Seed s(1);
    s.start<R::WaitForParams>(1, ID, 4).setName("later");
    s.add(1).setCancelTask();
    auto entry = s.start<R::RegisterActorParams>(3, ID, 0).initEntry();
    entry.setName("later");
    entry.setUuid(uuid);
    s.start<R::WaitForDepartureParams>(5, ID, 5).setUuid(uuid);
    s.error(5, wire::ErrorKind::FAILED);
    s.write(dir, "wait-and-cancel");
  }
  {  // junk params: wrong types, wrong kinds, a bad uuid
    Seed s(1);
    s.start<R::FindParams>(1, ID, 0);  // find's params to registerActor
    auto entry = s.start<R::RegisterActorParams>(3, ID, 0).initEntry();
    entry.setName("x");
    entry.setUuid(kj::heapArray<kj::byte>(3));
    auto bad = s.start<R::RegisterActorParams>(5, ID, 0);
    junkList(bad, 0);
    s.start<R::FindParams>(7, ID, 2);
    s.write(dir, "junk-params");
  }
}

// The sealed harness: flags, a 2-byte flip offset, then frames (the harness adds the tags).
void sealed(const std::string& dir) {
  for (uint8_t flags : {0, 1, 2, 3}) {  // tags or encryption, untouched or with a bit flipped
    Seed s(flags);
    s.raw(std::string("\x10\x00", 2));
    s.hello();
    s.start<probe::Words>(1, PROBE_ID, 0).setText("echo");
    s.error(1, wire::ErrorKind::FAILED);
    s.write(dir, kj::str("frames-", flags).cStr());
  }
}

}  // namespace
}  // namespace harrow::fuzz

int main(int argc, char** argv) {
  KJ_REQUIRE(argc == 2, "usage: seeds DIR");
  std::string root = argv[1];
  mkdir(root.c_str(), 0755);
  auto run = [&](const char* name, void (*generate)(const std::string&)) {
    std::string dir = root + "/" + name;
    mkdir(dir.c_str(), 0755);
    generate(dir);
  };
  run("engine", harrow::fuzz::engine);
  run("handshake", harrow::fuzz::handshake);
  run("channel", harrow::fuzz::channel);
  run("registry", harrow::fuzz::registryCalls);
  run("sealed", harrow::fuzz::sealed);
  return 0;
}

// The seed generator links the instrumented runtime objects, which expect these.
extern "C" size_t LLVMFuzzerMutate(uint8_t*, size_t size, size_t) { return size; }
