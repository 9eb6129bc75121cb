#include "runtime/actor.h"

#include <kj/debug.h>

namespace harrow {

kj::Own<ActorServer> Implementations::create(kj::StringPtr name) {
  KJ_IF_MAYBE(factory, factories.find(name)) {
    return (*factory)();
  }
  kj::Vector<kj::StringPtr> known;
  for (auto& entry : factories) known.add(entry.key);
  KJ_FAIL_REQUIRE(kj::str("no implementation registered under the name '", name,
                          "'; registered: ", kj::strArray(known, ", ")));
}

namespace {
kj::ForkedPromise<void> newCancelledPromise(kj::Own<kj::PromiseFulfiller<void>>& fulfiller) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  fulfiller = kj::mv(paf.fulfiller);
  return paf.promise.fork();
}
}  // namespace

Actor::Actor(kj::AsyncIoContext& io, ActorIdentity identity,
             kj::Maybe<Implementations&> implementations)
    : ioContext(io), id(kj::mv(identity)), impls(implementations),
      cancelled(newCancelledPromise(cancelFulfiller)) {}

Actor::~Actor() noexcept(false) {
  while (!exitCallbacks.empty()) {
    auto callback = kj::mv(exitCallbacks.back());
    exitCallbacks.removeLast();
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { callback(); })) {
      KJ_LOG(ERROR, "exit callback failed", *e);
    }
  }
}

namespace {
thread_local Actor* current = nullptr;
}  // namespace

Actor& currentActor() {
  KJ_REQUIRE(current != nullptr, "no harrow actor runs on this thread (use harrow::main)");
  return *current;
}

CurrentActorScope::CurrentActorScope(Actor& actor) : saved(current) { current = &actor; }
CurrentActorScope::~CurrentActorScope() noexcept { current = saved; }

void Actor::addServer(kj::Own<ActorServer> server) {
  uint64_t interfaceId = server->interfaceId();
  servers.upsert(interfaceId, kj::mv(server), [](auto& existing, auto&& replacement) {
    existing = kj::mv(replacement);
  });
}

kj::Maybe<ActorServer&> Actor::findServer(uint64_t interfaceId) {
  KJ_IF_MAYBE(server, servers.find(interfaceId)) {
    return **server;
  }
  return nullptr;
}

Co<void> Actor::serve(kj::Function<kj::Promise<void>()> body) {
  co_await openNursery([&](TaskNursery& nursery) -> Co<void> {
    service = nursery;
    KJ_DEFER(service = nullptr);
    co_await body();
    nursery.cancel();  // the body is done: rpc tasks still running are cancelled
  });
}

void Actor::cancel() {
  if (cancelRequested) return;
  cancelRequested = true;
  cancelFulfiller->fulfill();
  KJ_IF_MAYBE(s, service) s->cancel();
}

void Actor::controlMessage(Peer& peer, wire::Message::Reader message) {
  switch (message.which()) {
    case wire::Message::CANCEL_ACTOR:
      if (requester == nullptr) requester = peer;
      cancel();
      return;
    case wire::Message::CANCEL_ACTOR_ACK:
      return;  // the supervisor watches the channel close and the process exit
    default:
      peer.sendViolation(0, kj::str("channel-level message ", static_cast<unsigned>(message.which()),
                                    " is not expected now"));
  }
}

}  // namespace harrow
