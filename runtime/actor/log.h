// Log lines that say where they come from: every KJ_LOG line in a harrow process is prefixed
// with the actor's name and the task that logged it ("[counter-1 Counter.add#3] ...").
//
// The level comes from --harrow-log=LEVEL or the HARROW_LOG environment variable (debug, info,
// warning, error; default warning); children inherit the environment, so a tree logs alike.

#pragma once

#include <harrow/co/log_level.h>

#include <kj/exception.h>
#include <kj/string.h>

namespace harrow {

class ActorLog final : public kj::ExceptionCallback {
public:
  // Installs itself for this thread for as long as it lives (KJ callbacks are a stack).
  explicit ActorLog(kj::StringPtr actorName);

  void logMessage(kj::LogSeverity severity, const char* file, int line, int contextDepth,
                  kj::String&& text) override;

private:
  kj::String actorName;
};

// debugLogging() and HARROW_LOG_DEBUG: <harrow/co/log_level.h>.

// Applies a level name ("debug", "info", "warning", "error"); throws for an unknown one.
void setLogLevel(kj::StringPtr level);

// The level from the environment (HARROW_LOG), if set.
void setLogLevelFromEnvironment();

}  // namespace harrow
