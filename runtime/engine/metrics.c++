#include <harrow/engine/metrics.h>

#include <harrow/co/cancel_scope.h>
#include <harrow/co/log_level.h>
#include <harrow/engine/peer.h>

#include <kj/debug.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

namespace harrow {

void Histogram::observeSeconds(double seconds) {
  size_t i = 0;
  while (i < BUCKETS && seconds > BOUNDS[i]) ++i;
  ++counts[i];
  ++total;
  sumSeconds += seconds;
}

TaskTimer::TaskTimer(MethodStats* stats) : stats(stats) {
  if (stats == nullptr) return;
  ++stats->started;
  begin = kj::systemPreciseMonotonicClock().now();
}

TaskTimer::~TaskTimer() noexcept(false) {
  if (stats == nullptr) return;
  ++stats->finished;
  if (!ok) ++stats->failed;
  stats->duration.observe(kj::systemPreciseMonotonicClock().now() - begin);
}

Metrics::Metrics() {
  const char* address = getenv("HARROW_METRICS");
  on = address != nullptr && *address != '\0';
}

Metrics::~Metrics() noexcept(false) {}

MethodStats& Metrics::method(ActorServer& server, uint16_t methodId) {
  MethodKey key{server.interfaceId(), methodId};
  KJ_IF_MAYBE(stats, methods.find(key)) return **stats;
  auto stats = kj::heap<MethodStats>();
  stats->interfaceName = kj::heapString(server.interfaceName());
  stats->methodName = kj::heapString(server.methodName(methodId));
  methodOrder.add(stats.get());
  return *methods.insert(key, kj::mv(stats)).value;
}

void Metrics::recordRestart(kj::StringPtr child) {
  KJ_IF_MAYBE(count, restarts.find(child)) {
    ++*count;
  } else {
    restarts.insert(kj::heapString(child), 1);
  }
}

void Metrics::peerOpened(Peer& peer) { peers.add(&peer); }

void Metrics::peerClosed(Peer& peer) {
  for (size_t i = 0; i < peers.size(); ++i) {
    if (peers[i] != &peer) continue;
    closedBytesSent += peer.channel().bytesSent();
    closedBytesReceived += peer.channel().bytesReceived();
    // Order matters only for children (spawn order): shift, do not swap.
    for (size_t j = i + 1; j < peers.size(); ++j) peers[j - 1] = peers[j];
    peers.removeLast();
    return;
  }
}

kj::Vector<Peer*> Metrics::children() const {
  kj::Vector<Peer*> result;
  for (Peer* peer : peers) {
    if (peer->trust() == PeerTrust::CHILD) result.add(peer);
  }
  return result;
}

namespace {

kj::Vector<Metrics::LabelPair> labels(kj::StringPtr actor) {
  kj::Vector<Metrics::LabelPair> result;
  result.add(Metrics::LabelPair{kj::str("actor"), kj::str(actor)});
  return result;
}

kj::Vector<Metrics::LabelPair> labels(kj::StringPtr actor, const MethodStats& stats) {
  auto result = labels(actor);
  result.add(Metrics::LabelPair{kj::str("interface"), kj::str(stats.interfaceName)});
  result.add(Metrics::LabelPair{kj::str("method"), kj::str(stats.methodName)});
  return result;
}

kj::Vector<Metrics::LabelPair> copy(const kj::Vector<Metrics::LabelPair>& from) {
  kj::Vector<Metrics::LabelPair> result;
  for (auto& label : from) result.add(Metrics::LabelPair{kj::str(label.name), kj::str(label.value)});
  return result;
}

// The shortest text that reads back as `value`, as Go's strconv 'g' -1 prints it (and so
// Prometheus' own clients print bucket bounds: 5e-05, 0.25, 10): at least 6 significant digits
// allowed before an exponent, trailing zeros dropped.
kj::String shortest(double value) {
  char buffer[32];
  int precision = 1;
  for (; precision < 17; ++precision) {
    snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (strtod(buffer, nullptr) == value) break;
  }
  snprintf(buffer, sizeof(buffer), "%.*g", kj::max(precision, 6), value);
  return kj::heapString(buffer);
}

void addHistogram(Metrics::FamilyData& family, const kj::Vector<Metrics::LabelPair>& base,
                  const Histogram& histogram) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= Histogram::BUCKETS; ++i) {
    cumulative += histogram.inBucket(i);
    auto withLe = copy(base);
    withLe.add(Metrics::LabelPair{
        kj::str("le"), i < Histogram::BUCKETS ? shortest(Histogram::BOUNDS[i]) : kj::str("+Inf")});
    family.samples.add(Metrics::SampleData{"_bucket", kj::mv(withLe), double(cumulative)});
  }
  family.samples.add(Metrics::SampleData{"_sum", copy(base), histogram.sum()});
  family.samples.add(Metrics::SampleData{"_count", copy(base), double(histogram.count())});
}

}  // namespace

