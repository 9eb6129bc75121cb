// Log lines that say where they come from: every KJ_LOG line in a harrow process is prefixed
// with the actor's name and the task that logged it ("[counter-1 Counter.add#3] ...").
//
// The level comes from --harrow-log=LEVEL or the HARROW_LOG environment variable (debug, info,
// warning, error; default warning); children inherit the environment, so a tree logs alike.
//
// The format: text (the default, as above, through KJ's own logger) or, with
// --harrow-log-format=json / HARROW_LOG_FORMAT=json, one JSON object per line on stderr:
//   {"time":"2026-11-29T10:54:53.123Z","level":"warning","actor":"counter-1","pid":4242,
//    "task":"Counter.add#3","message":"...","file":"runtime/x.c++","line":12}
// (encoded by capnp's JsonCodec: quotes, backslashes and control characters escaped).

#pragma once

#include <harrow/co/log_level.h>

#include <kj/exception.h>
#include <kj/string.h>

namespace harrow {

enum class LogFormat { TEXT, JSON };

// "text" or "json"; throws, saying what is accepted, for anything else.
LogFormat parseLogFormat(kj::StringPtr name);
// HARROW_LOG_FORMAT, or TEXT if unset.
LogFormat logFormatFromEnvironment();

class ActorLog final : public kj::ExceptionCallback {
public:
  // Installs itself for this thread for as long as it lives (KJ callbacks are a stack).
  explicit ActorLog(kj::StringPtr actorName, LogFormat format = logFormatFromEnvironment());

  void logMessage(kj::LogSeverity severity, const char* file, int line, int contextDepth,
                  kj::String&& text) override;

private:
  kj::String actorName;
  LogFormat format;
};

// One JSON log line (without the newline), as ActorLog writes it in JSON mode.
kj::String jsonLogLine(kj::LogSeverity severity, kj::StringPtr actor, kj::StringPtr task,
                       kj::StringPtr message, kj::StringPtr file, int line);

// debugLogging() and HARROW_LOG_DEBUG: <harrow/co/log_level.h>.

// A level name ("debug", "info", "warning", "error") as KJ's severity plus harrow's debug
// logging; throws for an unknown one, naming it.
struct LogLevel {
  kj::LogSeverity severity;
  bool debug;
};
LogLevel parseLogLevel(kj::StringPtr level);

// The level HARROW_LOG names, if set (harrow::main checks it before it starts anything).
kj::Maybe<LogLevel> logLevelFromEnvironment();

// Applies a level name; throws for an unknown one.
void setLogLevel(kj::StringPtr level);

// Applies the level from the environment (HARROW_LOG), if set.
void setLogLevelFromEnvironment();

}  // namespace harrow
