// harrow stacks: each actor's open tasks (Introspect.tasks), asked concurrently.

#include "programs/harrow/commands.h"
#include "programs/harrow/errors.h"
#include "programs/harrow/format.h"

#include <harrow/co/nursery.h>

#include <stdio.h>

namespace harrow::cli {
namespace {

using Introspect = introspect::Introspect;

struct Stack {
  RegisteredActor entry;
  kj::Maybe<Received<Introspect::TasksResults>> tasks;
  kj::String error;
};

Co<void> ask(Session& session, Stack& stack) {
  KJ_IF_MAYBE(e, co_await errorOf([&]() -> Co<void> {
    Peer* peer = co_await session.connect(stack.entry);
    IntrospectActor::Portal portal(*peer);
    stack.tasks = co_await session.bounded<Received<Introspect::TasksResults>>(
        kj::str("actor '", stack.entry.name, "'"), [&]() { return portal.tasks(); });
  })) {
    stack.error = kj::str(messageOf(*e));
  }
}

kj::StringPtr kindName(Introspect::Kind kind) {
  switch (kind) {
    case Introspect::Kind::CALL: return "call";
    case Introspect::Kind::STREAM: return "stream";
    case Introspect::Kind::CONTEXT: return "context";
  }
  return "task";
}

}  // namespace

Co<int> stacks(Session& session) {
  kj::Vector<RegisteredActor> chosen;
  if (session.opts().all) {
    for (auto& entry : co_await session.entries()) chosen.add(kj::mv(entry));
  } else {
    for (auto& name : session.opts().args) {
      for (auto& entry : co_await session.resolve(name)) chosen.add(kj::mv(entry));
    }
  }
  auto all = kj::heapArrayBuilder<Stack>(chosen.size());
  for (auto& entry : chosen) all.add(Stack{kj::mv(entry), nullptr, kj::str()});
  auto stacksOf = all.finish();
  co_await openNursery([&](TaskNursery& asks) -> Co<void> {
    for (auto& stack : stacksOf) {
      asks.startSoon([&session, &stack]() { return ask(session, stack); });
    }
    co_return;
  });

  bool anyError = false;
  if (session.opts().json) {
    kj::Vector<kj::String> actors;
    for (auto& stack : stacksOf) {
      kj::Vector<kj::String> tasks;
      KJ_IF_MAYBE(received, stack.tasks) {
        for (auto task : (*received)->getTasks()) {
          tasks.add(kj::str(
              "{\"callId\": ", task.getCallId(), ", \"direction\": \"",
              task.getIncoming() ? "in" : "out", "\", \"kind\": \"", kindName(task.getKind()),
              "\", \"method\": ", jsonString(task.getMethod()), ", \"state\": ",
              jsonString(task.getState()), ", \"peer\": {\"name\": ",
              jsonString(task.getPeerName()),
              ", \"uuid\": \"", hex(task.getPeerUuid()), "\", \"role\": ",
              jsonString(task.getPeerRole()), "}, \"ageSeconds\": ", seconds(task.getAgeNanos()),
              "}"));
        }
      } else {
        anyError = true;
      }
      actors.add(kj::str(
          "{\"name\": ", jsonString(stack.entry.name), ", \"uuid\": \"", hex(stack.entry.uuid),
          "\", \"pid\": ", stack.entry.pid, ", \"tasks\": [", kj::strArray(tasks, ", "),
          "], \"error\": ", stack.tasks == nullptr ? jsonString(stack.error) : kj::str("null"),
          "}"));
    }
    printLine(kj::str("{\"actors\": [", kj::strArray(actors, ",\n  "), "]}"));
  } else {
    bool first = true;
    for (auto& stack : stacksOf) {
      if (!first) printLine("");
      first = false;
      printLine(kj::str(stack.entry.name, " (", hex(stack.entry.uuid).slice(0, 8), ") pid ",
                        stack.entry.pid));
      KJ_IF_MAYBE(received, stack.tasks) {
        auto tasks = (*received)->getTasks();
        if (tasks.size() == 0) printLine("  (no open tasks)");
        for (auto task : tasks) {
          char text[512];
          kj::String peer = kj::str(task.getIncoming() ? "from " : "to ", task.getPeerRole(), " ",
                                    task.getPeerName(), " (", hex(task.getPeerUuid()).slice(0, 8),
                                    ")");
          kj::String method = kj::str(task.getMethod().size() > 0 ? task.getMethod() : "?", "#",
                                      task.getCallId());
          snprintf(text, sizeof(text), "  %-3s %-7s %-28s %-24s %8s  %s",
                   task.getIncoming() ? "in" : "out", kindName(task.getKind()).cStr(),
                   method.cStr(), task.getState().cStr(),
                   humanDuration(task.getAgeNanos()).cStr(), peer.cStr());
          printLine(text);
        }
      } else {
        anyError = true;
        printLine(kj::str("  (no answer: ", stack.error, ")"));
      }
    }
  }
  co_return anyError ? EXIT_NOT_FOUND : EXIT_OK;
}

}  // namespace harrow::cli
