#include <harrow/actor/log.h>

#include <harrow/co/cancel_scope.h>

#include <kj/debug.h>

#include <stdlib.h>
#include <unistd.h>

namespace harrow {

ActorLog::ActorLog(kj::StringPtr actorName) : actorName(kj::heapString(actorName)) {}

void ActorLog::logMessage(kj::LogSeverity severity, const char* file, int line,
                          int contextDepth, kj::String&& text) {
  auto prefixed = kj::str("[", actorName, " ", currentTaskName(), "] ", text);
  next.logMessage(severity, file, line, contextDepth, kj::mv(prefixed));
}

void setLogLevel(kj::StringPtr level) {
  kj::LogSeverity severity;
  setDebugLogging(level == "debug");
  if (level == "debug") {
    severity = kj::LogSeverity::INFO;  // the most KJ can show; debugLogging() adds harrow's
  } else if (level == "info") {
    severity = kj::LogSeverity::INFO;
  } else if (level == "warning") {
    severity = kj::LogSeverity::WARNING;
  } else if (level == "error") {
    severity = kj::LogSeverity::ERROR;
  } else {
    KJ_FAIL_REQUIRE("unknown log level (use debug, info, warning or error)", level);
  }
  kj::_::Debug::setLogLevel(severity);
}

void setLogLevelFromEnvironment() {
  const char* level = getenv("HARROW_LOG");
  if (level != nullptr && *level != '\0') setLogLevel(level);
}

}  // namespace harrow
