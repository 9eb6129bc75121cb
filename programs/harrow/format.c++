#include "programs/harrow/format.h"

#include <kj/debug.h>
#include <kj/vector.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

namespace harrow::cli {

kj::String jsonString(kj::StringPtr text) {
  kj::Vector<char> out(text.size() + 2);
  out.add('"');
  for (char c : text) {
    switch (c) {
      case '"': out.addAll(kj::StringPtr("\\\"")); break;
      case '\\': out.addAll(kj::StringPtr("\\\\")); break;
      case '\n': out.addAll(kj::StringPtr("\\n")); break;
      case '\r': out.addAll(kj::StringPtr("\\r")); break;
      case '\t': out.addAll(kj::StringPtr("\\t")); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned char>(c));
          out.addAll(kj::StringPtr(escaped));
        } else {
          out.add(c);
        }
    }
  }
  out.add('"');
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

kj::String humanDuration(uint64_t nanos) {
  uint64_t ms = nanos / 1000000;
  if (ms < 1000) return kj::str(ms, "ms");
  uint64_t s = ms / 1000;
  char text[32];
  if (s < 60) {
    snprintf(text, sizeof(text), "%.1fs", ms / 1000.0);
  } else if (s < 3600) {
    snprintf(text, sizeof(text), "%llum%02llus", (unsigned long long)(s / 60),
             (unsigned long long)(s % 60));
  } else if (s < 86400) {
    snprintf(text, sizeof(text), "%lluh%02llum", (unsigned long long)(s / 3600),
             (unsigned long long)(s % 3600 / 60));
  } else {
    snprintf(text, sizeof(text), "%llud%02lluh", (unsigned long long)(s / 86400),
             (unsigned long long)(s % 86400 / 3600));
  }
  return kj::str(text);
}

kj::String humanBytes(uint64_t bytes) {
  char text[32];
  if (bytes < (1u << 20)) {
    snprintf(text, sizeof(text), "%lluK", (unsigned long long)(bytes >> 10));
  } else if (bytes < (1ull << 30)) {
    snprintf(text, sizeof(text), "%.1fM", bytes / double(1 << 20));
  } else {
    snprintf(text, sizeof(text), "%.1fG", bytes / double(1ull << 30));
  }
  return kj::str(text);
}

kj::String seconds(uint64_t nanos) {
  char text[32];
  snprintf(text, sizeof(text), "%.3f", nanos / 1e9);
  return kj::str(text);
}

void printLine(kj::StringPtr text) {
  fwrite(text.begin(), 1, text.size(), stdout);
  fputc('\n', stdout);
  if (fflush(stdout) != 0) {
    // The reader went away (`harrow call ... | head -1`): end as a shell pipeline expects, by
    // SIGPIPE, which the event loop keeps ignored; the actors see the channels close.
    if (errno == EPIPE) {
      signal(SIGPIPE, SIG_DFL);
      raise(SIGPIPE);
    }
    KJ_FAIL_SYSCALL("writing to standard output", errno);
  }
}

}  // namespace harrow::cli
