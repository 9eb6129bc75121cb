// The Worker actor of the supervision tests (worker.capnp), linked into the test binary and into
// tree_program, which both register it as "worker".
//
// Every worker logs what happens to it to the file named by $SUP_LOG (inherited by every process
// of a tree), one line per event: "<actor name> <pid> <event>". Events: "started" (the actor
// runs its implementation), "cancel-actor received" (its parent asked it to stop) or "cancelled
// without cancel-actor" (e.g. its parent's channel was lost), "<method> ended: returned |
// cancelled | failed: ...", "blocking", and "exit" (the actor is torn down, about to exit).
// Tests read it after the fact: who existed (pids of grandchildren included) and how each ended.

#pragma once

#include <harrow/actor/actor.h>

#include <stdint.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace sup {

constexpr const char* LOG_ENV = "SUP_LOG";

void registerWorker(harrow::Implementations& implementations);

// Where sup.Failed errors are raised (Worker.fail and failing leaves).
extern const char* const FAIL_FILE;
extern const uint32_t FAIL_LINE;

struct LogEntry {
  std::string actor;
  pid_t pid;
  std::string event;
};

std::vector<LogEntry> readLog(const std::string& path);

// Appends one event of this process to the log, if $SUP_LOG is set.
void logEvent(kj::StringPtr actor, kj::StringPtr event);

}  // namespace sup
