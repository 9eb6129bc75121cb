// Output helpers for the `harrow` command: JSON strings, human-readable sizes and durations,
// and writing whole lines to standard output.

#pragma once

#include <kj/string.h>

#include <stdint.h>

namespace harrow::cli {

// `text` as a JSON string literal, quotes included.
kj::String jsonString(kj::StringPtr text);

// "950ms", "12.3s", "4m05s", "2h03m", "3d04h".
kj::String humanDuration(uint64_t nanos);

// "812K", "5.1M", "1.2G".
kj::String humanBytes(uint64_t bytes);

// Seconds with millisecond precision, for JSON: "12.345".
kj::String seconds(uint64_t nanos);

// Writes `text` and a newline to standard output and flushes (blocking: a reader that does not
// keep up slows the command down, which for a stream means the actor waits for credit).
void printLine(kj::StringPtr text);

}  // namespace harrow::cli
