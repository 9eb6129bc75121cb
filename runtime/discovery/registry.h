// RegistryServer: the registry of a harrow tree (tractor: the arbiter / registrar), an ordinary
// harrow actor interface (idl/harrow/registry.capnp) served by the root actor that hosts it.
// Actor::serve() adds it when the root binds the registry address; nobody else constructs one
// except tests. Clients use runtime/discovery.h.
//
// State: a list of entries (name, uuid, pid, addresses), oldest first, each tied to the channel
// it was registered on. Names may repeat; uuids do not (registering a uuid again replaces its
// entry). When a channel that registered entries ends (IncomingTask::callerGone(): closed, lost,
// or the registry stops serving it) its entries are removed as stale: an actor killed with
// SIGKILL disappears from the registry as soon as the kernel closes its socket.
//
// Channels are told apart by their RawPortal (the Peer). A Peer's address can be reused by a
// later Peer only after the first is destroyed; its whenClosed() fires before that, and the
// removal runs on the very next turn of the event loop, before any I/O of a newer channel can be
// processed, so a newer channel never inherits an older one's record.

#pragma once

#include <harrow/registry.capnp.harrow.h>
#include <harrow/actor/actor.h>

#include <kj/async.h>
#include <kj/map.h>
#include <kj/vector.h>

namespace harrow {

using registry::RegistryActor;
using RegistryEntry = registry::Registry::Entry;
using Departure = registry::Registry::Departure;

class RegistryServer final : public RegistryActor::Server, private kj::TaskSet::ErrorHandler {
public:
  // `host` is the actor serving the registry (Registry.info reports it).
  explicit RegistryServer(Actor& host);
  ~RegistryServer() noexcept(false);
  KJ_DISALLOW_COPY(RegistryServer);

  size_t size() const { return entries.size(); }

  // RegistryActor::Server
  Co<void> registerActor(RegisterActorCall call) override;
  Co<void> deregisterActor(DeregisterActorCall call) override;
  Co<void> find(FindCall call) override;
  Co<void> query(QueryCall call) override;
  Co<void> waitFor(WaitForCall call) override;
  Co<void> waitForDeparture(WaitForDepartureCall call) override;
  Co<void> info(InfoCall call) override;

private:
  struct ChannelRecord {
    RawPortal* portal;
  };
  struct Entry {
    kj::String name;
    kj::Array<kj::byte> uuid;
    uint32_t pid = 0;
    kj::Array<kj::String> addresses;
    ChannelRecord* channel;
    kj::Vector<kj::Own<kj::PromiseFulfiller<Departure>>> departureWaiters;
  };

  Actor& host;
  kj::Vector<kj::Own<Entry>> entries;  // oldest first
  kj::HashMap<RawPortal*, kj::Own<ChannelRecord>> channels;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> registrationWaiters;
  kj::TaskSet watches;  // one per channel that registered something: its callerGone()

  kj::Maybe<Entry&> findByName(kj::StringPtr name);
  kj::Maybe<size_t> indexOf(kj::ArrayPtr<const kj::byte> uuid);
  void remove(size_t index, Departure how);
  void channelGone(ChannelRecord* record);
  static void fill(RegistryEntry::Builder out, const Entry& entry);
  void taskFailed(kj::Exception&& exception) override;
};

}  // namespace harrow
