// Finding actors by name (tractor: find_actor, wait_for_actor, query_actor, get_registry).
//
//   KJ_IF_MAYBE(counter, co_await harrow::findActor<CounterActor>("counter-1")) {
//     co_await counter->add(5);
//   }
//   CounterActor::Portal late = co_await harrow::waitForActor<CounterActor>("counter-2");
//   for (auto& entry : co_await harrow::queryActor("worker")) ...   // every "worker", with addresses
//
// Each actor registers itself with its tree's registry when it starts serving (Actor::serve(), see
// DiscoveryOptions in actor.h); these functions ask that registry and then open a channel to the
// actor found (or reuse the open one: the current actor keeps one outbound channel per address).
// A lookup is one round trip to the registry, plus, the first time, a connect and hello exchange
// with the actor found.
//
// Portals returned here refer to a channel the current actor owns: they stay valid until the
// actor's serve() ends; once the channel is lost, calls through them fail with TransportClosed.
// A registry that has gone away (its program exited) is a TransportClosed naming the registry's
// address, from every function here: never a hang.
//
// The functions without an Actor argument use harrow::currentActor().

#pragma once

#include <harrow/registry.capnp.harrow.h>
#include <harrow/actor/actor.h>

namespace harrow {

using registry::RegistryActor;
using Departure = registry::Registry::Departure;

// One registry entry: an actor that registered, and where it accepts channels.
struct RegisteredActor {
  kj::String name;
  kj::Array<kj::byte> uuid;
  uint32_t pid = 0;
  kj::Array<kj::String> addresses;

  static RegisteredActor fromEntry(registry::Registry::Entry::Reader entry);
  // "name (uuid-hex), pid N, at addr1, addr2"
  kj::String toString() const;
};

// ---- the untyped forms ----

// The registry of `actor`'s tree, as a typed portal (on the actor's channel to it).
Co<RegistryActor::Portal> registryPortal(Actor& actor);

// Every actor registered under `name` (all, for an empty name), oldest first.
Co<kj::Array<RegisteredActor>> queryActor(Actor& actor, kj::StringPtr name);
Co<kj::Array<RegisteredActor>> queryActor(kj::StringPtr name);

// A channel to one actor registered under `name`, or nullptr if there is none (or none of them
// can be reached: stale entries of actors that just died are skipped).
Co<kj::Maybe<Peer*>> findActorChannel(Actor& actor, kj::StringPtr name);

// Waits until an actor registers under `name`, then opens a channel to it.
Co<Peer*> waitForActorChannel(Actor& actor, kj::StringPtr name);

// A channel to the actor an entry describes: tries its addresses in order and checks that the
// actor answering has the entry's uuid. Throws TransportClosed if none can be reached.
Co<Peer*> connectToActor(Actor& actor, const RegisteredActor& entry);

// A channel to the root actor of `actor`'s tree (its own address for the root itself).
Co<Peer*> rootChannel(Actor& actor);

// Resolves once the actor with `uuid` has left the registry, saying how: deregistered (an
// orderly teardown), channelLost (it died: the registry saw its channel end) or notRegistered.
Co<Departure> waitForDeparture(Actor& actor, kj::ArrayPtr<const kj::byte> uuid);

// ---- typed forms (Interface: a generated FooActor) ----

// tractor: find_actor. nullptr if no actor is registered under `name`.
template <typename Interface>
Co<kj::Maybe<typename Interface::Portal>> findActor(Actor& actor, kj::StringPtr name) {
  KJ_IF_MAYBE(peer, co_await findActorChannel(actor, name)) {
    co_return typename Interface::Portal(**peer);
  }
  co_return nullptr;
}
template <typename Interface>
Co<kj::Maybe<typename Interface::Portal>> findActor(kj::StringPtr name) {
  return findActor<Interface>(currentActor(), name);
}

// tractor: wait_for_actor. Resolves once an actor registers under `name` (at once if one has).
template <typename Interface>
Co<typename Interface::Portal> waitForActor(Actor& actor, kj::StringPtr name) {
  Peer* peer = co_await waitForActorChannel(actor, name);
  co_return typename Interface::Portal(*peer);
}
template <typename Interface>
Co<typename Interface::Portal> waitForActor(kj::StringPtr name) {
  return waitForActor<Interface>(currentActor(), name);
}

// The root actor of the tree, through the interface it serves.
template <typename Interface>
Co<typename Interface::Portal> rootActor(Actor& actor) {
  Peer* peer = co_await rootChannel(actor);
  co_return typename Interface::Portal(*peer);
}
template <typename Interface>
Co<typename Interface::Portal> rootActor() {
  return rootActor<Interface>(currentActor());
}

}  // namespace harrow
