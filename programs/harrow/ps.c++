// harrow ps: the registry's entries, each asked concurrently for Introspect.info, printed as a
// tree (children under their parent).

#include "programs/harrow/commands.h"
#include "programs/harrow/errors.h"
#include "programs/harrow/format.h"

#include <harrow/co/nursery.h>

#include <kj/map.h>

#include <algorithm>

#include <stdio.h>
#include <string.h>

namespace harrow::cli {
namespace {

struct Row {
  RegisteredActor entry;
  kj::String uuid;  // hex
  kj::Maybe<Received<introspect::Introspect::InfoResults>> info;
  kj::String error;  // why it did not answer
  kj::String parentUuid;
  kj::Vector<Row*> children;
  uint32_t depth = 0;
};

Co<void> ask(Session& session, Row& row) {
  KJ_IF_MAYBE (e, co_await errorOf([&]() -> Co<void> {
                 Peer* peer = co_await session.connect(row.entry);
                 IntrospectActor::Portal portal(*peer);
                 row.info = co_await session.bounded<Received<introspect::Introspect::InfoResults>>(
                     kj::str("actor '", row.entry.name, "'"), [&]() { return portal.info(); });
               })) {
    row.error = kj::str(messageOf(*e));
  }
}

kj::String spaces(size_t n) {
  kj::String text = kj::heapString(n);
  memset(text.begin(), ' ', n);
  return text;
}

// Siblings in pid order: the order their parent spawned them in, on one host, whatever order
// they happened to register in (registration races; the first spawned is not always first).
void order(Row& row, uint32_t depth, kj::Vector<Row*>& out) {
  row.depth = depth;
  out.add(&row);
  std::stable_sort(row.children.begin(), row.children.end(),
                   [](const Row* a, const Row* b) { return a->entry.pid < b->entry.pid; });
  for (Row* child : row.children) order(*child, depth + 1, out);
}

// A row per registry entry, in the registry's order.
kj::Array<Row> rowsOf(kj::Array<RegisteredActor> entries) {
  auto rows = kj::heapArrayBuilder<Row>(entries.size());
  for (auto& entry : entries) {
    Row row;
    row.uuid = hex(entry.uuid);
    row.entry = kj::mv(entry);
    rows.add(kj::mv(row));
  }
  return rows.finish();
}

// Every actor at once: one connect, handshake and call each, all on this event loop.
Co<void> askAll(Session& session, kj::ArrayPtr<Row> rows) {
  co_await openNursery([&](TaskNursery& asks) -> Co<void> {
    for (auto& row : rows) asks.startSoon([&session, &row]() { return ask(session, row); });
    co_return;
  });
}

// The tree: children under their parent (by the parent uuid each reported), siblings in pid
// order (see order()); an actor whose parent is not listed, or that did not answer, is a root.
kj::Vector<Row*> asTree(kj::ArrayPtr<Row> rows) {
  kj::HashMap<kj::StringPtr, Row*> byUuid;
  for (auto& row : rows) byUuid.upsert(row.uuid, &row, [](Row*&, Row*&&) {});
  kj::Vector<Row*> roots;
  for (auto& row : rows) {
    KJ_IF_MAYBE (info, row.info) {
      row.parentUuid = hex((*info)->getInfo().getParentUuid());
    }
    Row* parent = nullptr;
    if (row.parentUuid.size() > 0) {
      KJ_IF_MAYBE (p, byUuid.find(row.parentUuid)) parent = *p;
    }
    if (parent != nullptr && parent != &row) {
      parent->children.add(&row);
    } else {
      roots.add(&row);
    }
  }
  kj::Vector<Row*> ordered;
  for (Row* root : roots) order(*root, 0, ordered);
  return ordered;
}

// One actor as a JSON object (--json): what it answered, or why it did not.
kj::String jsonOf(const Row& row) {
  kj::Vector<kj::String> addresses;
  for (auto& a : row.entry.addresses) addresses.add(jsonString(a));
  kj::String fields;
  KJ_IF_MAYBE (received, row.info) {
    auto info = (*received)->getInfo();
    fields = kj::str(", \"parentName\": ", jsonString(info.getParentName()),
                     ", \"uptimeSeconds\": ", seconds(info.getUptimeNanos()),
                     ", \"tasksInFlight\": ", info.getTasksInFlight(),
                     ", \"residentBytes\": ", info.getResidentBytes(),
                     ", \"channels\": ", info.getChannels(),
                     ", \"host\": ", jsonString(info.getHost()), ", \"error\": null");
  } else {
    fields = kj::str(", \"error\": ", jsonString(row.error));
  }
  return kj::str("{\"name\": ", jsonString(row.entry.name), ", \"uuid\": \"", row.uuid,
                 "\", \"pid\": ", row.entry.pid, ", \"parent\": ",
                 row.parentUuid.size() > 0 ? jsonString(row.parentUuid) : kj::str("null"),
                 ", \"depth\": ", row.depth, ", \"addresses\": [", kj::strArray(addresses, ", "),
                 "]", fields, "}");
}

void printJson(kj::ArrayPtr<Row* const> ordered, kj::Duration elapsed) {
  kj::Vector<kj::String> items;
  for (const Row* row : ordered) items.add(jsonOf(*row));
  printLine(kj::str("{\"actors\": [", kj::strArray(items, ",\n  "),
                    "], \"elapsedMs\": ", elapsed / kj::MILLISECONDS, "}"));
}

// The columns after the name: what the actor answered, or why it did not.
kj::String columnsOf(const Row& row) {
  char text[256];
  KJ_IF_MAYBE (received, row.info) {
    auto info = (*received)->getInfo();
    kj::StringPtr address = row.entry.addresses.size() > 0 ? row.entry.addresses[0].asPtr() : "-";
    snprintf(text, sizeof(text), "%-8.8s %-7u %8s %6u %8s  %-16s %s", row.uuid.cStr(),
             row.entry.pid, humanDuration(info.getUptimeNanos()).cStr(), info.getTasksInFlight(),
             humanBytes(info.getResidentBytes()).cStr(), info.getHost().cStr(), address.cStr());
  } else {
    snprintf(text, sizeof(text), "%-8.8s %-7u  (no answer: %s)", row.uuid.cStr(), row.entry.pid,
             row.error.cStr());
  }
  return kj::str(text);
}

// Human output: the name indented by depth, then aligned columns.
void printTable(kj::ArrayPtr<Row* const> ordered) {
  size_t nameWidth = 4;
  for (const Row* row : ordered) {
    nameWidth = kj::max(nameWidth, row->depth * 2 + row->entry.name.size());
  }
  auto line = [&](kj::StringPtr name, uint32_t depth, kj::StringPtr rest) {
    kj::String padded = kj::str(spaces(depth * 2), name);
    printLine(kj::str(padded, spaces(nameWidth - padded.size() + 2), rest));
  };
  char header[160];
  snprintf(header, sizeof(header), "%-8s %-7s %8s %6s %8s  %-16s %s", "UUID", "PID", "UPTIME",
           "TASKS", "RSS", "HOST", "ADDRESS");
  line("NAME", 0, header);
  for (const Row* row : ordered) line(row->entry.name, row->depth, columnsOf(*row));
}

}  // namespace

Co<int> ps(Session& session) {
  auto started = kj::systemPreciseMonotonicClock().now();
  auto rows = rowsOf(co_await session.entries());
  co_await askAll(session, rows);
  auto elapsed = kj::systemPreciseMonotonicClock().now() - started;

  kj::Vector<Row*> ordered = asTree(rows);
  if (session.opts().json) {
    printJson(ordered, elapsed);
  } else {
    printTable(ordered);
  }
  co_return EXIT_OK;
}

}  // namespace harrow::cli
