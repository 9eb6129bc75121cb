#include <harrow/actor/introspect.h>
#include <harrow/actor/actor.h>

#include <kj/debug.h>
#include <kj/map.h>

#include <algorithm>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

namespace harrow {
namespace {

using Introspect = introspect::Introspect;

Introspect::Kind kindOf(MethodKind kind) {
  switch (kind) {
    case MethodKind::CALL: return Introspect::Kind::CALL;
    case MethodKind::STREAM: return Introspect::Kind::STREAM;
    case MethodKind::CONTEXT: return Introspect::Kind::CONTEXT;
  }
  return Introspect::Kind::CALL;
}

kj::StringPtr roleOf(PeerTrust trust) {
  switch (trust) {
    case PeerTrust::PARENT: return "parent";
    case PeerTrust::CHILD: return "child";
    case PeerTrust::TREE_SECRET: return "peer";
  }
  return "peer";
}

// Introspection's own tasks are not what anyone looks for in a task list.
bool isIntrospection(const TaskInfo& task) {
  return task.method.startsWith(kj::str(IntrospectActor::NAME, "."));
}

uint64_t typeId(kj::Maybe<capnp::StructSchema> schema) {
  KJ_IF_MAYBE(s, schema) return s->getProto().getId();
  return 0;
}

class IntrospectServer final : public IntrospectActor::Server {
public:
  explicit IntrospectServer(Actor& actor)
      : actor(actor), createdAt(kj::systemCoarseMonotonicClock().now()) {}

  Co<void> info(InfoCall call) override {
    auto out = call.results().initInfo();
    auto& id = actor.identity();
    out.setName(id.name);
    out.setUuid(id.uuid);
    out.setPid(getpid());
    uint32_t tasks = 0;
    for (Peer* peer : actor.peers()) {
      if (peer->trust() == PeerTrust::PARENT) {
        out.setParentName(peer->remote().name);
        out.setParentUuid(peer->remote().uuid);
      }
      for (auto& task : peer->tasks()) {
        if (!isIntrospection(task)) ++tasks;
      }
    }
    auto addresses = actor.addresses();
    auto list = out.initAddresses(addresses.size());
    for (auto i : kj::indices(addresses)) list.set(i, addresses[i]);
    out.setUptimeNanos((kj::systemCoarseMonotonicClock().now() - createdAt) / kj::NANOSECONDS);
    out.setResidentBytes(residentBytes());
    out.setTasksInFlight(tasks);
    out.setChannels(actor.peers().size());
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) == 0) out.setHost(host);
    co_return;
  }

  Co<void> schema(SchemaCall call) override {
    kj::Vector<ActorServer*> served;
    actor.forEachServer([&](ActorServer& server) {
      if (server.interfaceId() != IntrospectActor::INTERFACE_ID) served.add(&server);
    });
    kj::Vector<capnp::Schema> roots;
    auto interfaces = call.results().initInterfaces(served.size());
    for (auto i : kj::indices(served)) {
      ActorServer& server = *served[i];
      auto out = interfaces[i];
      out.setId(server.interfaceId());
      out.setName(server.interfaceName());
      kj::Vector<uint16_t> ids;
      for (uint16_t m = 0; server.methodKind(m) != nullptr; ++m) ids.add(m);  // ordinals: 0..n-1
      auto methods = out.initMethods(ids.size());
      for (auto j : kj::indices(ids)) {
        uint16_t m = ids[j];
        auto method = methods[j];
        method.setId(m);
        method.setName(server.methodName(m));
        method.setKind(kindOf(KJ_ASSERT_NONNULL(server.methodKind(m))));
        KJ_IF_MAYBE(types, server.messageTypes(m)) {
          method.setParamsType(types->params.getProto().getId());
          method.setResultsType(types->results.getProto().getId());
          method.setItemType(typeId(types->item));
          method.setStartedType(typeId(types->started));
          method.setCallerSendsType(typeId(types->callerSends));
          method.setCalleeSendsType(typeId(types->calleeSends));
          roots.add(types->params);
          roots.add(types->results);
          for (auto maybe : {types->item, types->started, types->callerSends, types->calleeSends}) {
            KJ_IF_MAYBE(s, maybe) roots.add(*s);
          }
        }
      }
    }
    auto closure = schemaClosure(roots);
    auto nodes = call.results().initNodes(closure.size());
    for (auto i : kj::indices(closure)) nodes.setWithCaveats(i, closure[i].getProto());
    co_return;
  }

