#include <harrow/engine/remote_error.h>
#include <harrow/co/errors.h>

#include <harrow/co/multi_error.h>
#include "runtime/engine/internal/symbolize.h"

#include <harrow/ipc/channel.h>

#include <kj/debug.h>
#include <kj/encoding.h>


namespace harrow {
namespace {

kj::StringPtr kindName(wire::ErrorKind kind) {
  switch (kind) {
    case wire::ErrorKind::FAILED: return "failed";
    case wire::ErrorKind::CONTEXT_CANCELLED: return "contextCancelled";
    case wire::ErrorKind::PROTOCOL_VIOLATION: return "protocolViolation";
    case wire::ErrorKind::UNKNOWN_METHOD: return "unknownMethod";
    case wire::ErrorKind::DEADLINE_EXCEEDED: return "deadlineExceeded";
  }
  return "failed";
}

wire::ErrorKind kindFromName(kj::StringPtr name) {
  if (name == "contextCancelled") return wire::ErrorKind::CONTEXT_CANCELLED;
  if (name == "protocolViolation") return wire::ErrorKind::PROTOCOL_VIOLATION;
  if (name == "unknownMethod") return wire::ErrorKind::UNKNOWN_METHOD;
  if (name == "deadlineExceeded") return wire::ErrorKind::DEADLINE_EXCEEDED;
  return wire::ErrorKind::FAILED;
}

kj::String indent(kj::StringPtr text, kj::StringPtr by) {
  kj::Vector<char> out;
  for (char c : text) {
    out.add(c);
    if (c == '\n') out.addAll(by);
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

kj::String actorText(kj::StringPtr name, kj::ArrayPtr<const kj::byte> uuid) {
  return kj::str("'", name, "' (", kj::encodeHex(uuid), ")");
}

// Splits "a.b.Type: message" or "ns::Type: message" into type and message.
void splitTypePrefix(kj::StringPtr description, kj::String& type, kj::String& message) {
  KJ_IF_MAYBE(colon, description.findFirst(':')) {
    // "::" inside a C++ name is not the separator: look for ": ".
    for (size_t i = *colon; i + 1 < description.size(); ++i) {
      if (description[i] == ':' && description[i + 1] == ' ') {
        kj::String head = kj::heapString(description.begin(), i);
        bool looksLikeType = head.size() > 0 && head.findFirst(' ') == nullptr &&
                             (head.findFirst('.') != nullptr || head.findFirst(':') != nullptr);
        if (looksLikeType) {
          type = kj::mv(head);
          message = kj::str(description.slice(i + 2));
          return;
        }
        break;
      }
    }
  }
  type = nullptr;
  message = kj::str(description);
}

// Reads "'name' (hex)" at the start of `text`.
bool parseActor(kj::StringPtr text, ActorIdentity& out) {
  if (!text.startsWith("'")) return false;
  for (size_t i = 1; i + 2 < text.size(); ++i) {
    if (text[i] == '\'' && text[i + 1] == ' ' && text[i + 2] == '(') {
      kj::StringPtr rest = text.slice(i + 3);
      KJ_IF_MAYBE(close, rest.findFirst(')')) {
        out.name = kj::heapString(text.slice(1, i));
        auto decoded = kj::decodeHex(kj::arrayPtr(rest.begin(), *close));
        if (decoded.hadErrors) return false;
        out.uuid = kj::mv(decoded);
        return true;
      }
      return false;
    }
  }
  return false;
}

kj::Vector<kj::String> lines(kj::StringPtr text) {
  kj::Vector<kj::String> out;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '\n') {
      out.add(kj::heapString(text.begin() + start, i - start));
      start = i + 1;
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------


bool isRemoteActorError(const kj::Exception& e) { return is(e, ErrorKind::REMOTE_ACTOR_ERROR); }
bool isContextCancelled(const kj::Exception& e) { return is(e, ErrorKind::CONTEXT_CANCELLED); }
bool isProtocolViolation(const kj::Exception& e) {
  if (is(e, ErrorKind::PROTOCOL_VIOLATION)) return true;
  KJ_IF_MAYBE(info, remoteErrorInfo(e)) {
    return info->kind == wire::ErrorKind::PROTOCOL_VIOLATION;
  }
  return false;
}

bool isMessageTooLarge(const kj::Exception& e) {
  if (is(e, ErrorKind::MESSAGE_TOO_LARGE)) return true;
  KJ_IF_MAYBE(info, remoteErrorInfo(e)) {
    return info->type == errorTypeName(ErrorKind::MESSAGE_TOO_LARGE);
  }
  return false;
}

kj::Exception messageTooLarge(kj::StringPtr what) {
  return makeError(ErrorKind::MESSAGE_TOO_LARGE, what);
}

bool isActorDied(const kj::Exception& e) {
  if (is(e, ErrorKind::ACTOR_DIED)) return true;
  KJ_IF_MAYBE(info, remoteErrorInfo(e)) return info->type == errorTypeName(ErrorKind::ACTOR_DIED);
  return false;
}

kj::Exception actorDied(kj::StringPtr name, int pid, kj::StringPtr how) {
  return makeError(ErrorKind::ACTOR_DIED, kj::str("actor '", name, "' (pid ", pid, ") ", how));
}

kj::Exception protocolViolation(kj::StringPtr what) {
  return makeError(ErrorKind::PROTOCOL_VIOLATION, what);
}

namespace {

// What one received error may cost to turn into exceptions. A peer's error is data like any other:
// within the traversal limit a frame can still repeat one relay hop a million times or nest
// MultiErrors so that each level copies the ones below, and the description built from it must
// not cost more than the frame did. Past these bounds the rest is counted, not shown.
constexpr size_t MAX_TEXT_BYTES = 4 << 20;  // all text fields of all errors in one message
constexpr size_t MAX_NAME_BYTES = 256;      // an actor's name in an origin or relay hop
constexpr size_t MAX_HOPS = 64;             // relay hops shown per error
constexpr size_t MAX_ERRORS = 256;          // errors kept from one MultiError, all levels
constexpr unsigned MAX_DEPTH = 8;               // MultiErrors nested in MultiErrors

// `text`, or as much of it as the budget has left.
kj::StringPtr bounded(capnp::Text::Reader text, size_t& budget, kj::String& storage) {
  size_t keep = kj::min(text.size(), budget);
  budget -= keep;
  if (keep == text.size()) return text;
  storage = kj::str(kj::arrayPtr(text.begin(), keep), "... (", text.size() - keep,
                    " more bytes not shown)");
  return storage;
}

kj::String actorText(wire::ActorId::Reader id) {
  size_t budget = MAX_NAME_BYTES;
  kj::String storage;
  auto uuid = id.getUuid();
  return actorText(bounded(id.getName(), budget, storage),
                   uuid.slice(0, kj::min(uuid.size(), size_t(64))));
}

// One relay path, read once: the text of its first MAX_HOPS hops and its length. Every pointer of
// a received error is read once (the decode check walked each once: docs/PROTOCOL.md, "Flow
// control"), although a MultiError's path is shown under each of its errors: each read is
// charged to the traversal limit again, and a path under 256 errors would cost 256 times what
// the check allowed for it.
struct Hops {
  kj::Vector<kj::String> shown;
  size_t total = 0;
};

Hops readHops(capnp::List<wire::ActorId>::Reader hops) {
  Hops read;
  read.total = hops.size();
  for (unsigned i = 0; i < kj::min(hops.size(), MAX_HOPS); ++i) read.shown.add(actorText(hops[i]));
  return read;
}

// Appends "relayed by" lines for `hops`, the first MAX_HOPS - `shown` of them; `shown` counts.
void addHops(kj::Vector<kj::String>& parts, const Hops& hops, size_t& shown) {
  for (size_t i = 0; i < hops.total; ++i, ++shown) {
    if (shown >= MAX_HOPS) {
      parts.add(kj::str("\n  relayed by ", hops.total - i, " more actors (not shown)"));
      return;
    }
    parts.add(kj::str("\n  relayed by ", hops.shown[i]));  // i <= shown < MAX_HOPS
  }
}

// `error` (whose relay path is `ownHops`) as the caller raises it; `outerHops`: the relay path of
// the MultiError that carried it (the error passed through those actors too, after its own path).
kj::Exception toExceptionVia(wire::Error::Reader error, const Hops& ownHops, const Hops& outerHops,
                             size_t& budget) {
  auto kind = error.getKind();
  kj::String a, b, c, d;
  kj::Vector<kj::String> parts;
  parts.add(kj::str(errorPrefix(kind == wire::ErrorKind::CONTEXT_CANCELLED
                                    ? ErrorKind::CONTEXT_CANCELLED
                                    : ErrorKind::REMOTE_ACTOR_ERROR),
                    bounded(error.getType(), budget, a), " from actor ", actorText(error.getOrigin())));
  parts.add(kj::str("\n  message: ", indent(bounded(error.getMessage(), budget, b), "    ")));
  if (kind != wire::ErrorKind::FAILED) parts.add(kj::str("\n  kind: ", kindName(kind)));
  auto file = error.getFile();
  if (file.size() > 0) {
    parts.add(kj::str("\n  raised at ", bounded(file, budget, c), ":", error.getLine()));
  }
  size_t shown = 0;
  addHops(parts, ownHops, shown);
  addHops(parts, outerHops, shown);
  auto trace = error.getRemoteTrace();
  if (trace.size() > 0) {
    parts.add(kj::str("\n  remote trace:\n    ", indent(bounded(trace, budget, d), "    ")));
  }
  auto type = kind == wire::ErrorKind::FAILED ? kj::Exception::Type::FAILED
                                              : kj::Exception::Type::DISCONNECTED;
  return kj::Exception(type, "(remote)", 0, kj::strArray(parts, ""));
}

// The errors of the MultiError whose relay path is `ownHops` and whose errors are `causes`,
// flattened into `out`: each inner one's relay path is extended by the paths of the MultiErrors
// that carried it (`carriers`, outermost first; this one's is added), innermost first.
void flattenCauses(Hops ownHops, capnp::List<wire::Error>::Reader causes,
                   kj::Vector<Hops>& carriers, unsigned depth, kj::Vector<kj::Exception>& out,
                   size_t& omitted, size_t& budget) {
  carriers.add(kj::mv(ownHops));
  for (auto cause : causes) {
    auto inner = cause.getCauses();
    if (inner.size() > 0 && depth < MAX_DEPTH) {
      flattenCauses(readHops(cause.getRelayPath()), inner, carriers, depth + 1, out, omitted,
                    budget);
      continue;
    }
    if (out.size() == MAX_ERRORS) {
      ++omitted;
      continue;
    }
    Hops own = readHops(cause.getRelayPath());
    auto e = toExceptionVia(cause, own, carriers.back(), budget);
    if (carriers.size() > 1) {
      // Hops of the MultiErrors further out, nearest first.
      kj::Vector<kj::String> hops;
      size_t shown = own.total + carriers.back().total;
      for (size_t i = carriers.size() - 1; i-- > 0;) addHops(hops, carriers[i], shown);
      out.add(kj::Exception(e.getType(), e.getFile(), e.getLine(),
                            kj::str(e.getDescription(), kj::strArray(hops, ""))));
    } else {
      out.add(kj::mv(e));
    }
  }
  carriers.removeLast();
}

}  // namespace

kj::Exception toException(wire::Error::Reader error) {
  size_t budget = MAX_TEXT_BYTES;
  auto causes = error.getCauses();
  Hops hops = readHops(error.getRelayPath());
  if (causes.size() == 0) return toExceptionVia(error, hops, Hops(), budget);
  // A MultiError raised in another actor: each of its errors comes back as its own exception
  // (the raiser put itself on the path of each), and the MultiError's relay path is appended.
  // No text to parse back: errorsIn() and remoteErrorInfo() give each one's fields.
  kj::Vector<kj::Exception> out;
  kj::Vector<Hops> carriers;
  size_t omitted = 0;
  auto origin = actorText(error.getOrigin());
  flattenCauses(kj::mv(hops), causes, carriers, 1, out, omitted, budget);
  if (omitted > 0) {
    out.add(kj::Exception(kj::Exception::Type::FAILED, "(remote)", 0,
                          kj::str(errorPrefix(ErrorKind::REMOTE_ACTOR_ERROR), omitted,
                                  " more errors of a MultiError from actor ", origin,
                                  " (not shown; at most ", MAX_ERRORS, " are kept)")));
  }
  return makeMultiError(out.releaseAsArray());
}

kj::Maybe<RemoteErrorInfo> remoteErrorInfo(const kj::Exception& exception) {
  kj::StringPtr text = exception.getDescription();
  ErrorKind kind = errorKind(exception);
  if (kind != ErrorKind::REMOTE_ACTOR_ERROR && kind != ErrorKind::CONTEXT_CANCELLED) return nullptr;
  auto all = lines(text);
  RemoteErrorInfo info{
      kind == ErrorKind::CONTEXT_CANCELLED ? wire::ErrorKind::CONTEXT_CANCELLED
                                           : wire::ErrorKind::FAILED,
      nullptr, nullptr, nullptr, 0, nullptr, {}, {}};

  kj::StringPtr head = all[0].slice(errorPrefix(kind).size());  // after "harrow.<Kind>: "
  constexpr kj::StringPtr FROM = " from actor "_kj;
  for (size_t i = 0; i + FROM.size() <= head.size(); ++i) {
    if (kj::arrayPtr(head.begin() + i, FROM.size()) == FROM.asArray()) {
      info.type = kj::heapString(head.begin(), i);
      if (!parseActor(head.slice(i + FROM.size()), info.origin)) return nullptr;
      break;
    }
  }
  if (info.type == nullptr) return nullptr;

  kj::Vector<kj::String> message, trace;
  enum { NONE, MESSAGE, TRACE } section = NONE;
  for (size_t i = 1; i < all.size(); ++i) {
    kj::StringPtr line = all[i];  // a kj::String: NUL-terminated
    if (section == MESSAGE && line.startsWith("    ")) { message.add(kj::str(line.slice(4))); continue; }
    if (section == TRACE && line.startsWith("    ")) { trace.add(kj::str(line.slice(4))); continue; }
    section = NONE;
    if (line.startsWith("  message: ")) {
      message.add(kj::str(line.slice(11)));
      section = MESSAGE;
    } else if (line.startsWith("  kind: ")) {
      info.kind = kindFromName(line.slice(8));
    } else if (line.startsWith("  raised at ")) {
      kj::StringPtr where = line.slice(12);
      KJ_IF_MAYBE(colon, where.findLast(':')) {
        info.file = kj::heapString(where.begin(), *colon);
        info.line = where.slice(*colon + 1).parseAs<uint32_t>();
      }
    } else if (line.startsWith("  relayed by ")) {
      ActorIdentity hop;
      if (parseActor(line.slice(13), hop)) info.relayPath.add(kj::mv(hop));
    } else if (line == "  remote trace:") {
      section = TRACE;
    }
  }
  info.message = kj::strArray(message, "\n");
  info.remoteTrace = kj::strArray(trace, "\n");
  return kj::mv(info);
}

void fillWireError(wire::Error::Builder error, const kj::Exception& exception,
                   const ActorIdentity& self, wire::ErrorKind kind) {
  if (isMultiError(exception)) {
    // Several errors raised together here: each goes whole, as its own Error (a remote one keeps
    // its origin and gains us on its path), under an envelope that says who raised them.
    auto errors = errorsIn(exception);
    error.setKind(kind);
    error.setType(errorTypeName(ErrorKind::MULTI_ERROR));
    error.setMessage(kj::str(errors.size(), " errors"));
    error.setFile(exception.getFile());
    error.setLine(exception.getLine());
    self.toWire(error.initOrigin());
    auto causes = error.initCauses(errors.size());
    for (auto i : kj::indices(errors)) {
      kj::Exception cause(kj::Exception::Type::FAILED, exception.getFile(), exception.getLine(),
                          kj::mv(errors[i]));
      fillWireError(causes[i], cause, self);
    }
    return;
  }
  KJ_IF_MAYBE(remote, remoteErrorInfo(exception)) {
    // Relayed: the origin stays, we join the path.
    error.setKind(kind == wire::ErrorKind::FAILED ? remote->kind : kind);
    error.setType(remote->type);
    error.setMessage(remote->message);
    error.setFile(remote->file);
    error.setLine(remote->line);
    error.setRemoteTrace(remote->remoteTrace);
    remote->origin.toWire(error.initOrigin());
    auto path = error.initRelayPath(remote->relayPath.size() + 1);
    for (auto i : kj::indices(remote->relayPath)) remote->relayPath[i].toWire(path[i]);
    self.toWire(path[remote->relayPath.size()]);
    return;
  }

  kj::String type, message;
  splitTypePrefix(exception.getDescription(), type, message);
  if (type == nullptr) {
    type = kj::str("kj::Exception(", exception.getType(), ")");
  }
  if (kind == wire::ErrorKind::FAILED && isProtocolViolation(exception)) {
    kind = wire::ErrorKind::PROTOCOL_VIOLATION;
  }
  error.setKind(kind);
  error.setType(type);
  error.setMessage(message);
  error.setFile(exception.getFile());
  error.setLine(exception.getLine());
  kj::Vector<kj::String> trace;
  const kj::Exception::Context* context = nullptr;
  KJ_IF_MAYBE(first, exception.getContext()) context = first;
  while (context != nullptr) {
    trace.add(kj::str(context->file, ":", context->line, ": ", context->description));
    const kj::Exception::Context* next = nullptr;
    KJ_IF_MAYBE(n, context->next) next = n->get();
    context = next;
  }
  // A cancellation's stack says only where a task was waiting when its scope ended: not worth
  // symbolizing, which loads this binary's debug information (tens of ms of CPU, the bulk of a
  // graceful teardown when every actor of a tree answers its cancelled calls; bench/README.md).
  // Nor is any stack with HARROW_TRACE=off.
  if (exception.getStackTrace().size() > 0 && kind != wire::ErrorKind::CONTEXT_CANCELLED &&
      !_::stackTracesOff()) {
    trace.add(kj::str("stack:\n", _::symbolize(exception.getStackTrace())));
  }
  if (exception.getRemoteTrace().size() > 0) trace.add(kj::str(exception.getRemoteTrace()));
  error.setRemoteTrace(kj::strArray(trace, "\n"));
  self.toWire(error.initOrigin());
}

}  // namespace harrow
