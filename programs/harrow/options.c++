#include "programs/harrow/options.h"
#include "programs/harrow/errors.h"

#include <harrow/actor/cookie.h>
#include <harrow/co/version.h>
#include <harrow/discovery/discovery.h>
#include <harrow/wire.capnp.h>

#include <stdlib.h>

namespace harrow::cli {
namespace {

constexpr kj::StringPtr OVERVIEW = R"(usage: harrow [OPTIONS] COMMAND [ARGS...]

Looks at and acts on a running harrow tree as one of its peers: it reads the tree's cookie,
asks the tree's registry who is there, and talks to each actor through the introspection
interface every actor serves (docs/PROTOCOL.md, "Introspection").

Commands:
  ps                         the live tree: every registered actor under its parent
  call NAME Iface.method [JSON]
                             a call, stream or context with JSON params; prints JSON
  stacks NAME... | --all     each actor's open tasks: kind, method, peer, state, age
  cancel NAME                cancel an actor gracefully, SIGKILL after the grace period
  help [COMMAND]             this text, or a command's

Options (before or after the command):
  --registry=ADDR    the tree's registry (default: $HARROW_REGISTRY, else
                     unix:<runtime dir>/registry.sock)
  --cookie=PATH      the tree's cookie (default: $HARROW_COOKIE, else <runtime dir>/cookie)
  --json             output for scripts: one JSON document (call: always JSON)
  --timeout=SECONDS  bound on connecting and on each lookup (default 5; not on the call itself)
  -h, --help         help
  --version          harrow's version and its wire protocol's

NAME is an actor's registered name or its uuid (hex; a prefix of 8 digits or more will do).

Exit status: 0 done; 1 the actor answered with an error; 2 bad usage (command line, JSON);
3 not found or unreachable (actor, method, registry); 4 refused (not the tree's cookie).
)"_kj;

constexpr kj::StringPtr PS_HELP = R"(usage: harrow ps [--json]

Every actor registered in the tree's registry, each indented under its parent, asked
concurrently for its pid, parent, uptime, tasks in flight and resident memory (VmRSS).
An actor that does not answer is listed with the reason. --json prints
{"actors": [{name, uuid, pid, parent, parentName, depth, addresses, uptimeSeconds,
tasksInFlight, residentBytes, channels, error}], "elapsedMs": N}, parents before children.
)"_kj;

constexpr kj::StringPtr CALL_HELP = R"(usage: harrow call NAME Interface.method [JSON]

Calls a method of actor NAME with JSON params (default {}), using the schema the actor sends
(no stubs needed); capnp's JSON mapping applies (64-bit integers print as strings).
  a call      prints the results, one line
  a stream    prints each item on a line of its own, as it arrives
  a context   prints {"started": ...}; sends each line of standard input as an item of the
              caller's stream (until end of input), prints {"item": ...} for each item the
              actor sends, then {"result": ...}
Exit status 1 if the method raised (its error is printed on standard error).
)"_kj;

constexpr kj::StringPtr STACKS_HELP = R"(usage: harrow stacks NAME... | --all [--json]

The tasks open on each channel of each named actor (all of them with --all): calls, streams
and contexts, in and out, with the peer, its role (parent, child or peer), the task's state
and how long it has been open (tractor's SIGUSR1 dump, over the wire).
)"_kj;

constexpr kj::StringPtr CANCEL_HELP = R"(usage: harrow cancel NAME [--grace=SECONDS] [--json]

Sends the actor cancelActor (as a parent would): it cancels its tasks and its own children,
deregisters and exits; its parent reaps it. If its process has not exited after the grace
period (default 5 s), it is killed with SIGKILL, by pidfd (never another process that reused
the pid), and only if every address of the actor is on this host (unix sockets, loopback).
)"_kj;

kj::StringPtr valueOf(kj::StringPtr arg, kj::StringPtr name, int& i, int argc, char** argv) {
  // "--name=VALUE" or "--name VALUE"
  if (arg.size() > name.size() && arg[name.size()] == '=') return arg.slice(name.size() + 1);
  if (i + 1 >= argc) fail(EXIT_USAGE, kj::str(name, " needs a value"));
  return argv[++i];
}

