// The etcd registry backend (<harrow/discovery/etcd.h>): entries as JSON under PREFIX/actors/,
// each under its actor's lease, kept alive every TTL/3, marked "leaving" before an orderly
// revoke.
//
//   auto backend = newEtcdBackend(actor, EtcdAddress::parse(address), address);
//   co_await backend->registerSelf(self);
//
// Guarantees (the header has them in full): a lost lease is replaced and the entry put again;
// lookups skip leaving and undecodable entries; waitForDeparture tells a deregistration from a
// death by the deleted entry's last value.
//
// Why a file of its own: what is stored and how it lives is the backend's; talking to etcd
// (HTTP, TLS, authentication, failover) is EtcdClient's (etcd_client.c++).

#include <harrow/discovery/etcd.h>

#include <harrow/actor/actor.h>
#include <harrow/actor/log.h>
#include "runtime/discovery/internal/json.h"

#include <kj/debug.h>
#include <kj/encoding.h>

#include <algorithm>

namespace harrow {

using namespace json;  // internal/json.h

namespace {

struct EntryValue {
  RegisteredActor actor;
  bool leaving = false;
  int64_t createRevision = 0;
};

class EtcdBackend final : public RegistryBackend {
public:
  EtcdBackend(Actor& actor, EtcdAddress address, kj::StringPtr addressText)
      : timer(actor.timer()), address(kj::mv(address)), addressText(kj::heapString(addressText)),
        client(timer, actor.io().provider->getNetwork(), this->address) {}

  Co<void> registerSelf(const RegisteredActor& self) override {
    self_ = copy(self);
    key = kj::str(namePrefix(self.name), kj::encodeHex(self.uuid));
    co_await putSelf();
    keepAliveTask = keepAliveLoop().eagerlyEvaluate([this](kj::Exception&& e) {
      KJ_LOG(ERROR, "the etcd keepalive loop failed", addressText, e);
    });
  }

  Co<void> deregisterSelf(kj::Duration timeout) override {
    if (lease == 0) co_return;
    keepAliveTask = nullptr;  // no more keepalives
    int64_t id = lease;
    lease = 0;
    KJ_IF_MAYBE (e, co_await errorOf([&]() -> Co<void> {
                   bool late = co_await moveOnAfter(timer, timeout, [&]() -> Co<void> {
                     // "leaving" first, so a watcher tells this from a crash; the revoke deletes the entry.
                     auto value = encodeSelf(true);
                     co_await client.put(key, value, id);
                     co_await client.revokeLease(id);
                   });
                   if (late) {
                     HARROW_LOG_DEBUG(
                         "etcd did not answer the deregistration in time (the lease expires)",
                         addressText);
                   }
                 })) {
      HARROW_LOG_DEBUG("deregistration failed (the entry expires with its lease)", addressText, *e);
    }
  }

  Co<kj::Array<RegisteredActor>> query(kj::StringPtr name) override {
    auto entries = co_await live(name);
    co_return KJ_MAP(e, entries) {
      return kj::mv(e.actor);
    };
  }

  Co<kj::Maybe<RegisteredActor>> find(kj::StringPtr name) override {
    auto entries = co_await live(name);
    if (entries.size() == 0) co_return nullptr;
    co_return kj::mv(entries[0].actor);
  }

  Co<RegisteredActor> waitFor(kj::StringPtr nameParam) override {
    auto name = kj::heapString(nameParam);
    auto prefix = namePrefix(name);
    auto range = co_await client.rangePrefix(prefix);
    auto entries = liveOf(range.kvs);
    if (entries.size() > 0) co_return kj::mv(entries[0].actor);
    auto watch = client.watchPrefix(prefix, range.revision + 1, false);
    for (;;) {
      auto events = co_await watch->next();
      for (auto& event : events) {
        if (event.deleted) continue;
        KJ_IF_MAYBE (entry, decode(event.kv)) {
          if (!entry->leaving && entry->actor.name == name) co_return kj::mv(entry->actor);
        }
      }
    }
  }

  Co<Departure> waitForDeparture(kj::ArrayPtr<const kj::byte> uuidParam) override {
    auto suffix = kj::str("/", kj::encodeHex(uuidParam));
    auto range = co_await client.rangePrefix(actorsPrefix());
    kj::Maybe<kj::String> found;
    for (auto& kv : range.kvs) {
      if (kv.key.endsWith(suffix)) found = kj::heapString(kv.key);
    }
    kj::String entryKey;
    KJ_IF_MAYBE (k, found) {
      entryKey = kj::mv(*k);
    } else {
      co_return Departure::NOT_REGISTERED;
    }
    auto watch = client.watchPrefix(entryKey, range.revision + 1, true);
    for (;;) {
      auto events = co_await watch->next();
      for (auto& event : events) {
        if (!event.deleted || event.kv.key != entryKey) continue;
        KJ_IF_MAYBE (previous, event.previous) {
          KJ_IF_MAYBE (entry, decode(*previous)) {
            if (entry->leaving) co_return Departure::DEREGISTERED;
          }
        }
        // Deleted without saying goodbye: its lease expired (the actor or its host died).
        co_return Departure::CHANNEL_LOST;
      }
    }
  }

private:
  kj::Timer& timer;
  EtcdAddress address;
  kj::String addressText;
  EtcdClient client;
  capnp::JsonCodec codec;
  kj::Maybe<RegisteredActor> self_;
  kj::String key;
  int64_t lease = 0;
  kj::Duration grantedTtl = 0 * kj::SECONDS;
  kj::Maybe<kj::Promise<void>> keepAliveTask;

