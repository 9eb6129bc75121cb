// harrow's "debug" log level, below KJ's INFO. Lives in the lowest layer so that every layer can
// log at it; runtime/actor/log.h sets it from --harrow-log / HARROW_LOG.

#pragma once

#include <kj/debug.h>

namespace harrow {

// Whether harrow's "debug" level is on. KJ has no level below INFO (its DBG severity is printed
// at every level), so debug lines go through HARROW_LOG_DEBUG, which checks this first.
bool debugLogging();
void setDebugLogging(bool on);

#define HARROW_LOG_DEBUG(...)                                      \
  do {                                                             \
    if (::harrow::debugLogging()) KJ_LOG(INFO, ##__VA_ARGS__);     \
  } while (false)

}  // namespace harrow
