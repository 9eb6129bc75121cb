// The etcd registry backend (backend.h): a tree's entries in an etcd cluster, for trees across
// hosts where no actor should have to host the registry. It talks to etcd through EtcdClient
// (etcd_client.h), which also describes the registry address and its options.
//
//   ./my_tree --harrow-registry=etcd://10.0.0.1:2379,10.0.0.2:2379/harrow/build-farm?ttl=10
//   // Discovery picks this backend for an etcd:// address; lookups work as with the registry
//   // actor: co_await harrow::findActor<CounterActor>("counter-1")
//
// Key layout: PREFIX/actors/NAME/UUID -> {"name", "uuid", "pid", "addresses", "leaving"} as JSON,
// NAME percent-encoded (so "a/b" is one path segment), UUID in hex.
//
// Guarantees: each actor grants its own lease, puts its entry under it and sends a keepalive
// every TTL/3; if the lease is lost anyway (the store was unreachable for longer than the TTL) it
// registers again. An orderly teardown marks the entry "leaving" and revokes the lease (which
// deletes the entry); a crashed actor's entry expires with its lease, TTL seconds after its last
// keepalive. waitForDeparture tells the two apart by the value the deleted entry had (etcd watch
// with prev_kv). Lookups skip entries marked leaving, as the registry actor no longer lists an
// actor that deregistered, and entries that do not decode (logged: a bad entry under the prefix
// harms no lookup). waitFor and waitForDeparture are watches: no event between the read and the
// watch is missed (the watch starts at the revision read).
//
// Why leases: nobody is left to remove a dead actor's entry (no registry actor sees its channel
// end), so each entry lives only as long as its actor keeps it alive.

#pragma once

#include <harrow/discovery/backend.h>
#include <harrow/discovery/etcd_client.h>

namespace harrow {

class Actor;

// The etcd backend for `actor` (its timer and network).
kj::Own<RegistryBackend> newEtcdBackend(Actor& actor, EtcdAddress address,
                                        kj::StringPtr addressText);

}  // namespace harrow
