// Metrics: what one actor counts about itself, and how a tree's metrics reach its root
// (docs/REFERENCE.md, "Metrics", lists every metric).
//
// Each actor (PeerHost) owns one Metrics. Actors are single-threaded, so the counters are plain
// integers bumped on the actor's own thread: no locks, no atomics, and nothing is allocated per
// task (a method's counters are made the first time it runs). Collection is on unless disabled:
// PeerHost enables it when HARROW_METRICS is set (harrow::main sets it from --harrow-metrics).
//
// The tree's metrics are pulled, not pushed: every actor serves the built-in Metrics interface
// (idl/harrow/metrics.capnp); collectTree() asks each child over its parent-child channel, and
// each child answers with its own samples plus its children's. A scrape costs one call per actor,
// and an idle tree sends nothing (a push would cost traffic on every interval, scraped or not).
//
// Hooks for other parts of the runtime: the engine counts tasks (Peer, IncomingTaskImpl), credit
// stalls (TaskStream) and channel bytes; spawn/ records spawn and teardown times; a supervisor
// calls recordRestart(child) each time it restarts one.

#pragma once

#include <harrow/co/co.h>
#include <harrow/metrics.capnp.h>
#include <harrow/typed/task.h>

#include <capnp/message.h>
#include <kj/map.h>
#include <kj/string.h>
#include <kj/time.h>
#include <kj/vector.h>

namespace harrow {

class Peer;
class PeerHost;

// A Prometheus histogram with fixed buckets, in seconds: 50 µs to 10 s, roughly 1-2.5-5 steps,
// which covers a local call (tens of µs) as well as a spawn (milliseconds) or a slow teardown.
class Histogram {
public:
  static constexpr double BOUNDS[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                      0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1,
                                      2.5,     5,      10};
  static constexpr size_t BUCKETS = sizeof(BOUNDS) / sizeof(BOUNDS[0]);

  void observe(kj::Duration duration) { observeSeconds(duration / kj::NANOSECONDS * 1e-9); }
  void observeSeconds(double seconds);

  uint64_t count() const { return total; }
  double sum() const { return sumSeconds; }
  // Observations in bucket `i` alone (not cumulative): at most BOUNDS[i] and above BOUNDS[i-1];
  // i == BUCKETS: above the last bound.
  uint64_t inBucket(size_t i) const { return counts[i]; }

private:
  uint64_t counts[BUCKETS + 1] = {};
  uint64_t total = 0;
  double sumSeconds = 0;
};

// The incoming tasks of one method of one interface this actor serves.
struct MethodStats {
  kj::String interfaceName;
  kj::String methodName;
  uint64_t started = 0;
  uint64_t finished = 0;  // every task that ended, failed ones included
  uint64_t failed = 0;    // ended with an error (the handler threw, or the task was torn down)
  Histogram duration;
};

// Counts one incoming task: started when made, finished (and failed unless succeeded() was
// called) when destroyed, with its duration. A null `stats` (metrics off) does nothing.
class TaskTimer {
public:
  explicit TaskTimer(MethodStats* stats);
  ~TaskTimer() noexcept(false);
  KJ_DISALLOW_COPY(TaskTimer);
  void succeeded() { ok = true; }

private:
  MethodStats* stats;
  kj::TimePoint begin = kj::origin<kj::TimePoint>();
  bool ok = false;
};

class Metrics {
public:
  Metrics();
  ~Metrics() noexcept(false);
  KJ_DISALLOW_COPY(Metrics);

  bool enabled() const { return on; }
  void setEnabled(bool enable) { on = enable; }

  // ---- hooks (cheap: plain increments on the actor's thread) ----

  // The counters of `server`'s method `methodId`, made on first use.
  MethodStats& method(ActorServer& server, uint16_t methodId);
  // A stream sender found no credit and had to wait for its receiver.
  void creditStall() { ++creditStalls; }
  // Outgoing tasks (calls, streams, contexts this actor started) opening and ending.
  void outgoingOpened() { ++outgoingLive; }
  void outgoingClosed() { --outgoingLive; }
  // A child of this actor took `duration` from spawning until its portal was ready; a child's
  // teardown (cancel-actor until reaped) took `duration`.
  void spawned(kj::Duration duration) { spawnTimes.observe(duration); }
  void tornDown(kj::Duration duration) { teardownTimes.observe(duration); }
  // For supervisors: this actor restarted its child `child` (harrow_restarts_total{child=...}).
  void recordRestart(kj::StringPtr child);

  // The engine's: every Peer of this actor, while it exists (its channel's bytes; the children
  // collectTree() asks).
  void peerOpened(Peer& peer);
  void peerClosed(Peer& peer);

  // ---- reading ----

  // This actor's samples, every one labelled actor="<actorName>", appended to `out`.
  struct LabelPair {
    kj::String name;
    kj::String value;
  };
  struct SampleData {
    kj::StringPtr suffix;
    kj::Vector<LabelPair> labels;
    double value;
  };
  struct FamilyData {
    kj::StringPtr name;
    kj::StringPtr help;
    kj::StringPtr type;
    kj::Vector<SampleData> samples;
  };
  kj::Vector<FamilyData> families(kj::StringPtr actorName) const;

  // The children of this actor (peers of trust CHILD), in the order they were spawned.
  kj::Vector<Peer*> children() const;

  // The built-in server of interface Metrics (METRICS_INTERFACE_ID) for `host`.
  ActorServer& server(PeerHost& host);

private:
  struct MethodKey {
    uint64_t interfaceId;
    uint16_t methodId;
    bool operator==(const MethodKey& other) const {
      return interfaceId == other.interfaceId && methodId == other.methodId;
    }
    unsigned int hashCode() const { return kj::hashCode(interfaceId, methodId); }
  };

  bool on = false;
  kj::HashMap<MethodKey, kj::Own<MethodStats>> methods;
  kj::Vector<MethodStats*> methodOrder;  // for a stable exposition
  uint64_t creditStalls = 0;
  int64_t outgoingLive = 0;
  Histogram spawnTimes;
  Histogram teardownTimes;
  kj::HashMap<kj::String, uint64_t> restarts;
  kj::Vector<Peer*> peers;
  uint64_t closedBytesSent = 0;      // of channels already gone
  uint64_t closedBytesReceived = 0;
  kj::Maybe<kj::Own<ActorServer>> builtin;
};

// The id of interface Metrics on the wire (idl/harrow/metrics.capnp).
uint64_t metricsInterfaceId();

// The metrics of `host` and of every actor below it (asked over the protocol), as one Snapshot
// message. A child that does not answer (it is exiting, or runs without metrics) is left out.
Co<kj::Own<capnp::MallocMessageBuilder>> collectTree(PeerHost& host);

// Prometheus' text exposition format (version 0.0.4) of `snapshot`: families of the same name
// merged, HELP and TYPE once each, label values escaped, histogram buckets cumulative.
kj::String renderExposition(metrics::Snapshot::Reader snapshot);

// Writes `families` into `out` (what collect answers).
void fillSnapshot(kj::ArrayPtr<const Metrics::FamilyData> families,
                  metrics::Snapshot::Builder out);

}  // namespace harrow
