#include <harrow/discovery/registry.h>

#include <harrow/discovery/discovery.h>

#include <kj/debug.h>
#include <kj/encoding.h>

#include <unistd.h>

namespace harrow {

RegistryServer::RegistryServer(Actor& host) : host(host), watches(*this) {}

RegistryServer::~RegistryServer() noexcept(false) {
  // Waiters still registered belong to tasks that are being torn down with the actor.
}

void RegistryServer::taskFailed(kj::Exception&& exception) {
  KJ_LOG(ERROR, "registry: watching a channel failed", exception);
}

kj::Maybe<RegistryServer::Entry&> RegistryServer::findByName(kj::StringPtr name) {
  for (auto& entry : entries) {
    if (entry->name == name) return *entry;
  }
  return nullptr;
}

kj::Maybe<size_t> RegistryServer::indexOf(kj::ArrayPtr<const kj::byte> uuid) {
  for (auto i : kj::indices(entries)) {
    if (entries[i]->uuid.asPtr() == uuid) return i;
  }
  return nullptr;
}

void RegistryServer::fill(RegistryEntry::Builder out, const Entry& entry) {
  out.setName(entry.name);
  out.setUuid(entry.uuid);
  out.setPid(entry.pid);
  auto addresses = out.initAddresses(entry.addresses.size());
  for (auto i : kj::indices(entry.addresses)) addresses.set(i, entry.addresses[i]);
}

void RegistryServer::remove(size_t index, Departure how) {
  kj::Own<Entry> entry = kj::mv(entries[index]);
  // Keep the order (find returns the oldest): shift the rest down.
  for (size_t i = index; i + 1 < entries.size(); ++i) entries[i] = kj::mv(entries[i + 1]);
  entries.removeLast();
  for (auto& waiter : entry->departureWaiters) waiter->fulfill(kj::cp(how));
}

void RegistryServer::channelGone(ChannelRecord* record) {
  for (size_t i = 0; i < entries.size();) {
    if (entries[i]->channel == record) {
      KJ_LOG(INFO, "registry: removing the entry of an actor whose channel ended",
             entries[i]->name, kj::encodeHex(entries[i]->uuid), entries[i]->pid);
      remove(i, Departure::CHANNEL_LOST);
    } else {
      ++i;
    }
  }
  KJ_IF_MAYBE(current, channels.find(record->portal)) {
    if (current->get() == record) channels.erase(record->portal);
  }
}

Co<void> RegistryServer::registerActor(RegisterActorCall call) {
  auto in = call.params().getEntry();
  KJ_REQUIRE(in.getName().size() > 0, "registry: an entry needs a name");
  KJ_REQUIRE(in.getUuid().size() == 16, "registry: an entry's uuid has 16 bytes",
             in.getUuid().size());

  RawPortal* portal = &call.caller();
  ChannelRecord* record;
  KJ_IF_MAYBE(existing, channels.find(portal)) {
    record = existing->get();
  } else {
    auto created = kj::heap<ChannelRecord>(ChannelRecord{portal});
    record = created.get();
    channels.insert(portal, kj::mv(created));
    watches.add(call.callerGone().then([this, record]() { channelGone(record); }));
  }

  auto addresses = kj::heapArrayBuilder<kj::String>(in.getAddresses().size());
  for (auto address : in.getAddresses()) addresses.add(kj::heapString(address));

  KJ_IF_MAYBE(index, indexOf(in.getUuid())) {
    Entry& entry = *entries[*index];  // the same actor again: replace in place, keep its place
    entry.name = kj::heapString(in.getName());
    entry.pid = in.getPid();
    entry.addresses = addresses.finish();
    entry.channel = record;
  } else {
    auto entry = kj::heap<Entry>();
    entry->name = kj::heapString(in.getName());
    entry->uuid = kj::heapArray(in.getUuid());
    entry->pid = in.getPid();
    entry->addresses = addresses.finish();
    entry->channel = record;
    entries.add(kj::mv(entry));
  }
  HARROW_LOG_DEBUG("registry: registered", in.getName(), kj::encodeHex(in.getUuid()), in.getPid());

  auto waiting = kj::mv(registrationWaiters);
  for (auto& waiter : waiting) waiter->fulfill();
  co_return;
}

Co<void> RegistryServer::deregisterActor(DeregisterActorCall call) {
  KJ_IF_MAYBE(index, indexOf(call.params().getUuid())) {
    HARROW_LOG_DEBUG("registry: deregistered", entries[*index]->name);
    remove(*index, Departure::DEREGISTERED);
    call.results().setRemoved(true);
  } else {
    call.results().setRemoved(false);
  }
  co_return;
}

Co<void> RegistryServer::find(FindCall call) {
  KJ_IF_MAYBE(entry, findByName(call.params().getName())) {
    call.results().setFound(true);
    fill(call.results().initEntry(), *entry);
  } else {
    call.results().setFound(false);
  }
  co_return;
}

Co<void> RegistryServer::query(QueryCall call) {
  auto name = call.params().getName();
  kj::Vector<Entry*> matching;
  for (auto& entry : entries) {
    if (name.size() == 0 || entry->name == name) matching.add(entry.get());
  }
  auto out = call.results().initEntries(matching.size());
  for (auto i : kj::indices(matching)) fill(out[i], *matching[i]);
  co_return;
}

Co<void> RegistryServer::waitFor(WaitForCall call) {
  auto name = kj::heapString(call.params().getName());
  for (;;) {
    KJ_IF_MAYBE(entry, findByName(name)) {
      fill(call.results().initEntry(), *entry);
      co_return;
    }
    // Woken by every registration; a waiter whose task is cancelled just leaves a fulfiller
    // nobody listens to, dropped at the next registration.
    auto paf = kj::newPromiseAndFulfiller<void>();
    registrationWaiters.add(kj::mv(paf.fulfiller));
    co_await kj::mv(paf.promise);
  }
}

Co<void> RegistryServer::waitForDeparture(WaitForDepartureCall call) {
  KJ_IF_MAYBE(index, indexOf(call.params().getUuid())) {
    auto paf = kj::newPromiseAndFulfiller<Departure>();
    entries[*index]->departureWaiters.add(kj::mv(paf.fulfiller));
    call.results().setHow(co_await kj::mv(paf.promise));
  } else {
    call.results().setHow(Departure::NOT_REGISTERED);
  }
}

Co<void> RegistryServer::info(InfoCall call) {
  auto results = call.results();
  auto self = results.initHost();
  const ActorIdentity& id = host.identity();
  self.setName(id.name);
  self.setUuid(id.uuid);
  self.setPid(getpid());
  kj::Vector<kj::StringPtr> addresses;
  for (auto& address : host.addresses()) addresses.add(address);
  KJ_IF_MAYBE(registry, registryAddress(host)) addresses.add(*registry);
  auto out = self.initAddresses(addresses.size());
  for (auto i : kj::indices(addresses)) out.set(i, addresses[i]);
  results.setEntries(entries.size());
  co_return;
}

}  // namespace harrow