  static RegisteredActor copy(const RegisteredActor& from) {
    RegisteredActor result;
    result.name = kj::heapString(from.name);
    result.uuid = kj::heapArray(from.uuid.asPtr());
    result.pid = from.pid;
    result.addresses = KJ_MAP(a, from.addresses) {
      return kj::heapString(a);
    };
    return result;
  }

  kj::String actorsPrefix() { return kj::str(address.prefix, "/actors/"); }
  kj::String namePrefix(kj::StringPtr name) {
    return kj::str(actorsPrefix(), kj::encodeUriComponent(name), "/");
  }

  kj::String encode(const RegisteredActor& actor, bool leaving) {
    capnp::MallocMessageBuilder message;
    auto fields = message.initRoot<JsonValue>().initObject(leaving ? 5 : 4);
    fields[0].setName("name");
    fields[0].initValue().setString(actor.name);
    fields[1].setName("uuid");
    fields[1].initValue().setString(kj::encodeHex(actor.uuid));
    fields[2].setName("pid");
    fields[2].initValue().setNumber(actor.pid);
    fields[3].setName("addresses");
    auto addresses = fields[3].initValue().initArray(actor.addresses.size());
    for (auto i : kj::indices(actor.addresses)) addresses[i].setString(actor.addresses[i]);
    if (leaving) {
      fields[4].setName("leaving");
      fields[4].initValue().setBoolean(true);
    }
    return codec.encodeRaw(message.getRoot<JsonValue>().asReader());
  }

  kj::String encodeSelf(bool leaving) { return encode(KJ_ASSERT_NONNULL(self_), leaving); }

  // An entry as stored; nullptr (logged) for a value that is not one of ours: a bad entry under
  // the prefix harms no lookup.
  kj::Maybe<EntryValue> decode(const EtcdClient::KeyValue& kv) {
    EntryValue result;
    KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                   auto json = parseJson(codec, kv.value);
                   auto& actor = result.actor;
                   actor.name = kj::heapString(textField(json->root, "name"));
                   auto uuid = kj::decodeHex(textField(json->root, "uuid"));
                   KJ_REQUIRE(!uuid.hadErrors && uuid.size() > 0, "bad uuid");
                   actor.uuid = kj::mv(uuid);
                   actor.pid = intField(json->root, "pid");
                   kj::Vector<kj::String> addresses;
                   KJ_IF_MAYBE (list, field(json->root, "addresses")) {
                     KJ_REQUIRE(list->isArray(), "addresses is not an array");
                     for (auto a : list->getArray()) {
                       KJ_REQUIRE(a.isString(), "an address is not a string");
                       addresses.add(kj::heapString(a.getString()));
                     }
                   }
                   actor.addresses = addresses.releaseAsArray();
                   result.leaving = boolField(json->root, "leaving");
                   result.createRevision = kv.createRevision;
                 })) {
      KJ_LOG(WARNING, "skipping an etcd registry entry that is not one", kv.key, *e);
      return nullptr;
    }
    return kj::mv(result);
  }

  // The live (not leaving) entries among `kvs`, oldest first.
  kj::Array<EntryValue> liveOf(kj::ArrayPtr<const EtcdClient::KeyValue> kvs) {
    kj::Vector<EntryValue> result;
    for (auto& kv : kvs) {
      KJ_IF_MAYBE (entry, decode(kv)) {
        if (!entry->leaving) result.add(kj::mv(*entry));
      }
    }
    std::stable_sort(result.begin(), result.end(), [](const EntryValue& a, const EntryValue& b) {
      return a.createRevision < b.createRevision;
    });
    return result.releaseAsArray();
  }

  Co<kj::Array<EntryValue>> live(kj::StringPtr name) {
    auto prefix = name.size() == 0 ? actorsPrefix() : namePrefix(name);
    auto range = co_await client.rangePrefix(prefix);
    co_return liveOf(range.kvs);
  }

  Co<void> putSelf() {
    auto granted = co_await client.grantLease(address.ttl);
    lease = granted.id;
    grantedTtl = granted.ttl;
    auto value = encodeSelf(false);
    co_await client.put(key, value, lease);
  }

  // Every TTL/3: a keepalive; a lease found gone is replaced (the entry put again). Not a
  // coroutine: it runs in no cancel scope (the actor's startup scope has ended long before).
  kj::Promise<void> keepAliveLoop() {
    kj::Duration interval = kj::max(grantedTtl, address.ttl) / 3;
    return timer.afterDelay(interval)
        .then([this]() -> kj::Promise<void> { return keepAliveOnce(); })
        .then([this]() { return keepAliveLoop(); });
  }

  Co<void> keepAliveOnce() {
    KJ_IF_MAYBE (e, co_await errorOf([&]() -> Co<void> {
                   kj::Duration left = co_await client.keepAlive(lease);
                   if (left <= 0 * kj::SECONDS) {
                     KJ_LOG(
                         WARNING,
                         "the etcd lease of this actor's registry entry expired; registering again",
                         addressText);
                     co_await putSelf();
                   }
                 })) {
      // Try again next round; if the store stays unreachable the entry expires, and is put again
      // once it answers.
      KJ_LOG(WARNING, "cannot keep this actor's etcd registry entry alive", addressText, *e);
    }
  }
};

}  // namespace

kj::Own<RegistryBackend> newEtcdBackend(Actor& actor, EtcdAddress address,
                                        kj::StringPtr addressText) {
  return kj::heap<EtcdBackend>(actor, kj::mv(address), addressText);
}

}  // namespace harrow