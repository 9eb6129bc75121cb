#include "examples/tree/causes.h"

#include <harrow/co/multi_error.h>

namespace tree {
namespace {

constexpr kj::StringPtr MULTI_ERROR = "harrow.MultiError"_kj;

kj::Exception fromText(kj::StringPtr text) {
  return kj::Exception(kj::Exception::Type::FAILED, "(text)", 0, kj::str(text));
}

// The message of a RemoteActorError description, all of its lines. remoteErrorInfo().message
// should be this, but the runtime currently writes every newline of a remote message as two
// (remote_error.c++, toException: indent(..., "\n    ") where indent() already keeps the '\n'),
// and remoteErrorInfo() then stops at the first, empty, line. Continuation lines are indented by
// four spaces; an empty line can only be the doubled newline, so it is skipped. Gives the same
// result once the runtime is fixed.
kj::String messageOf(kj::StringPtr description) {
  kj::Vector<kj::String> lines;
  bool inMessage = false;
  size_t start = 0;
  for (size_t i = 0; i <= description.size(); ++i) {
    if (i < description.size() && description[i] != '\n') continue;
    kj::String line = kj::heapString(description.begin() + start, i - start);
    start = i + 1;
    if (!inMessage) {
      if (line.startsWith("  message: ")) {
        lines.add(kj::str(line.slice(11)));
        inMessage = true;
      }
      continue;
    }
    if (line.size() == 0) continue;
    if (!line.startsWith("    ")) break;
    lines.add(kj::str(line.slice(4)));
  }
  return kj::strArray(lines, "\n");
}

kj::Vector<harrow::ActorIdentity> concat(kj::ArrayPtr<const harrow::ActorIdentity> a,
                                         kj::ArrayPtr<const harrow::ActorIdentity> b) {
  kj::Vector<harrow::ActorIdentity> out;
  for (auto& id : a) out.add(id.clone());
  for (auto& id : b) out.add(id.clone());
  return out;
}

// `outer`: the relay path the enclosing errors add after this one's own (nearest last).
void collect(const kj::Exception& error, kj::ArrayPtr<const harrow::ActorIdentity> outer,
             kj::Vector<Cause>& out) {
  if (harrow::isMultiError(error)) {
    for (auto& part : harrow::errorsIn(error)) collect(fromText(part), outer, out);
    return;
  }
  KJ_IF_MAYBE(info, harrow::remoteErrorInfo(error)) {
    if (info->type == MULTI_ERROR) {
      // A MultiError that crossed a channel: the actor that raised it relayed each error inside.
      kj::Vector<harrow::ActorIdentity> path;
      path.add(info->origin.clone());
      for (auto& id : info->relayPath) path.add(id.clone());
      for (auto& id : outer) path.add(id.clone());
      collect(fromText(kj::str(MULTI_ERROR, ": ", messageOf(error.getDescription()))), path, out);
      return;
    }
    Cause cause;
    cause.text = kj::str(error.getDescription());
    cause.type = kj::mv(info->type);
    cause.message = messageOf(error.getDescription());
    cause.file = kj::mv(info->file);
    cause.line = info->line;
    cause.origin = kj::mv(info->origin);
    cause.relayPath = concat(info->relayPath, outer);
    out.add(kj::mv(cause));
    return;
  }
  Cause cause;
  cause.text = kj::str(error.getDescription());
  cause.relayPath = concat(nullptr, outer);
  out.add(kj::mv(cause));
}

}  // namespace

kj::Vector<Cause> causesOf(const kj::Exception& error) {
  kj::Vector<Cause> out;
  collect(error, nullptr, out);
  return out;
}

kj::String pathText(const kj::Vector<harrow::ActorIdentity>& path) {
  if (path.size() == 0) return kj::str("(none)");
  return kj::strArray(KJ_MAP(id, path) { return kj::str(id.name); }, " -> ");
}

}  // namespace tree
