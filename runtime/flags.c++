#include <harrow/flags.h>

#include <harrow/actor/busy_poll.h>
#include <harrow/actor/log.h>
#include <harrow/engine/peer.h>
#include <harrow/spawn/forkserver.h>

#include <kj/vector.h>

#include <algorithm>

#include <stdlib.h>

namespace harrow {
namespace {

void checkLogLevel() {
  logLevelFromEnvironment();
}
void checkLogFormat() {
  logFormatFromEnvironment();
}
void checkMaxMessage() {
  defaultMaxMessageBytes();
}
void checkBusyPoll() {
  busyPollFromEnvironment();
}
void checkSpawnBackend() {
  processSpawnBackend();
}

// docs/REFERENCE.md's settings table, row for row (its last column, what each does at length,
// is the document's own).
const Setting SETTINGS[] = {
    {"--harrow-log", "LEVEL", "HARROW_LOG", "`debug`, `info`, `warning`, `error` (`warning`)",
     "log level of the whole tree", Parse::VALUE, checkLogLevel},
    {"--harrow-log-format", "FMT", "HARROW_LOG_FORMAT", "`text`, `json` (`text`)",
     "json: one JSON object per log line", Parse::VALUE, checkLogFormat},
    {"--harrow-metrics", "ADDR", "HARROW_METRICS",
     "`HOST:PORT`, `tcp:HOST:PORT`, or `PORT` alone (off)",
     "every actor counts; the root serves the tree's metrics at http://ADDR/metrics", Parse::VALUE},
    {"--harrow-metrics-token-file", "PATH", "HARROW_METRICS_TOKEN_FILE", "a file path (none)",
     "a bearer token /metrics requires (a file only this user may read)", Parse::VALUE},
    {"--harrow-registry", "ADDR", "HARROW_REGISTRY",
     "an address, an etcd URL, or `none` (`unix:<runtime directory>/registry.sock`)",
     "the registry to host or join, or none", Parse::VALUE},
    {"--harrow-transport", "KIND", "HARROW_TRANSPORT",
     "`unix-abstract`, `unix`, `tcp` (`unix-abstract`)", "what actors listen on", Parse::VALUE},
    {"--harrow-cookie", "PATH", "HARROW_COOKIE", "a file path (`<runtime directory>/cookie`)",
     "the cookie file the root takes the tree's secret from", Parse::VALUE},
    {"--harrow-encrypt", "", "HARROW_ENCRYPT", "set and not `0` (off)",
     "encrypt every channel that carries frame tags (TCP, links)", Parse::SWITCH},
    {"--harrow-insecure-links", "", "HARROW_INSECURE_LINKS", "set and not `0` (off)",
     "links between hosts without TLS tagged, not encrypted; the node must say so too",
     Parse::SWITCH},
    {"--harrow-max-message", "BYTES", "HARROW_MAX_MESSAGE_BYTES",
     "bytes, or `K`, `M`, `G` (binary multiples), at least 4096 (`64M`)",
     "the largest message a channel carries, for the whole tree", Parse::VALUE, checkMaxMessage},
    {"--harrow-name", "NAME", "", "a name (the program's file name)", "the root actor's name",
     Parse::ROOT_NAME},
    {"--harrow-debug", "", "HARROW_DEBUG", "`1`, `true`, `yes`, `on` (off)",
     "debug mode for the whole tree: harrow::pause(), post-mortem gdb on the root's terminal",
     Parse::SWITCH},
    {"", "", "HARROW_TRACE", "`full`, `off` (folded)",
     "full: a remote error's trace shows every frame, harrow's and KJ's too; off: no trace",
     Parse::ENVIRONMENT_ONLY},
    {"", "", "HARROW_GDB", "a path (`/usr/bin/gdb`)", "the gdb the root runs in debug mode",
     Parse::ENVIRONMENT_ONLY},
    {"", "", "HARROW_SPAWN", "`exec`, `forkserver`, `exec-only` (`exec`)",
     "how children start: re-executed, or forked from a zygote", Parse::ENVIRONMENT_ONLY,
     checkSpawnBackend},
    {"", "", "HARROW_HANDSHAKE_TIMEOUT_MS", "milliseconds (`5000`)",
     "how long a connection may take to finish the hello exchange", Parse::ENVIRONMENT_ONLY},
    {"--harrow-busy-poll", "US", "HARROW_BUSY_POLL_US", "microseconds, 0–100000 (`0`: off)",
     "event loops keep polling this long after their last received bytes before they sleep",
     Parse::VALUE, checkBusyPoll},
    {"", "", "HARROW_THREADS", "1 to 1024 (the number of cores, at most 4)",
     "each event loop's thread pool, on which runInThread(fn) runs blocking work",
     Parse::ENVIRONMENT_ONLY},
    {"--harrow-nodes", "NAME=ADDR,...", "HARROW_NODES", "`b=tcp:10.0.0.2:7000,c=...` (none)",
     "nodes (harrow-node) that run children on other hosts", Parse::VALUE},
    {"--harrow-hosts", "NAME=URL,...", "HARROW_HOSTS",
     "`b=ssh://deploy@10.0.0.2,n1=slurm://n1` (none)",
     "hosts that run children through ssh, or Slurm job steps", Parse::VALUE},
    {"--harrow-ssh-config", "FILE", "HARROW_SSH_CONFIG",
     "a file (none: the user's `~/.ssh/config`)", "the ssh client's configuration file (ssh -F)",
     Parse::VALUE},
    {"--harrow-link-timeout", "MS", "HARROW_LINK_TIMEOUT_MS", "milliseconds, 40–3600000 (`3000`)",
     "how soon a silent link to a child on another host counts as lost", Parse::VALUE},
    {"--harrow-tls-cert", "PEM", "HARROW_TLS_CERT",
     "a file (none: TCP, frames encrypted by harrow)",
     "this side's certificate for TLS on links (all three TLS flags or none)", Parse::VALUE},
    {"--harrow-tls-key", "PEM", "HARROW_TLS_KEY", "a file (none)",
     "the private key of --harrow-tls-cert", Parse::VALUE},
    {"--harrow-tls-ca", "PEM", "HARROW_TLS_CA", "a file (none)",
     "the tree's CA, which every link's certificate must come from", Parse::VALUE},
    {"--harrow-help", "", "", "", "prints this list and runs nothing", Parse::HELP},
    {"--harrow-child", "NAME PARENT_PID", "", "internal",
     "how a parent re-executes the program as a child", Parse::CHILD_MODE},
    {"--harrow-ssh-child", "NAME", "", "internal",
     "how ssh runs the program as a child on another host", Parse::CHILD_MODE},
    {"--harrow-slurm-child", "NAME", "", "internal", "the same for a Slurm job step",
     Parse::CHILD_MODE},
};

// "--harrow-log=LEVEL", "--harrow-encrypt", "--harrow-child NAME PARENT_PID"; "" for none.
kj::String usage(const Setting& setting) {
  if (setting.argument.size() == 0) return kj::str(setting.flag);
  return kj::str(setting.flag, setting.parse == Parse::CHILD_MODE ? " " : "=", setting.argument);
}

// "--harrow-log=LEVEL (HARROW_LOG)", "HARROW_GDB", "--harrow-name=NAME".
kj::String helpHeading(const Setting& setting) {
  if (setting.flag.size() == 0) return kj::str(setting.variable);
  if (setting.variable.size() == 0) return usage(setting);
  return kj::str(usage(setting), " (", setting.variable, ")");
}

kj::String withoutBackquotes(kj::StringPtr text) {
  kj::Vector<char> out(text.size() + 1);
  for (char c : text) {
    if (c != '`') out.add(c);
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

// A Markdown cell: "—" for nothing.
kj::String cell(kj::StringPtr text) {
  return text.size() == 0 ? kj::str("—") : kj::str(text);
}
kj::String codeCell(kj::StringPtr text) {
  return text.size() == 0 ? cell(text) : kj::str('`', text, '`');
}

// The value `arg` gives `setting`: "info" for --harrow-log=info, "" for a switch given alone;
// nullptr if `arg` is not that flag written as the table says (a value flag without '=VALUE', a
// switch with one, a flag harrow::main dispatches on before it parses: those are not it).
kj::Maybe<kj::StringPtr> valueFor(const Setting& setting, kj::StringPtr arg) {
  if (setting.flag.size() == 0 || !arg.startsWith(setting.flag)) return nullptr;
  kj::StringPtr rest = arg.slice(setting.flag.size());
  switch (setting.parse) {
    case Parse::VALUE:
    case Parse::ROOT_NAME:
      if (rest.size() > 0 && rest[0] == '=') return rest.slice(1);
      return nullptr;
    case Parse::SWITCH:
    case Parse::HELP:
      if (rest.size() == 0) return rest;
      return nullptr;
    case Parse::CHILD_MODE:
    case Parse::ENVIRONMENT_ONLY: return nullptr;
  }
  KJ_UNREACHABLE;
}

// A VALUE flag's variable becomes its value, a SWITCH's "1"; other flags set none.
void setVariable(const Setting& setting, kj::StringPtr value) {
  if (setting.parse == Parse::VALUE) setenv(setting.variable.cStr(), value.cStr(), 1);
  if (setting.parse == Parse::SWITCH) setenv(setting.variable.cStr(), "1", 1);
}

}  // namespace

kj::ArrayPtr<const Setting> settings() {
  return SETTINGS;
}

RootFlags applyFlags(int argc, char** argv) {
  RootFlags flags;
  for (int i = 1; i < argc; ++i) {
    for (const Setting& setting : SETTINGS) {
      KJ_IF_MAYBE (value, valueFor(setting, argv[i])) {
        if (setting.parse == Parse::ROOT_NAME && value->size() > 0) flags.name = *value;
        if (setting.parse == Parse::HELP) flags.help = true;
        setVariable(setting, *value);
      }
    }
  }
  return flags;
}

bool applyFlag(kj::StringPtr arg, kj::ArrayPtr<const kj::StringPtr> accepted) {
  for (const Setting& setting : SETTINGS) {
    if (std::find(accepted.begin(), accepted.end(), setting.flag) == accepted.end()) continue;
    KJ_IF_MAYBE (value, valueFor(setting, arg)) {
      setVariable(setting, *value);
      return true;
    }
  }
  return false;
}

kj::String settingsHelp() {
  kj::Vector<kj::String> lines;
  lines.add(kj::str(
      "harrow's settings. A flag sets the environment variable beside it, which every child\n"
      "inherits; the variable set before the program starts works alike (a flag wins).\n"
      "Each is described in docs/REFERENCE.md.\n"));
  for (const Setting& setting : SETTINGS) {
    if (setting.parse == Parse::CHILD_MODE) continue;  // not for users
    kj::String values = setting.values.size() == 0
                            ? kj::str()
                            : kj::str("      ", withoutBackquotes(setting.values), "\n");
    lines.add(kj::str("  ", helpHeading(setting), "\n      ", setting.help, "\n", values));
  }
  return kj::strArray(lines, "");
}

kj::String settingsMarkdown() {
  kj::Vector<kj::String> rows;
  for (const Setting& setting : SETTINGS) {
    rows.add(kj::str("| ", codeCell(usage(setting)), " | ", codeCell(setting.variable), " | ",
                     cell(setting.values), " |\n"));
  }
  return kj::strArray(rows, "");
}

}  // namespace harrow
