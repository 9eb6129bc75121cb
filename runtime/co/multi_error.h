// MultiError: several concurrent failures raised together (trio's MultiError).
//
// A KJ promise can only carry a kj::Exception, so a MultiError is one: its description lists
// every error, numbered and indented, and failuresIn() gives them back one by one.

#pragma once

#include <kj/array.h>
#include <kj/exception.h>

namespace harrow {

// Combines `errors` (two or more) into one exception; a single error is returned unchanged.
kj::Exception makeMultiError(kj::Array<kj::Exception> errors);

bool isMultiError(const kj::Exception& exception);

// The errors a MultiError holds, as text: each one's description, one level deep (the
// exception's own if it is not one). For printing; to handle errors, use failuresIn(), the
// accessor the documentation names.
kj::Array<kj::String> errorsIn(const kj::Exception& exception);

// Every single failure inside `exception`, MultiErrors within MultiErrors unnested, each once, as
// an exception of its own (a MultiError from another actor arrives as one of these already:
// remoteErrorInfo() then gives each failure's origin and relay path). The exception itself if it
// is no MultiError.
kj::Array<kj::Exception> failuresIn(const kj::Exception& exception);

}  // namespace harrow