kj::Vector<Metrics::FamilyData> Metrics::families(kj::StringPtr actor) const {
  kj::Vector<FamilyData> result;
  auto family = [&](kj::StringPtr name, kj::StringPtr type, kj::StringPtr help) -> FamilyData& {
    return result.add(FamilyData{name, help, type, {}});
  };
  auto perMethod = [&](kj::StringPtr name, kj::StringPtr type, kj::StringPtr help,
                       auto value) {
    auto& f = family(name, type, help);
    for (MethodStats* stats : methodOrder) {
      f.samples.add(SampleData{"", labels(actor, *stats), double(value(*stats))});
    }
  };
  perMethod("harrow_calls_started_total", "counter",
            "Incoming tasks (calls, streams, contexts) this actor started, per method.",
            [](const MethodStats& s) { return s.started; });
  perMethod("harrow_calls_finished_total", "counter",
            "Incoming tasks that ended, failed ones included, per method.",
            [](const MethodStats& s) { return s.finished; });
  perMethod("harrow_calls_failed_total", "counter",
            "Incoming tasks that ended with an error, per method.",
            [](const MethodStats& s) { return s.failed; });
  perMethod("harrow_tasks_in_flight", "gauge",
            "Incoming tasks running now, per method.",
            [](const MethodStats& s) { return s.started - s.finished; });
  {
    auto& f = family("harrow_call_duration_seconds", "histogram",
                     "How long incoming tasks ran, from start message to final message.");
    for (MethodStats* stats : methodOrder) addHistogram(f, labels(actor, *stats), stats->duration);
  }
  family("harrow_outgoing_tasks_in_flight", "gauge",
         "Tasks this actor started on other actors that have not ended yet.")
      .samples.add(SampleData{"", labels(actor), double(outgoingLive)});
  family("harrow_stream_credit_stalls_total", "counter",
         "Times a stream sender of this actor had no credit and waited for its receiver.")
      .samples.add(SampleData{"", labels(actor), double(creditStalls)});
  addHistogram(family("harrow_spawn_duration_seconds", "histogram",
                      "How long this actor's children took from spawn to a ready portal."),
               labels(actor), spawnTimes);
  addHistogram(family("harrow_teardown_duration_seconds", "histogram",
                      "How long this actor's children took from cancel to reaped."),
               labels(actor), teardownTimes);
  {
    auto& f = family("harrow_restarts_total", "counter",
                     "Times this actor's supervisor restarted a child, per child name.");
    for (auto& entry : restarts) {
      auto l = labels(actor);
      l.add(LabelPair{kj::str("child"), kj::str(entry.key)});
      f.samples.add(SampleData{"", kj::mv(l), double(entry.value)});
    }
  }
  uint64_t sent = closedBytesSent;
  uint64_t received = closedBytesReceived;
  for (Peer* peer : peers) {
    sent += peer->channel().bytesSent();
    received += peer->channel().bytesReceived();
  }
  family("harrow_channel_sent_bytes_total", "counter",
         "Bytes this actor wrote to its channels (frames, framing included).")
      .samples.add(SampleData{"", labels(actor), double(sent)});
  family("harrow_channel_received_bytes_total", "counter",
         "Bytes this actor read from its channels (whole frames).")
      .samples.add(SampleData{"", labels(actor), double(received)});
  return result;
}

