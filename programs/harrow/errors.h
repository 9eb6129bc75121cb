// The `harrow` command's failures and the exit status each one gives.

#pragma once

#include "programs/harrow/options.h"

#include <kj/exception.h>

namespace harrow::cli {

// A failure of the command itself (not one from harrow's runtime): its text, and the exit status
// it gives. Thrown as a kj::Exception whose description starts with the status's tag.
[[noreturn]] void fail(ExitCode code, kj::StringPtr message);

// The exit status for any failure: the command's own (fail()), or harrow's error kinds
// (authentication failed: EXIT_REFUSED; transport closed, too slow, unknown method, no such
// actor: EXIT_NOT_FOUND; anything the actor raised: EXIT_REMOTE_ERROR).
ExitCode exitCodeOf(const kj::Exception& e);

// What to print for a failure: the description without the command's internal tag.
kj::StringPtr messageOf(const kj::Exception& e);

}  // namespace harrow::cli
