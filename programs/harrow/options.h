// The `harrow` command line: global options, one command, its arguments; help texts.

#pragma once

#include <kj/common.h>
#include <kj/string.h>
#include <kj/time.h>
#include <kj/vector.h>

namespace harrow::cli {

// Exit statuses (docs/REFERENCE.md, "The harrow command").
enum ExitCode : int {
  EXIT_OK = 0,
  EXIT_REMOTE_ERROR = 1,  // the actor answered with an error (the method raised, ...)
  EXIT_USAGE = 2,         // a bad command line: unknown command or option, bad JSON, ...
  EXIT_NOT_FOUND = 3,     // no such actor, interface or method; the registry or actor unreachable
  EXIT_REFUSED = 4,       // the handshake refused us: the cookie is not the tree's
};

struct Options {
  kj::String command;               // "ps", "call", "stacks", "cancel", "help"
  kj::Vector<kj::String> args;      // the command's positional arguments
  kj::String registry;              // --registry, else HARROW_REGISTRY, else the default
  kj::String cookie;                // --cookie, else HARROW_COOKIE, else the runtime directory's
  bool json = false;                // --json
  bool all = false;                 // stacks --all
  bool help = false;                // -h, --help (of the command, if one is given)
  bool version = false;             // --version
  kj::Duration timeout = 5 * kj::SECONDS;  // --timeout=SECONDS
  kj::Duration grace = 5 * kj::SECONDS;    // cancel --grace=SECONDS
};

// Parses argv; throws a usage error (exitCodeOf() == EXIT_USAGE) saying what is wrong.
Options parseOptions(int argc, char** argv);

// "harrow 0.1.0 (wire protocol 1)\n": what --version prints.
kj::String versionText();

// The overview (no command) or one command's help.
kj::StringPtr helpText(kj::StringPtr command);

}  // namespace harrow::cli
