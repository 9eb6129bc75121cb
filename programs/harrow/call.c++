// harrow call: a call, stream or context with JSON params, from the schema the actor sends
// (Introspect.schema: capnp::SchemaLoader, the dynamic API and capnp's JSON codec).

#include "programs/harrow/commands.h"
#include "programs/harrow/errors.h"
#include "programs/harrow/format.h"
#include "programs/harrow/json_check.h"

#include <harrow/co/nursery.h>

#include <capnp/compat/json.h>
#include <capnp/dynamic.h>
#include <capnp/message.h>
#include <capnp/schema-loader.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <thread>

namespace harrow::cli {
namespace {

using Introspect = introspect::Introspect;

kj::String encode(const capnp::JsonCodec& codec, capnp::StructSchema type,
                  IncomingMessage& message) {
  message.check(type);
  auto value = message.payload().getAs<capnp::DynamicStruct>(type);
  return codec.encode(capnp::DynamicValue::Reader(value), capnp::Type(type));
}

// Fills `message` with `json` as a `type`; a bad document (not JSON, a field the type does not
// have, a value of the wrong type: json_check.h) is a usage error naming the field.
void decode(const capnp::JsonCodec& codec, capnp::StructSchema type, OutgoingMessage& message,
            kj::StringPtr json, kj::StringPtr what) {
  message.setType(type);
  auto builder = message.payload().initAs<capnp::DynamicStruct>(type);
  capnp::MallocMessageBuilder parsed;
  auto value = parsed.initRoot<capnp::JsonValue>();
  auto problem = kj::runCatchingExceptions([&]() {
    codec.decodeRaw(json, value);
    KJ_IF_MAYBE (mismatch, jsonMismatch(value.asReader(), type)) {
      kj::throwFatalException(KJ_EXCEPTION(FAILED, kj::mv(*mismatch)));
    }
    codec.decode(value.asReader(), builder);
  });
  KJ_IF_MAYBE (e, problem) {
    fail(EXIT_USAGE, kj::str(what, " (", json, ") is not a ", typeName(type),
                             " in JSON: ", e->getDescription()));
  }
}

// Standard input, line by line, on the event loop. A thread copies it into a pipe (blocking
// reads of whatever stdin is: a terminal, a file, a pipe), so that this process never switches
// the terminal it shares with the shell to non-blocking mode.
class StdinLines {
public:
  explicit StdinLines(kj::AsyncIoContext& io) {
    int fds[2];
    KJ_SYSCALL(pipe2(fds, O_CLOEXEC));
    input = io.lowLevelProvider->wrapInputFd(fds[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    int writeEnd = fds[1];
    // Detached: if the command finishes while stdin stays open, the process exits under it.
    std::thread([writeEnd]() {
      char buffer[4096];
      for (;;) {
        ssize_t n = read(STDIN_FILENO, buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t done = 0; done < n;) {
          ssize_t w = write(writeEnd, buffer + done, n - done);
          if (w < 0 && errno == EINTR) continue;
          if (w <= 0) {
            close(writeEnd);
            return;
          }
          done += w;
        }
      }
      close(writeEnd);
    }).detach();
  }

  // The next line (without its newline), or nullptr at the end of input.
  Co<kj::Maybe<kj::String>> next() {
    for (;;) {
      KJ_IF_MAYBE (newline, pending.findFirst('\n')) {
        auto line = kj::heapString(pending.begin(), *newline);
        pending = kj::heapString(pending.slice(*newline + 1));
        co_return kj::mv(line);
      }
      char buffer[4096];
      size_t n = co_await input->tryRead(buffer, 1, sizeof(buffer));
      if (n == 0) {
        if (pending.size() == 0) co_return nullptr;
        co_return kj::mv(pending);
      }
      pending = kj::str(pending, kj::arrayPtr(buffer, n));
    }
  }

private:
  kj::Own<kj::AsyncInputStream> input;
  kj::String pending = kj::str();
};

// "Counter.add": the interface's name and the method's. Anything else is a usage error.
struct Target {
  kj::StringPtr text;
  kj::String interface;
  kj::StringPtr method;
};

Target parseTarget(kj::StringPtr text) {
  KJ_IF_MAYBE (dot, text.findLast('.')) {
    return {text, kj::heapString(text.begin(), *dot), text.slice(*dot + 1)};
  }
  fail(EXIT_USAGE, kj::str("'", text, "' is not Interface.method (e.g. Counter.add)"));
}

// "Counter.add, Counter.get": every method the actor serves, for a target it does not.
kj::String servedMethods(Introspect::SchemaResults::Reader schema) {
  kj::Vector<kj::String> served;
  for (auto interface : schema.getInterfaces()) {
    for (auto method : interface.getMethods()) {
      served.add(kj::str(interface.getName(), ".", method.getName()));
    }
  }
  return served.empty() ? kj::str("nothing callable") : kj::strArray(served, ", ");
}

struct FoundMethod {
  uint64_t interfaceId;
  Introspect::Method::Reader method;
};

// The method `target` names in the schema the actor sent (the last interface of that name).
// Not served, or served without type information: EXIT_NOT_FOUND.
FoundMethod findMethod(Introspect::SchemaResults::Reader schema, const Target& target,
                       kj::StringPtr actorName) {
  kj::Maybe<Introspect::Interface::Reader> interface;
  for (auto candidate : schema.getInterfaces()) {
    if (candidate.getName() == target.interface) interface = candidate;
  }
  kj::Maybe<Introspect::Method::Reader> method;
  KJ_IF_MAYBE (i, interface) {
    for (auto candidate : i->getMethods()) {
      if (candidate.getName() == target.method) method = candidate;
    }
  }
  KJ_IF_MAYBE (m, method) {
    if (m->getParamsType() == 0) {
      fail(EXIT_NOT_FOUND, kj::str(target.text, " of actor '", actorName,
                                   "' comes without type information (a hand-written server): "
                                   "it cannot be called from the shell"));
    }
    return {KJ_ASSERT_NONNULL(interface).getId(), *m};
  }
  fail(EXIT_NOT_FOUND, kj::str("actor '", actorName, "' serves no ", target.text,
                               "; it serves: ", servedMethods(schema)));
}

// One call of a found method, as the steps below share it: the channel, the method's types
// (from the schema nodes the actor sent) and the JSON codec.
struct Invocation {
  Invocation(Session& session, Peer& peer, Introspect::Method::Reader method)
      : session(session), peer(peer), method(method) {}

  Session& session;
  Peer& peer;
  Introspect::Method::Reader method;
  capnp::SchemaLoader loader;
  capnp::JsonCodec codec;

  capnp::StructSchema type(uint64_t id) { return loader.get(id).asStruct(); }
};

// A call: its result, one line of JSON.
Co<void> callOnce(Invocation& call, kj::Own<OutgoingMessage> start) {
  auto result = co_await call.peer.call(kj::mv(start));
  printLine(encode(call.codec, call.type(call.method.getResultsType()), *result));
}

// A stream: a line of JSON per item, until the callee ends it.
Co<void> printStream(Invocation& call, kj::Own<OutgoingMessage> start) {
  auto itemType = call.type(call.method.getItemType());
  auto task = co_await call.peer.open(kj::mv(start), MethodKind::STREAM);
  for (;;) {
    auto item = co_await task->receive();
    KJ_IF_MAYBE (i, item) {
      printLine(encode(call.codec, itemType, **i));
    } else {
      break;
    }
  }
  co_await task->result();
}

// A context's caller side: each non-empty line of standard input is an item sent (if the method
// takes any), then the caller stops.
Co<void> sendInputLines(Invocation& call, OutgoingTask& task) {
  if (call.method.getCallerSendsType() != 0) {
    auto itemType = call.type(call.method.getCallerSendsType());
    StdinLines lines(call.session.self().io());
    for (;;) {
      auto line = co_await lines.next();
      KJ_IF_MAYBE (l, line) {
        if (l->size() == 0) continue;
        auto item = task.newItem();
        decode(call.codec, itemType, *item, *l, "a line of standard input");
        co_await task.send(kj::mv(item));
      } else {
        break;
      }
    }
  }
  co_await task.stop();
}

// A context's callee side: {"item": ...} per item it sends.
Co<void> printItems(Invocation& call, OutgoingTask& task) {
  auto itemType = call.type(call.method.getCalleeSendsType());
  for (;;) {
    auto item = co_await task.receive();
    KJ_IF_MAYBE (i, item) {
      printLine(kj::str("{\"item\": ", encode(call.codec, itemType, **i), "}"));
    } else {
      break;
    }
  }
}

// A context: {"started": ...}, then standard input up and items down at once, then
// {"result": ...} if there is one.
Co<void> runContext(Invocation& call, kj::Own<OutgoingMessage> start) {
  auto task = co_await call.peer.open(kj::mv(start), MethodKind::CONTEXT);
  auto started = co_await task->started();
  printLine(kj::str("{\"started\": ",
                    encode(call.codec, call.type(call.method.getStartedType()), *started), "}"));
  co_await openNursery([&](TaskNursery& both) -> Co<void> {
    both.startSoon([&]() { return sendInputLines(call, *task); });
    if (call.method.getCalleeSendsType() != 0) {
      both.startSoon([&]() { return printItems(call, *task); });
    }
    co_return;
  });
  auto result = co_await task->result();
  KJ_IF_MAYBE (r, result) {
    printLine(kj::str(
        "{\"result\": ", encode(call.codec, call.type(call.method.getResultsType()), **r), "}"));
  }
}

}  // namespace

Co<int> call(Session& session) {
  auto& args = session.opts().args;
  Target target = parseTarget(args[1]);
  kj::StringPtr paramsJson = args.size() > 2 ? args[2].asPtr() : "{}"_kj;

  auto entry = co_await session.resolveOne(args[0]);
  Peer* peer = co_await session.connect(entry);
  IntrospectActor::Portal introspection(*peer);
  auto schema = co_await session.bounded<Received<Introspect::SchemaResults>>(
      kj::str("actor '", entry.name, "'"), [&]() { return introspection.schema(); });
  FoundMethod found = findMethod(*schema, target, entry.name);

  Invocation invocation(session, *peer, found.method);
  for (auto node : schema->getNodes()) invocation.loader.load(node);
  auto start = peer->newStart(found.interfaceId, found.method.getId());
  decode(invocation.codec, invocation.type(found.method.getParamsType()), *start, paramsJson,
         "the params");

  switch (found.method.getKind()) {
    case Introspect::Kind::CALL: co_await callOnce(invocation, kj::mv(start)); break;
    case Introspect::Kind::STREAM: co_await printStream(invocation, kj::mv(start)); break;
    case Introspect::Kind::CONTEXT: co_await runContext(invocation, kj::mv(start)); break;
  }
  co_return EXIT_OK;
}

}  // namespace harrow::cli