  Co<void> tasks(TasksCall call) override {
    struct Entry {
      Peer* peer;
      TaskInfo task;
    };
    kj::Vector<Entry> entries;
    for (Peer* peer : actor.peers()) {
      for (auto& task : peer->tasks()) {
        if (!isIntrospection(task)) entries.add(Entry{peer, kj::mv(task)});
      }
    }
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
      return a.task.openedAt < b.task.openedAt;
    });
    auto now = kj::systemCoarseMonotonicClock().now();
    auto list = call.results().initTasks(entries.size());
    for (auto i : kj::indices(entries)) {
      auto& entry = entries[i];
      auto out = list[i];
      out.setCallId(entry.task.callId);
      out.setIncoming(entry.task.incoming);
      out.setKind(kindOf(entry.task.kind));
      out.setMethod(entry.task.method);
      out.setState(entry.task.state);
      out.setPeerName(entry.peer->remote().name);
      out.setPeerUuid(entry.peer->remote().uuid);
      out.setPeerRole(roleOf(entry.peer->trust()));
      out.setAgeNanos(now > entry.task.openedAt ? (now - entry.task.openedAt) / kj::NANOSECONDS
                                                : 0);
    }
    co_return;
  }

private:
  Actor& actor;
  kj::TimePoint createdAt;
};

}  // namespace

kj::Own<ActorServer> newIntrospectServer(Actor& actor) { return kj::heap<IntrospectServer>(actor); }

kj::Vector<capnp::Schema> schemaClosure(kj::ArrayPtr<const capnp::Schema> roots) {
  kj::Vector<capnp::Schema> result;
  kj::HashSet<uint64_t> seen;
  kj::Vector<capnp::Schema> pending;
  for (auto& root : roots) pending.add(root);
  auto visitType = [&](capnp::Type type) {
    while (type.isList()) type = type.asList().getElementType();
    if (type.isStruct()) {
      pending.add(type.asStruct());
    } else if (type.isEnum()) {
      pending.add(type.asEnum());
    } else if (type.isInterface()) {
      pending.add(type.asInterface());
    }
  };
  // Breadth-first from the roots, so the roots come first in the result.
  for (size_t next = 0; next < pending.size(); ++next) {
    capnp::Schema schema = pending[next];
    uint64_t id = schema.getProto().getId();
    if (seen.contains(id)) continue;
    seen.insert(id);
    result.add(schema);
    auto proto = schema.getProto();
    if (proto.isStruct()) {
      for (auto field : schema.asStruct().getFields()) visitType(field.getType());
    } else if (proto.isInterface()) {
      auto interface = schema.asInterface();
      for (auto method : interface.getMethods()) {
        pending.add(method.getParamType());
        pending.add(method.getResultType());
      }
      for (auto super : interface.getSuperclasses()) pending.add(super);
    }
  }
  return result;
}

uint64_t residentBytes() {
  FILE* status = fopen("/proc/self/status", "re");
  if (status == nullptr) return 0;
  KJ_DEFER(fclose(status));
  char line[256];
  while (fgets(line, sizeof(line), status) != nullptr) {
    unsigned long long kib = 0;
    if (sscanf(line, "VmRSS: %llu kB", &kib) == 1) return kib * 1024;
  }
  return 0;
}

}  // namespace harrow
