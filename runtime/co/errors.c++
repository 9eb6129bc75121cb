#include <harrow/co/errors.h>

namespace harrow {
namespace {

struct Named {
  ErrorKind kind;
  kj::StringPtr name;
};

constexpr Named NAMES[] = {
    {ErrorKind::CANCELLED, "Cancelled"_kj},
    {ErrorKind::DEADLINE_EXCEEDED, "DeadlineExceeded"_kj},
    {ErrorKind::DEADLINE_EXCEEDED, "TooSlow"_kj},  // the older name, still read
    {ErrorKind::MULTI_ERROR, "MultiError"_kj},
    {ErrorKind::LOOP_GONE, "LoopGone"_kj},
    {ErrorKind::TRANSPORT_CLOSED, "TransportClosed"_kj},
    {ErrorKind::MALFORMED_FRAME, "MalformedFrame"_kj},
    {ErrorKind::MESSAGE_TOO_LARGE, "MessageTooLarge"_kj},
    {ErrorKind::LAGGED, "Lagged"_kj},
    {ErrorKind::STREAM_CLOSED, "StreamClosed"_kj},
    {ErrorKind::REMOTE_ACTOR_ERROR, "RemoteActorError"_kj},
    {ErrorKind::CONTEXT_CANCELLED, "ContextCancelled"_kj},
    {ErrorKind::PROTOCOL_VIOLATION, "ProtocolViolation"_kj},
    {ErrorKind::UNKNOWN_METHOD, "UnknownMethod"_kj},
    {ErrorKind::AUTHENTICATION_FAILED, "AuthenticationFailed"_kj},
    {ErrorKind::ACTOR_DIED, "ActorDied"_kj},
    {ErrorKind::SPAWN_FAILED, "SpawnFailed"_kj},
    {ErrorKind::ACTOR_RESTARTED, "ActorRestarted"_kj},
    {ErrorKind::RESTART_INTENSITY, "RestartIntensity"_kj},
    {ErrorKind::ACTOR_UNREACHABLE, "ActorUnreachable"_kj},
    {ErrorKind::NO_REGISTRY, "NoRegistry"_kj},
    {ErrorKind::NO_ROOT, "NoRoot"_kj},
    {ErrorKind::REGISTRY_UNAVAILABLE, "RegistryUnavailable"_kj},
    {ErrorKind::REGISTRY_ADDRESS_IN_USE, "RegistryAddressInUse"_kj},
    {ErrorKind::UNSAFE_FILE, "UnsafeFile"_kj},
};

constexpr kj::StringPtr PREFIX = "harrow."_kj;

}  // namespace

kj::StringPtr errorKindName(ErrorKind kind) {
  for (auto& named : NAMES) {
    if (named.kind == kind) return named.name;
  }
  return ""_kj;
}

ErrorKind errorKind(const kj::Exception& exception) {
  kj::StringPtr text = exception.getDescription();
  if (!text.startsWith(PREFIX)) return ErrorKind::NONE;
  kj::StringPtr rest = text.slice(PREFIX.size());
  for (auto& named : NAMES) {
    if (rest.startsWith(named.name) && rest.size() > named.name.size() &&
        rest[named.name.size()] == ':') {
      return named.kind;
    }
  }
  return ErrorKind::NONE;
}

kj::Exception makeError(ErrorKind kind, kj::StringPtr message, const char* file, int line) {
  auto type = kind == ErrorKind::TRANSPORT_CLOSED ? kj::Exception::Type::DISCONNECTED
                                                  : kj::Exception::Type::FAILED;
  return kj::Exception(type, file, line, kj::str(errorPrefix(kind), message));
}

kj::String errorTypeName(ErrorKind kind) {
  KJ_IREQUIRE(kind != ErrorKind::NONE);
  return kj::str(PREFIX, errorKindName(kind));
}

kj::String errorPrefix(ErrorKind kind) {
  KJ_IREQUIRE(kind != ErrorKind::NONE);
  return kj::str(PREFIX, errorKindName(kind), ": ");
}

}  // namespace harrow
