#include "programs/harrow/session.h"
#include "programs/harrow/errors.h"

#include <kj/encoding.h>

namespace harrow::cli {

kj::String hex(kj::ArrayPtr<const kj::byte> bytes) { return kj::encodeHex(bytes); }

Co<RegistryActor::Portal> Session::registry() {
  auto what = kj::str("the registry at ", options.registry);
  auto peer = co_await errorOr([&]() {
    return bounded<Peer*>(what, [&]() { return actor.connectTo(options.registry); });
  });
  KJ_IF_MAYBE(e, peer.error()) {
    if (isTransportClosed(*e)) {
      fail(EXIT_NOT_FOUND, kj::str("no registry answers at ", options.registry, " (",
                                   e->getDescription(), ")"));
    }
    kj::throwFatalException(kj::mv(*e));
  }
  co_return RegistryActor::Portal(**peer);
}

Co<kj::Array<RegisteredActor>> Session::entries() {
  RegistryActor::Portal portal = co_await registry();
  auto reply = co_await bounded<Received<registry::Registry::QueryResults>>(
      "the registry", [&]() { return portal.query(""); });
  auto list = reply->getEntries();
  auto result = kj::heapArrayBuilder<RegisteredActor>(list.size());
  for (auto entry : list) result.add(RegisteredActor::fromEntry(entry));
  co_return result.finish();
}

Co<kj::Array<RegisteredActor>> Session::resolve(kj::StringPtr name) {
  auto all = co_await entries();
  bool byUuid = name.size() >= 8 && name.size() <= 32;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) byUuid = false;
  }
  kj::Vector<RegisteredActor> found;
  for (auto& entry : all) {
    if (entry.name == name || (byUuid && hex(entry.uuid).startsWith(name))) {
      found.add(kj::mv(entry));
    }
  }
  if (found.empty()) {
    fail(EXIT_NOT_FOUND, kj::str("no actor named '", name, "' in the registry at ",
                                 options.registry, " (harrow ps lists them)"));
  }
  co_return found.releaseAsArray();
}

Co<RegisteredActor> Session::resolveOne(kj::StringPtr name) {
  auto found = co_await resolve(name);
  if (found.size() > 1) {
    kj::Vector<kj::String> uuids;
    for (auto& entry : found) uuids.add(kj::str(hex(entry.uuid), " (pid ", entry.pid, ")"));
    fail(EXIT_USAGE, kj::str(found.size(), " actors are named '", name,
                             "': name one by its uuid: ", kj::strArray(uuids, ", ")));
  }
  co_return kj::mv(found[0]);
}

Co<Peer*> Session::connect(const RegisteredActor& entry) {
  auto what = kj::str("actor '", entry.name, "'");
  auto peer = co_await errorOr([&]() {
    return bounded<Peer*>(what, [&]() { return connectToActor(actor, entry); });
  });
  KJ_IF_MAYBE(e, peer.error()) {
    if (isTransportClosed(*e)) {
      fail(EXIT_NOT_FOUND, kj::str("actor '", entry.name, "' (pid ", entry.pid,
                                   ") cannot be reached: ", e->getDescription()));
    }
    kj::throwFatalException(kj::mv(*e));
  }
  co_return *peer;
}

}  // namespace harrow::cli
