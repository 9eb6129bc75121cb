// One run of the `harrow` command as a peer of the tree: its own Actor (which registers nowhere
// and listens nowhere), the tree's secret from the cookie, the registry, and channels to the
// actors it looks at.

#pragma once

#include "programs/harrow/errors.h"
#include "programs/harrow/options.h"

#include <harrow/actor/introspect.h>
#include <harrow/discovery/discovery.h>

namespace harrow::cli {

class Session {
public:
  Session(Actor& actor, const Options& options) : actor(actor), options(options) {}
  KJ_DISALLOW_COPY(Session);

  Actor& self() { return actor; }
  const Options& opts() const { return options; }

  // The registry's entries: all of them (oldest first).
  Co<kj::Array<RegisteredActor>> entries();

  // The actors NAME names: a registered name (all actors under it), or a uuid in hex (a prefix of
  // 8 digits or more). Not found: EXIT_NOT_FOUND.
  Co<kj::Array<RegisteredActor>> resolve(kj::StringPtr name);
  // Exactly one actor; several: EXIT_USAGE, listing their uuids.
  Co<RegisteredActor> resolveOne(kj::StringPtr name);

  // The Peer of a channel to the actor (connect + authenticated hello, within the timeout),
  // checked to be the entry's actor.
  Co<Peer*> connect(const RegisteredActor& entry);

  // `fn()` within the session's timeout; a timeout is EXIT_NOT_FOUND naming `what`.
  template <typename T, typename Fn>
  Co<T> bounded(kj::StringPtr what, Fn fn);

  // The registry actor, on the actor's channel to it (opened by the first call).
  Co<RegistryActor::Portal> registry();

private:
  Actor& actor;
  const Options& options;
};

// "1f3a9c2e..." -> the 32 hex digits of a uuid.
kj::String hex(kj::ArrayPtr<const kj::byte> bytes);

template <typename T, typename Fn>
Co<T> Session::bounded(kj::StringPtr whatParam, Fn fn) {
  auto what = kj::heapString(whatParam);  // used after a suspension: the caller's may be gone
  kj::Maybe<T> result;
  bool cutShort = co_await moveOnAfter(actor.timer(), options.timeout, [&]() -> Co<void> {
    result = co_await fn();
  });
  if (cutShort) {
    fail(EXIT_NOT_FOUND, kj::str(what, " did not answer within ",
                                 options.timeout / kj::MILLISECONDS, " ms"));
  }
  co_return kj::mv(KJ_ASSERT_NONNULL(result));
}

}  // namespace harrow::cli
