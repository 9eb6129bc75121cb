// Where a tree's registry entries live: the store behind discovery.h's functions.
//
// Two backends, one user-facing API (findActor, waitForActor, queryActor, waitForDeparture):
//   - the registry actor (registry.h): a harrow actor hosted by a root, for the actors of one host
//     (any registry address of the usual forms: tcp:, unix:);
//   - etcd (etcd.h): entries kept in an etcd cluster under a prefix, each bound to a lease the
//     registering actor keeps alive, for trees spread over hosts (etcd://host:port,.../prefix).
// The Discovery attachment (discovery.h) picks one from the registry address, registers its actor
// through it and deregisters on teardown; the lookups ask Discovery::of(actor).backend().

#pragma once

#include <harrow/registry.capnp.harrow.h>
#include <harrow/co/co.h>

#include <kj/array.h>
#include <kj/string.h>
#include <kj/time.h>

namespace harrow {

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

class RegistryBackend {
public:
  virtual ~RegistryBackend() noexcept(false) = default;

  // The actor's own entry: registered when it starts serving, removed on an orderly teardown
  // (bounded by `timeout`: the store may be gone, and then the entry goes away by itself).
  virtual Co<void> registerSelf(const RegisteredActor& self) = 0;
  virtual Co<void> deregisterSelf(kj::Duration timeout) = 0;

  // Every actor registered under `name` (all, for an empty name), oldest first.
  virtual Co<kj::Array<RegisteredActor>> query(kj::StringPtr name) = 0;
  // One actor registered under `name`, if any.
  virtual Co<kj::Maybe<RegisteredActor>> find(kj::StringPtr name) = 0;
  // Resolves once an actor is registered under `name` (at once if one is).
  virtual Co<RegisteredActor> waitFor(kj::StringPtr name) = 0;
  // Resolves once the entry with `uuid` is gone, saying how.
  virtual Co<Departure> waitForDeparture(kj::ArrayPtr<const kj::byte> uuid) = 0;
};

}  // namespace harrow
