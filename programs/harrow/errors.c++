#include "programs/harrow/errors.h"

#include <harrow/co/errors.h>
#include <harrow/engine/peer.h>

namespace harrow::cli {
namespace {

// Internal tags, stripped before printing.
constexpr kj::StringPtr USAGE_TAG = "harrow-cli.usage: "_kj;
constexpr kj::StringPtr NOT_FOUND_TAG = "harrow-cli.not-found: "_kj;
constexpr kj::StringPtr REMOTE_TAG = "harrow-cli.remote: "_kj;
constexpr kj::StringPtr REFUSED_TAG = "harrow-cli.refused: "_kj;

kj::StringPtr tagOf(ExitCode code) {
  switch (code) {
    case EXIT_USAGE: return USAGE_TAG;
    case EXIT_NOT_FOUND: return NOT_FOUND_TAG;
    case EXIT_REFUSED: return REFUSED_TAG;
    case EXIT_OK:
    case EXIT_REMOTE_ERROR: break;
  }
  return REMOTE_TAG;
}

}  // namespace

void fail(ExitCode code, kj::StringPtr message) {
  kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                        kj::str(tagOf(code), message)));
}

ExitCode exitCodeOf(const kj::Exception& e) {
  kj::StringPtr text = e.getDescription();
  if (text.startsWith(USAGE_TAG)) return EXIT_USAGE;
  if (text.startsWith(NOT_FOUND_TAG)) return EXIT_NOT_FOUND;
  if (text.startsWith(REFUSED_TAG)) return EXIT_REFUSED;
  if (text.startsWith(REMOTE_TAG)) return EXIT_REMOTE_ERROR;
  switch (errorKind(e)) {
    case ErrorKind::AUTHENTICATION_FAILED: return EXIT_REFUSED;
    case ErrorKind::TRANSPORT_CLOSED:
    case ErrorKind::TOO_SLOW:
    case ErrorKind::UNKNOWN_METHOD:
    case ErrorKind::ACTOR_DIED:
    case ErrorKind::NO_REGISTRY:
      return EXIT_NOT_FOUND;
    default:
      return EXIT_REMOTE_ERROR;
  }
}

kj::StringPtr messageOf(const kj::Exception& e) {
  kj::StringPtr text = e.getDescription();
  for (auto tag : {USAGE_TAG, NOT_FOUND_TAG, REMOTE_TAG, REFUSED_TAG}) {
    if (text.startsWith(tag)) return text.slice(tag.size());
  }
  return text;
}

}  // namespace harrow::cli