kj::Duration seconds(kj::StringPtr name, kj::StringPtr text) {
  char* end = nullptr;
  double value = strtod(text.cStr(), &end);
  if (text.size() == 0 || *end != '\0' || !(value > 0) || value > 86400) {
    fail(EXIT_USAGE, kj::str(name, " wants a number of seconds (0 < s <= 86400), not '", text,
                             "'"));
  }
  return static_cast<int64_t>(value * 1e9) * kj::NANOSECONDS;
}

bool isOption(kj::StringPtr arg, kj::StringPtr name) {
  return arg == name || (arg.startsWith(name) && arg[name.size()] == '=');
}

}  // namespace

Options parseOptions(int argc, char** argv) {
  Options options;
  bool onlyArgs = false;
  for (int i = 1; i < argc; ++i) {
    kj::StringPtr arg = argv[i];
    if (onlyArgs || arg.size() == 0 || arg[0] != '-' || arg == "-") {
      if (options.command.size() == 0) {
        options.command = kj::str(arg);
      } else {
        options.args.add(kj::str(arg));
      }
    } else if (arg == "--") {
      onlyArgs = true;
    } else if (arg == "-h" || arg == "--help") {
      options.help = true;
    } else if (arg == "--version") {
      options.version = true;
    } else if (arg == "--json") {
      options.json = true;
    } else if (arg == "--all") {
      options.all = true;
    } else if (isOption(arg, "--registry")) {
      options.registry = kj::str(valueOf(arg, "--registry", i, argc, argv));
    } else if (isOption(arg, "--cookie")) {
      options.cookie = kj::str(valueOf(arg, "--cookie", i, argc, argv));
    } else if (isOption(arg, "--timeout")) {
      options.timeout = seconds("--timeout", valueOf(arg, "--timeout", i, argc, argv));
    } else if (isOption(arg, "--grace")) {
      options.grace = seconds("--grace", valueOf(arg, "--grace", i, argc, argv));
    } else {
      fail(EXIT_USAGE, kj::str("unknown option '", arg, "' (harrow --help lists them)"));
    }
  }
  if (options.command == "help") {
    options.help = true;
    options.command = options.args.empty() ? kj::str() : kj::mv(options.args[0]);
    options.args.clear();
  }
  if (options.help || options.version) return options;

  if (options.command.size() == 0) fail(EXIT_USAGE, "no command (harrow --help lists them)");
  auto expect = [&](size_t least, size_t most, kj::StringPtr shape) {
    if (options.args.size() < least || options.args.size() > most) {
      fail(EXIT_USAGE, kj::str("usage: harrow ", options.command, " ", shape));
    }
  };
  if (options.command == "ps") {
    expect(0, 0, "[--json]");
  } else if (options.command == "call") {
    expect(2, 3, "NAME Interface.method [JSON]");
  } else if (options.command == "stacks") {
    if (options.all) {
      expect(0, 0, "NAME... | --all");
    } else {
      expect(1, 1000, "NAME... | --all");
    }
  } else if (options.command == "cancel") {
    expect(1, 1, "NAME [--grace=SECONDS]");
  } else {
    fail(EXIT_USAGE, kj::str("unknown command '", options.command,
                             "' (ps, call, stacks, cancel, help)"));
  }

  if (options.registry.size() == 0) {
    const char* env = getenv("HARROW_REGISTRY");
    options.registry = env != nullptr && *env != '\0' ? kj::str(env) : defaultRegistryAddress();
  }
  if (options.registry == "none") fail(EXIT_USAGE, "the registry is 'none': give --registry=ADDR");
  if (options.cookie.size() == 0) options.cookie = cookiePathFromEnvironment();
  return options;
}

kj::String versionText() {
  // The protocol version is the one every handshake checks: two programs whose numbers differ
  // refuse each other's connections (docs/PROTOCOL.md, the hello).
  return kj::str("harrow ", VERSION, " (wire protocol ", wire::PROTOCOL_VERSION, ")\n");
}

kj::StringPtr helpText(kj::StringPtr command) {
  if (command == "ps") return PS_HELP;
  if (command == "call") return CALL_HELP;
  if (command == "stacks") return STACKS_HELP;
  if (command == "cancel") return CANCEL_HELP;
  return OVERVIEW;
}

}  // namespace harrow::cli
