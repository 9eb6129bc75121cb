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
    KJ_IF_MAYBE(mismatch, jsonMismatch(value.asReader(), type)) {
      kj::throwFatalException(KJ_EXCEPTION(FAILED, kj::mv(*mismatch)));
    }
    codec.decode(value.asReader(), builder);
  });
  KJ_IF_MAYBE(e, problem) {
    fail(EXIT_USAGE, kj::str(what, " (", json, ") is not a ", typeName(type), " in JSON: ",
                             e->getDescription()));
  }
}

capnp::StructSchema typeOf(capnp::SchemaLoader& loader, uint64_t id) {
  return loader.get(id).asStruct();
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
      KJ_IF_MAYBE(newline, pending.findFirst('\n')) {
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

}  // namespace

Co<int> call(Session& session) {
  auto& args = session.opts().args;
  kj::StringPtr target = args[1];
  kj::StringPtr paramsJson = args.size() > 2 ? args[2].asPtr() : "{}"_kj;
  size_t dot = 0;
  KJ_IF_MAYBE(at, target.findLast('.')) {
    dot = *at;
  } else {
    fail(EXIT_USAGE, kj::str("'", target, "' is not Interface.method (e.g. Counter.add)"));
  }
  auto interfaceName = kj::heapString(target.begin(), dot);
  kj::StringPtr methodName = target.slice(dot + 1);

  auto entry = co_await session.resolveOne(args[0]);
  Peer* peer = co_await session.connect(entry);
  IntrospectActor::Portal introspection(*peer);
  auto schema = co_await session.bounded<Received<Introspect::SchemaResults>>(
      kj::str("actor '", entry.name, "'"), [&]() { return introspection.schema(); });

  capnp::SchemaLoader loader;
  for (auto node : schema->getNodes()) loader.load(node);

  kj::Maybe<Introspect::Interface::Reader> foundInterface;
  kj::Vector<kj::String> served;
  for (auto interface : schema->getInterfaces()) {
    if (interface.getName() == interfaceName) foundInterface = interface;
    for (auto method : interface.getMethods()) {
      served.add(kj::str(interface.getName(), ".", method.getName()));
    }
  }
  kj::Maybe<Introspect::Method::Reader> foundMethod;
  uint64_t interfaceId = 0;
  KJ_IF_MAYBE(interface, foundInterface) {
    interfaceId = interface->getId();
    for (auto method : interface->getMethods()) {
      if (method.getName() == methodName) foundMethod = method;
    }
  }
  Introspect::Method::Reader method;
  KJ_IF_MAYBE(m, foundMethod) {
    method = *m;
  } else {
    fail(EXIT_NOT_FOUND, kj::str("actor '", entry.name, "' serves no ", target, "; it serves: ",
                                 served.empty() ? kj::str("nothing callable")
                                                : kj::strArray(served, ", ")));
  }
  if (method.getParamsType() == 0) {
    fail(EXIT_NOT_FOUND, kj::str(target, " of actor '", entry.name, "' comes without type "
                                 "information (a hand-written server): it cannot be called "
                                 "from the shell"));
  }

  capnp::JsonCodec codec;
  auto paramsType = typeOf(loader, method.getParamsType());
  auto resultsType = typeOf(loader, method.getResultsType());
  auto start = peer->newStart(interfaceId, method.getId());
  decode(codec, paramsType, *start, paramsJson, "the params");

  switch (method.getKind()) {
    case Introspect::Kind::CALL: {
      auto result = co_await peer->call(kj::mv(start));
      printLine(encode(codec, resultsType, *result));
      break;
    }
    case Introspect::Kind::STREAM: {
      auto itemType = typeOf(loader, method.getItemType());
      auto task = co_await peer->open(kj::mv(start), MethodKind::STREAM);
      for (;;) {
        auto item = co_await task->receive();
        KJ_IF_MAYBE(i, item) {
          printLine(encode(codec, itemType, **i));
        } else {
          break;
        }
      }
      co_await task->result();
      break;
    }
    case Introspect::Kind::CONTEXT: {
      auto task = co_await peer->open(kj::mv(start), MethodKind::CONTEXT);
      auto started = co_await task->started();
      printLine(kj::str("{\"started\": ",
                        encode(codec, typeOf(loader, method.getStartedType()), *started), "}"));
      co_await openNursery([&](TaskNursery& both) -> Co<void> {
        both.startSoon([&]() -> Co<void> {
          if (method.getCallerSendsType() != 0) {
            auto itemType = typeOf(loader, method.getCallerSendsType());
            StdinLines lines(session.self().io());
            for (;;) {
              auto line = co_await lines.next();
              KJ_IF_MAYBE(l, line) {
                if (l->size() == 0) continue;
                auto item = task->newItem();
                decode(codec, itemType, *item, *l, "a line of standard input");
                co_await task->send(kj::mv(item));
              } else {
                break;
              }
            }
          }
          co_await task->stop();
        });
        if (method.getCalleeSendsType() != 0) {
          both.startSoon([&]() -> Co<void> {
            auto itemType = typeOf(loader, method.getCalleeSendsType());
            for (;;) {
              auto item = co_await task->receive();
              KJ_IF_MAYBE(i, item) {
                printLine(kj::str("{\"item\": ", encode(codec, itemType, **i), "}"));
              } else {
                break;
              }
            }
          });
        }
        co_return;
      });
      auto result = co_await task->result();
      KJ_IF_MAYBE(r, result) {
        printLine(kj::str("{\"result\": ", encode(codec, resultsType, **r), "}"));
      }
      break;
    }
  }
  co_return EXIT_OK;
}

}  // namespace harrow::cli