void fillSnapshot(kj::ArrayPtr<const Metrics::FamilyData> families,
                  metrics::Snapshot::Builder out) {
  auto list = out.initFamilies(families.size());
  for (size_t i = 0; i < families.size(); ++i) {
    auto& from = families[i];
    auto to = list[i];
    to.setName(from.name);
    to.setHelp(from.help);
    to.setType(from.type);
    auto samples = to.initSamples(from.samples.size());
    for (size_t j = 0; j < from.samples.size(); ++j) {
      auto& sample = from.samples[j];
      samples[j].setSuffix(sample.suffix);
      samples[j].setValue(sample.value);
      auto labelList = samples[j].initLabels(sample.labels.size());
      for (size_t k = 0; k < sample.labels.size(); ++k) {
        labelList[k].setName(sample.labels[k].name);
        labelList[k].setValue(sample.labels[k].value);
      }
    }
  }
}

uint64_t metricsInterfaceId() { return metrics::INTERFACE_ID; }

namespace {

// One child's answer, or nullptr if it gave none: a child that is exiting or runs without
// metrics must not fail the scrape of everyone else.
Co<kj::Maybe<kj::Own<IncomingMessage>>> askChild(Peer& child) {
  auto start = child.newStart(metricsInterfaceId(), 0);
  start->init<metrics::CollectParams>();
  kj::String who = child.remote().toString();
  auto answer = co_await errorOr([&]() { return child.call(kj::mv(start)); });
  KJ_IF_MAYBE(e, answer.error()) {
    HARROW_LOG_DEBUG("metrics: a child did not answer; left out of this scrape", who, *e);
    co_return nullptr;
  }
  co_return kj::mv(*answer);
}

// This actor's metrics and its children's (each of theirs includes their own children's).
Co<void> collectInto(PeerHost& host,  // the actor, which outlives its tasks
                     metrics::Snapshot::Builder out) {
  kj::Vector<kj::Promise<kj::Maybe<kj::Own<IncomingMessage>>>> asks;
  for (Peer* child : host.metrics().children()) asks.add(askChild(*child));
  auto answers = co_await kj::joinPromises(asks.releaseAsArray());
  // Counted after the children answered: this actor's own figures as late as possible.
  auto own = host.metrics().families(host.identity().name);
  size_t total = own.size();
  kj::Vector<metrics::Snapshot::Reader> theirs;
  for (auto& answer : answers) {
    KJ_IF_MAYBE(message, answer) {
      auto snapshot = (*message)->get<metrics::Snapshot>();
      theirs.add(snapshot);
      total += snapshot.getFamilies().size();
    }
  }
  auto list = out.initFamilies(total);
  {
    capnp::MallocMessageBuilder scratch;
    auto mine = scratch.initRoot<metrics::Snapshot>();
    fillSnapshot(own, mine);
    size_t i = 0;
    for (auto family : mine.getFamilies()) list.setWithCaveats(i++, family);
    for (auto snapshot : theirs) {
      for (auto family : snapshot.getFamilies()) list.setWithCaveats(i++, family);
    }
  }
}

class MetricsServer final : public ActorServer {
public:
  explicit MetricsServer(PeerHost& host) : host(host) {}
  uint64_t interfaceId() const override { return metricsInterfaceId(); }
  kj::StringPtr interfaceName() const override { return "harrow.Metrics"; }
  kj::Maybe<MethodKind> methodKind(uint16_t methodId) const override {
    if (methodId == 0) return MethodKind::CALL;
    return nullptr;
  }
  kj::StringPtr methodName(uint16_t methodId) const override {
    return methodId == 0 ? "collect"_kj : "?"_kj;
  }
  Co<void> dispatch(uint16_t methodId, IncomingTask& task) override {
    KJ_REQUIRE(methodId == 0);
    task.params().get<metrics::CollectParams>();  // the decode check
    co_await collectInto(host, task.results().init<metrics::Snapshot>());
  }

private:
  PeerHost& host;
};

void appendEscaped(kj::Vector<char>& out, kj::StringPtr text, bool quotes) {
  for (char c : text) {
    if (c == '\\') {
      out.addAll("\\\\"_kj);
    } else if (c == '\n') {
      out.addAll("\\n"_kj);
    } else if (c == '"' && quotes) {
      out.addAll("\\\""_kj);
    } else {
      out.add(c);
    }
  }
}

void append(kj::Vector<char>& out, kj::StringPtr text) { out.addAll(text); }

kj::String formatValue(double value) {
  if (isnan(value)) return kj::str("NaN");
  if (isinf(value)) return kj::str(value > 0 ? "+Inf" : "-Inf");
  if (value == floor(value) && fabs(value) < 9007199254740992.0) {
    return kj::str(int64_t(value));
  }
  return shortest(value);
}

}  // namespace

