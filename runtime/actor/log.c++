#include <harrow/actor/log.h>

#include <harrow/co/cancel_scope.h>

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <kj/debug.h>
#include <kj/io.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

namespace harrow {

LogFormat parseLogFormat(kj::StringPtr name) {
  if (name == "text") return LogFormat::TEXT;
  if (name == "json") return LogFormat::JSON;
  KJ_FAIL_REQUIRE("unknown log format (use text or json)", name);
}

LogFormat logFormatFromEnvironment() {
  const char* name = getenv("HARROW_LOG_FORMAT");
  if (name == nullptr || *name == '\0') return LogFormat::TEXT;
  return parseLogFormat(name);
}

ActorLog::ActorLog(kj::StringPtr actorName, LogFormat format)
    : actorName(kj::heapString(actorName)), format(format) {}

namespace {

kj::StringPtr levelName(kj::LogSeverity severity) {
  switch (severity) {
    case kj::LogSeverity::INFO: return "info";
    case kj::LogSeverity::WARNING: return "warning";
    case kj::LogSeverity::ERROR: return "error";
    case kj::LogSeverity::FATAL: return "fatal";
    case kj::LogSeverity::DBG: return "debug";
  }
  return "info";
}

// "2026-11-29T10:54:53.123Z"
kj::String utcNow() {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  struct tm parts;
  gmtime_r(&now.tv_sec, &parts);
  char buffer[40];
  size_t n = strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%S", &parts);
  snprintf(buffer + n, sizeof(buffer) - n, ".%03ldZ", now.tv_nsec / 1000000);
  return kj::heapString(buffer);
}

}  // namespace

kj::String jsonLogLine(kj::LogSeverity severity, kj::StringPtr actor, kj::StringPtr task,
                       kj::StringPtr message, kj::StringPtr file, int line) {
  capnp::MallocMessageBuilder builder(256);
  auto fields = builder.initRoot<capnp::JsonValue>().initObject(8);
  auto text = [&](uint i, kj::StringPtr name, kj::StringPtr value) {
    fields[i].setName(name);
    fields[i].initValue().setString(value);
  };
  auto time = utcNow();
  text(0, "time", time);
  text(1, "level", levelName(severity));
  text(2, "actor", actor);
  fields[3].setName("pid");
  fields[3].initValue().setNumber(getpid());
  text(4, "task", task);
  text(5, "message", message);
  text(6, "file", file);
  fields[7].setName("line");
  fields[7].initValue().setNumber(line);
  capnp::JsonCodec codec;
  return codec.encodeRaw(builder.getRoot<capnp::JsonValue>());
}

void ActorLog::logMessage(kj::LogSeverity severity, const char* file, int line,
                          int contextDepth, kj::String&& text) {
  if (format == LogFormat::JSON) {
    size_t length = text.size();
    while (length > 0 && text[length - 1] == '\n') --length;  // the line ends the record
    auto json = kj::str(jsonLogLine(severity, actorName, currentTaskName(),
                                    kj::heapString(text.begin(), length),
                                    file != nullptr ? file : "", line), '\n');
    // One write per line: lines of a tree's actors sharing a stderr do not interleave.
    kj::FdOutputStream(STDERR_FILENO).write(json.begin(), json.size());
    return;
  }
  auto prefixed = kj::str("[", actorName, " ", currentTaskName(), "] ", text);
  next.logMessage(severity, file, line, contextDepth, kj::mv(prefixed));
}

LogLevel parseLogLevel(kj::StringPtr level) {
  // "debug" is the most KJ can show (INFO); debugLogging() adds harrow's own.
  if (level == "debug") return {kj::LogSeverity::INFO, true};
  if (level == "info") return {kj::LogSeverity::INFO, false};
  if (level == "warning") return {kj::LogSeverity::WARNING, false};
  if (level == "error") return {kj::LogSeverity::ERROR, false};
  KJ_FAIL_REQUIRE("unknown log level (use debug, info, warning or error)", level);
}

kj::Maybe<LogLevel> logLevelFromEnvironment() {
  const char* level = getenv("HARROW_LOG");
  if (level == nullptr || *level == '\0') return nullptr;
  return parseLogLevel(level);
}

void setLogLevel(kj::StringPtr level) {
  LogLevel parsed = parseLogLevel(level);
  setDebugLogging(parsed.debug);
  kj::_::Debug::setLogLevel(parsed.severity);
}

void setLogLevelFromEnvironment() {
  KJ_IF_MAYBE (level, logLevelFromEnvironment()) {
    setDebugLogging(level->debug);
    kj::_::Debug::setLogLevel(level->severity);
  }
}

}  // namespace harrow
