// The Prometheus text exposition harrow renders (<harrow/engine/metrics.h>) and its JSON log
// lines (<harrow/actor/log.h>): escaping, cumulative histogram buckets with +Inf, _sum and
// _count, families merged across actors, label values round-tripping through JSON.

#include <harrow/actor/log.h>
#include <harrow/engine/metrics.h>

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <gtest/gtest.h>

#include <string>

namespace harrow {
namespace {

std::string render(kj::ArrayPtr<const Metrics::FamilyData> families) {
  capnp::MallocMessageBuilder message;
  auto snapshot = message.initRoot<metrics::Snapshot>();
  fillSnapshot(families, snapshot);
  return renderExposition(snapshot.asReader()).cStr();
}

Metrics::SampleData sample(kj::StringPtr suffix, kj::StringPtr label, kj::StringPtr value,
                           double number) {
  kj::Vector<Metrics::LabelPair> labels;
  labels.add(Metrics::LabelPair{kj::str(label), kj::str(value)});
  return Metrics::SampleData{suffix, kj::mv(labels), number};
}

TEST(Exposition, EscapesLabelValuesAndHelp) {
  kj::Vector<Metrics::FamilyData> families;
  auto& f = families.add(Metrics::FamilyData{"x_total", "a \\ b\nc", "counter", {}});
  f.samples.add(sample("", "actor", "q\"uo\\te\nnl", 3));
  EXPECT_EQ(render(families),
            "# HELP x_total a \\\\ b\\nc\n"
            "# TYPE x_total counter\n"
            "x_total{actor=\"q\\\"uo\\\\te\\nnl\"} 3\n");
}

TEST(Exposition, MergesFamiliesOfOneNameAndSkipsEmptyOnes) {
  kj::Vector<Metrics::FamilyData> families;
  families.add(Metrics::FamilyData{"a_total", "A.", "counter", {}})
      .samples.add(sample("", "actor", "one", 1));
  families.add(Metrics::FamilyData{"empty_total", "None.", "counter", {}});
  families.add(Metrics::FamilyData{"a_total", "A.", "counter", {}})
      .samples.add(sample("", "actor", "two", 2.5));
  EXPECT_EQ(render(families),
            "# HELP a_total A.\n"
            "# TYPE a_total counter\n"
            "a_total{actor=\"one\"} 1\n"
            "a_total{actor=\"two\"} 2.5\n");
}

TEST(Exposition, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Metrics metrics;
  metrics.spawned(30 * kj::MICROSECONDS);   // le 5e-05
  metrics.spawned(3 * kj::MILLISECONDS);    // le 0.005
  metrics.spawned(3 * kj::MILLISECONDS);
  metrics.spawned(20 * kj::SECONDS);        // above every bound: only +Inf
  auto families = metrics.families("root");
  std::string text = render(families);
  auto line = [&](const std::string& le, const std::string& count) {
    return "harrow_spawn_duration_seconds_bucket{actor=\"root\",le=\"" + le + "\"} " + count +
           "\n";
  };
  EXPECT_NE(text.find("# TYPE harrow_spawn_duration_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find(line("5e-05", "1")), std::string::npos) << text;
  EXPECT_NE(text.find(line("0.0025", "1")), std::string::npos) << text;
  EXPECT_NE(text.find(line("0.005", "3")), std::string::npos) << text;
  EXPECT_NE(text.find(line("10", "3")), std::string::npos) << text;
  EXPECT_NE(text.find(line("+Inf", "4")), std::string::npos) << text;
  EXPECT_NE(text.find("harrow_spawn_duration_seconds_sum{actor=\"root\"} 20.00603\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("harrow_spawn_duration_seconds_count{actor=\"root\"} 4\n"),
            std::string::npos) << text;
  // Buckets in increasing order, +Inf last, then _sum and _count.
  EXPECT_LT(text.find(line("5e-05", "1")), text.find(line("0.005", "3")));
  EXPECT_LT(text.find(line("10", "3")), text.find(line("+Inf", "4")));
  EXPECT_LT(text.find(line("+Inf", "4")), text.find("harrow_spawn_duration_seconds_sum"));
}

TEST(Exposition, RestartsCountPerChild) {
  Metrics metrics;
  metrics.recordRestart("worker-1");
  metrics.recordRestart("worker-1");
  metrics.recordRestart("worker-2");
  std::string text = render(metrics.families("sup"));
  EXPECT_NE(text.find("harrow_restarts_total{actor=\"sup\",child=\"worker-1\"} 2\n"),
            std::string::npos) << text;
  EXPECT_NE(text.find("harrow_restarts_total{actor=\"sup\",child=\"worker-2\"} 1\n"),
            std::string::npos) << text;
}

TEST(JsonLog, OneObjectPerLineWithEveryFieldEscaped) {
  kj::StringPtr tricky = "say \"hi\"\\ \n\ttab \x01 end";
  auto line = jsonLogLine(kj::LogSeverity::WARNING, "act\"or", "Counter.add#3", tricky,
                          "runtime/x.c++", 12);
  EXPECT_EQ(kj::StringPtr(line).findFirst('\n'), nullptr) << line.cStr();
  SCOPED_TRACE(line.cStr());
  capnp::JsonCodec codec;
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<capnp::JsonValue>();
  codec.decodeRaw(line, root);
  ASSERT_TRUE(root.isObject());
  auto field = [&](kj::StringPtr name) -> capnp::JsonValue::Reader {
    for (auto f : root.asReader().getObject()) {
      if (f.getName() == name) return f.getValue();
    }
    KJ_FAIL_REQUIRE("no such field", name);
  };
  auto text = [&](kj::StringPtr name) -> std::string { return field(name).getString().cStr(); };
  EXPECT_EQ(text("message"), tricky.cStr());
  EXPECT_EQ(text("actor"), "act\"or");
  EXPECT_EQ(text("task"), "Counter.add#3");
  EXPECT_EQ(text("level"), "warning");
  EXPECT_EQ(text("file"), "runtime/x.c++");
  EXPECT_EQ(field("line").getNumber(), 12);
  EXPECT_EQ(field("pid").getNumber(), getpid());
  EXPECT_EQ(text("time").size(), strlen("2026-11-29T10:54:53.123Z"));
}

TEST(JsonLog, UnknownFormatIsRefused) {
  EXPECT_EQ(parseLogFormat("json"), LogFormat::JSON);
  EXPECT_EQ(parseLogFormat("text"), LogFormat::TEXT);
  EXPECT_ANY_THROW(parseLogFormat("xml"));
}

}  // namespace
}  // namespace harrow