ActorServer& Metrics::server(PeerHost& host) {
  KJ_IF_MAYBE(s, builtin) return **s;
  return *builtin.emplace(kj::heap<MetricsServer>(host));
}

Co<kj::Own<capnp::MallocMessageBuilder>> collectTree(PeerHost& host) {
  auto message = kj::heap<capnp::MallocMessageBuilder>();
  co_await collectInto(host, message->initRoot<metrics::Snapshot>());
  co_return kj::mv(message);
}

kj::String renderExposition(metrics::Snapshot::Reader snapshot) {
  // Families of one name, from every actor, together (the format wants each name once).
  struct Group {
    metrics::Family::Reader first;
    kj::Vector<metrics::Family::Reader> parts;
  };
  kj::Vector<Group> groups;
  kj::HashMap<kj::StringPtr, size_t> byName;
  for (auto family : snapshot.getFamilies()) {
    kj::StringPtr name = family.getName();
    KJ_IF_MAYBE(index, byName.find(name)) {
      groups[*index].parts.add(family);
    } else {
      byName.insert(name, groups.size());
      auto& group = groups.add(Group{family, {}});
      group.parts.add(family);
    }
  }
  kj::Vector<char> out(4096);
  for (auto& group : groups) {
    size_t samples = 0;
    for (auto part : group.parts) samples += part.getSamples().size();
    if (samples == 0) continue;  // e.g. no restarts yet: say nothing
    kj::StringPtr name = group.first.getName();
    append(out, "# HELP ");
    append(out, name);
    out.add(' ');
    appendEscaped(out, group.first.getHelp(), /*quotes=*/false);
    append(out, "\n# TYPE ");
    append(out, name);
    out.add(' ');
    append(out, group.first.getType());
    out.add('\n');
    for (auto part : group.parts) {
      for (auto sample : part.getSamples()) {
        append(out, name);
        append(out, sample.getSuffix());
        auto labelList = sample.getLabels();
        if (labelList.size() > 0) {
          out.add('{');
          for (size_t i = 0; i < labelList.size(); ++i) {
            if (i > 0) out.add(',');
            append(out, labelList[i].getName());
            append(out, "=\"");
            appendEscaped(out, labelList[i].getValue(), /*quotes=*/true);
            out.add('"');
          }
          out.add('}');
        }
        out.add(' ');
        append(out, formatValue(sample.getValue()));
        out.add('\n');
      }
    }
  }
  out.add('\0');
  return kj::String(out.releaseAsArray());
}

}  // namespace harrow
