// Worker pools (runtime/spawn/worker_pool.h) across real processes: map keeps the input order,
// mapUnordered delivers every item once, the work is spread over the workers, a worker killed in
// the middle of a map is replaced and its items retried, a poison item (one that kills every
// worker taking it) is reported after its tries under RETRY and at once under REPORT, an item
// whose handler raised is reported while its worker lives on, a pool under the caller's own
// supervisor stops only its workers, and a cancelled pool leaves no process.
//
// This binary is a harrow program: run with --harrow-child it is a Squarer; otherwise it runs the
// tests, each below an in-process root actor. After every test no child process of ours may be
// left, nor any pid a worker reported. Synchronisation is by events only (results, errors);
// failAfter() and a watchdog alarm are the failure guards.

#include <harrow/harrow.h>
#include "tests/spawn/pool/pool.capnp.harrow.h"
#include "tests/processes.h"
#include "tests/root_test.h"
#include "tests/test_main.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <signal.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

namespace harrow {
namespace {

class SquarerImpl final : public SquarerActor::Server {
public:
  Co<void> work(WorkCall call) override {
    co_await serveItems(call, [](Squarer::Job::Reader job, Squarer::Done::Builder done) {
      if (job.getSleepMicros() > 0) usleep(job.getSleepMicros());
      if (job.getCrash()) _exit(3);
      KJ_REQUIRE(!job.getFail(), "this item is refused", job.getN());
      done.setSquare(job.getN() * job.getN());
      done.setPid(getpid());
    });
  }
  Co<void> pid(PidCall call) override {
    call.results().setPid(getpid());
    co_return;
  }
  Co<void> sumOfSquares(SumOfSquaresCall call) override {
    std::vector<int64_t> numbers;
    for (int64_t n = 0; n < call.params().getUpTo(); ++n) numbers.push_back(n);
    int64_t sum = 0;
    // In the current actor: its workers are this actor's children.
    co_await openWorkerPool<SquarerImpl>(call.params().getWorkers(), &SquarerActor::Server::work,
        [&](WorkerPool<WorkCall>& pool) -> Co<void> {
      co_await pool.mapUnordered(numbers,
          [](Squarer::Job::Builder job, int64_t n) { job.setN(n); },
          [&](size_t, Squarer::Done::Reader done) { sum += done.getSquare(); });
    });
    call.results().setSum(sum);
  }
};

Implementations& implementations() {
  static Implementations* impls = []() {
    auto* i = new Implementations;
    i->add<SquarerImpl>("squarer");
    return i;
  }();
  return *impls;
}

using testing::childrenOf;

std::string text(const kj::Exception& e) { return e.getDescription().cStr(); }

// What each test sends: item i squares i; some sleep, one may be poison or refused.
struct Job {
  int64_t n;
  uint32_t sleepMicros = 0;
  bool crash = false;
  bool fail = false;
};

void fillJob(Squarer::Job::Builder b, const Job& job) {
  b.setN(job.n);
  b.setSleepMicros(job.sleepMicros);
  b.setCrash(job.crash);
  b.setFail(job.fail);
}

std::vector<Job> jobs(size_t count, uint32_t sleepMicros = 0) {
  std::vector<Job> all;
  for (size_t i = 0; i < count; ++i) all.push_back({.n = int64_t(i), .sleepMicros = sleepMicros});
  return all;
}

using Pool = WorkerPool<SquarerActor::Server::WorkCall>;

class PoolTest : public testing::RootTest<> {
protected:
  PoolTest() : RootTest("pool-test", implementations()) {}

  // What a mapUnordered with onFailure saw: answers per item, failed items, items retried.
  struct Outcome {
    std::vector<int> answered;
    std::vector<std::pair<size_t, kj::Exception>> failed;
    uint64_t retried = 0;
  };

  // `inputs` through a pool of two workers, failures reported (the map goes on).
  Outcome mapReporting(const std::vector<Job>& inputs, WorkerPoolOptions options) {
    Outcome outcome;
    outcome.answered.assign(inputs.size(), 0);
    auto failure = runRoot([&]() -> Co<void> {
      co_await openWorkerPool<SquarerImpl>(root, 2, &SquarerActor::Server::work,
                                           [&](Pool& pool) -> Co<void> {
        co_await pool.mapUnordered(inputs, fillJob,
            [&](size_t i, Squarer::Done::Reader done) {
              ++outcome.answered[i];
              EXPECT_EQ(done.getSquare(), int64_t(i * i)) << i;
              known.insert(done.getPid());
            },
            [&](size_t i, kj::Exception&& e) { outcome.failed.emplace_back(i, kj::mv(e)); });
        outcome.retried = pool.retried();
      }, options);
    });
    KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
    return outcome;
  }

  static void expectEachAnsweredOnceBut(const Outcome& outcome, size_t failedItem) {
    for (size_t i = 0; i < outcome.answered.size(); ++i) {
      ASSERT_EQ(outcome.answered[i], i == failedItem ? 0 : 1) << "item " << i;
    }
  }

  // harrow_restarts_total of the root, all children together.
  double restartsMetric() {
    double total = 0;
    for (auto& family : root.metrics().families(root.identity().name)) {
      if (family.name != "harrow_restarts_total") continue;
      for (auto& sample : family.samples) total += sample.value;
    }
    return total;
  }
};

// ---------------------------------------------------------------------------------------------
// Results

TEST_F(PoolTest, MapGivesTheResultsInInputOrderAndSpreadsTheWork) {
  auto inputs = jobs(2000);
  inputs[7].sleepMicros = 20000;  // one slow item: later ones overtake it, not in the results
  auto failure = runRoot([&]() -> Co<void> {
    co_await openWorkerPool<SquarerImpl>(root, 2, &SquarerActor::Server::work,
                                         [&](Pool& pool) -> Co<void> {
      EXPECT_EQ(pool.size(), 2u);
      EXPECT_EQ(pool.workerName(1), "worker-1");
      auto results = co_await pool.map(inputs, fillJob);
      EXPECT_EQ(results.size(), inputs.size());
      std::set<pid_t> pids;
      for (size_t i = 0; i < results.size(); ++i) {
        EXPECT_TRUE(results[i]) << i;
        if (!results[i]) continue;
        EXPECT_EQ(results[i]->getSquare(), int64_t(i * i)) << i;
        pids.insert(results[i]->getPid());
      }
      known.insert(pids.begin(), pids.end());
      EXPECT_EQ(pids.size(), 2u) << "both workers took items";
      EXPECT_EQ(pool.retried(), 0u);
      // The same, each result taken as a value.
      auto squares = co_await pool.map(inputs, fillJob,
                                       [](Squarer::Done::Reader done) { return done.getSquare(); });
      for (size_t i = 0; i < squares.size(); ++i) EXPECT_EQ(squares[i], int64_t(i * i)) << i;
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

TEST_F(PoolTest, MapUnorderedDeliversEveryItemExactlyOnce) {
  auto inputs = jobs(3000);
  std::vector<int> seen(inputs.size(), 0);
  auto failure = runRoot([&]() -> Co<void> {
    co_await openWorkerPool<SquarerImpl>(root, 3, &SquarerActor::Server::work,
                                         [&](Pool& pool) -> Co<void> {
      co_await pool.mapUnordered(inputs, fillJob, [&](size_t i, Squarer::Done::Reader done) {
        ++seen[i];
        EXPECT_EQ(done.getSquare(), int64_t(i * i)) << i;
        known.insert(done.getPid());
      });
      // A second map on the same pool, fewer items than workers.
      auto few = jobs(2);
      auto results = co_await pool.map(few, fillJob);
      EXPECT_EQ(results[1]->getSquare(), 1);
      auto none = co_await pool.map(jobs(0), fillJob);
      EXPECT_EQ(none.size(), 0u);
    }, {.inFlight = 4});
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], 1) << "item " << i;
  EXPECT_EQ(known.size(), 3u);
}

TEST_F(PoolTest, TwoMapsAtOnceShareTheWorkers) {
  auto first = jobs(1500);
  auto second = jobs(700);
  for (auto& job : second) job.n += 10000;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openWorkerPool<SquarerImpl>(root, 2, &SquarerActor::Server::work,
                                         [&](Pool& pool) -> Co<void> {
      kj::Array<Received<Squarer::Done>> a, b;
      co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
        tasks.startSoon([&]() -> Co<void> { a = co_await pool.map(first, fillJob); });
        b = co_await pool.map(second, fillJob);
      });
      for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i]->getSquare(), int64_t(i * i)) << i;
      for (size_t i = 0; i < b.size(); ++i) {
        EXPECT_EQ(b[i]->getSquare(), int64_t((i + 10000) * (i + 10000))) << i;
        known.insert(b[i]->getPid());
      }
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

TEST_F(PoolTest, AMapCancelledMidwayLeavesThePoolUsable) {
  auto slow = jobs(100000, 50);
  auto quick = jobs(300);
  size_t answered = 0;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openWorkerPool<SquarerImpl>(root, 2, &SquarerActor::Server::work,
                                         [&](Pool& pool) -> Co<void> {
      CancelScope scope;
      co_await scope.run([&]() -> Co<void> {
        co_await pool.mapUnordered(slow, fillJob, [&](size_t, Squarer::Done::Reader done) {
          known.insert(done.getPid());
          if (++answered == 200) scope.cancel();
        });
      });
      EXPECT_TRUE(scope.cancelledCaught());
      auto results = co_await pool.map(quick, fillJob);
      for (size_t i = 0; i < results.size(); ++i) {
        EXPECT_EQ(results[i]->getSquare(), int64_t(i * i)) << i;
        known.insert(results[i]->getPid());
      }
      EXPECT_EQ(pool.restarts(), 0u) << "the workers served the next map";
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  EXPECT_EQ(known.size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Workers that die

TEST_F(PoolTest, AWorkerKilledMidMapIsReplacedAndItsItemsRetried) {
  auto inputs = jobs(1000, 200);  // 0.2 ms each: the map lasts about 100 ms on two workers
  std::vector<int> seen(inputs.size(), 0);
  pid_t killed = 0;
  std::set<pid_t> after;  // pids answering after the kill
  auto failure = runRoot([&]() -> Co<void> {
    co_await openWorkerPool<SquarerImpl>(root, 2, &SquarerActor::Server::work,
                                         [&](Pool& pool) -> Co<void> {
      size_t count = 0;
      co_await pool.mapUnordered(inputs, fillJob, [&](size_t i, Squarer::Done::Reader done) {
        ++seen[i];
        known.insert(done.getPid());
        if (killed != 0 && done.getPid() != killed) after.insert(done.getPid());
        if (++count == 100) {
          killed = done.getPid();
          KJ_SYSCALL(kill(killed, SIGKILL));
        }
      });
      EXPECT_GT(pool.retried(), 0u) << "the killed worker's items in flight were sent again";
      EXPECT_EQ(pool.restarts(), 1u);
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], 1) << "item " << i;
  EXPECT_EQ(after.size(), 2u) << "the other worker and the killed one's replacement";
  EXPECT_EQ(restartsMetric(), 1.0);
}

TEST_F(PoolTest, APoisonItemIsReportedAfterItsTriesAndTheRestAreDone) {
  auto inputs = jobs(400, 100);
  inputs[123].crash = true;  // kills every worker that takes it
  auto outcome = mapReporting(inputs, {.attempts = 3});
  ASSERT_EQ(outcome.failed.size(), 1u);
  EXPECT_EQ(outcome.failed[0].first, 123u);
  EXPECT_TRUE(is(outcome.failed[0].second, ErrorKind::ACTOR_RESTARTED))
      << text(outcome.failed[0].second);
  expectEachAnsweredOnceBut(outcome, 123);
  // One died with it among its items in flight, then three on it alone; each was replaced.
  EXPECT_EQ(restartsMetric(), 4.0);
}

TEST_F(PoolTest, UnderReportAPoisonItemIsReportedAtOnceAndItsNeighboursRetried) {
  auto inputs = jobs(300, 100);
  inputs[50].crash = true;
  auto outcome = mapReporting(inputs, {.onLoss = OnWorkerLoss::REPORT});
  ASSERT_EQ(outcome.failed.size(), 1u);
  EXPECT_EQ(outcome.failed[0].first, 50u);
  expectEachAnsweredOnceBut(outcome, 50);
  EXPECT_GT(outcome.retried, 0u) << "the items in flight beside it on its worker";
  // One died with it among its items in flight, one on it alone: then it is known, and reported.
  EXPECT_EQ(restartsMetric(), 2.0);
}

TEST_F(PoolTest, WithoutOnFailureMapRaisesThePoisonItemsError) {
  auto inputs = jobs(200, 100);
  inputs[10].crash = true;
  auto failure = runRoot([&]() -> Co<void> {
    co_await openWorkerPool<SquarerImpl>(root, 2, &SquarerActor::Server::work,
                                         [&](Pool& pool) -> Co<void> {
      co_await pool.map(inputs, fillJob);
      ADD_FAILURE() << "the map succeeded";
    });
  });
  KJ_IF_MAYBE(e, failure) {
    EXPECT_TRUE(is(*e, ErrorKind::ACTOR_RESTARTED)) << text(*e);
    EXPECT_NE(std::string(kj::str(*e).cStr()).find("item 10 failed"), std::string::npos)
        << kj::str(*e).cStr();
  } else {
    ADD_FAILURE() << "no error";
  }
}

TEST_F(PoolTest, AnItemWhoseHandlerRaisedIsReportedAndItsWorkerLivesOn) {
  auto inputs = jobs(500);
  inputs[200].fail = true;
  auto outcome = mapReporting(inputs, {});
  ASSERT_EQ(outcome.failed.size(), 1u);
  EXPECT_EQ(outcome.failed[0].first, 200u);
  EXPECT_TRUE(isRemoteActorError(outcome.failed[0].second)) << text(outcome.failed[0].second);
  EXPECT_NE(text(outcome.failed[0].second).find("this item is refused"), std::string::npos);
  expectEachAnsweredOnceBut(outcome, 200);
  EXPECT_EQ(outcome.retried, 0u) << "the items behind it were not lost with a worker";
  EXPECT_EQ(known.size(), 2u) << "no worker was replaced";
  EXPECT_EQ(restartsMetric(), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Structure

TEST_F(PoolTest, AnActorsHandlerRunsAPoolOfItsOwnChildren) {
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorNursery(root, [&](ActorNursery& an) -> Co<void> {
      auto parent = co_await an.startActor<SquarerImpl>("parent");
      known.insert((co_await parent.pid())->getPid());
      auto result = co_await parent.sumOfSquares(1000, 3);
      EXPECT_EQ(result->getSum(), int64_t(999) * 1000 * 1999 / 6);
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
}

TEST_F(PoolTest, APoolUnderTheCallersSupervisorStopsOnlyItsWorkers) {
  auto inputs = jobs(100);
  auto failure = runRoot([&]() -> Co<void> {
    co_await openActorSupervisor(root, [&](ActorSupervisor& sup) -> Co<void> {
      auto other = co_await sup.startChild<SquarerImpl>("other");
      auto first = co_await other.pid();
      known.insert(first->getPid());
      co_await openWorkerPool<SquarerImpl>(sup, 2, &SquarerActor::Server::work,
                                           [&](Pool& pool) -> Co<void> {
        auto results = co_await pool.map(inputs, fillJob);
        EXPECT_EQ(results[99]->getSquare(), 99 * 99);
        known.insert(KJ_ASSERT_NONNULL(sup.pidOf("squarer-0")));
        known.insert(KJ_ASSERT_NONNULL(sup.pidOf("squarer-1")));
      }, {.name = "squarer"});
      // The pool's workers have ended; the supervisor's other child runs on.
      EXPECT_EQ(sup.pidOf("squarer-0"), nullptr);
      EXPECT_EQ(sup.pidOf("squarer-1"), nullptr);
      auto again = co_await other.pid();
      EXPECT_EQ(again->getPid(), first->getPid());
      EXPECT_TRUE(sup.pidOf("other") != nullptr);
      EXPECT_EQ(childrenOf(getpid()).size(), 1u + (forkServerPid() == nullptr ? 0u : 1u));
    });
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  EXPECT_EQ(known.size(), 3u);
}

TEST_F(PoolTest, ACancelledPoolLeavesNoProcess) {
  auto inputs = jobs(100000, 50);
  size_t answered = 0;
  auto failure = runRoot([&]() -> Co<void> {
    CancelScope scope;
    co_await scope.run([&]() -> Co<void> {
      co_await openWorkerPool<SquarerImpl>(root, 3, &SquarerActor::Server::work,
                                           [&](Pool& pool) -> Co<void> {
        co_await pool.mapUnordered(inputs, fillJob, [&](size_t, Squarer::Done::Reader done) {
          known.insert(done.getPid());
          // In the middle of the map, once every worker has answered.
          if (++answered >= 300 && known.size() == 3) scope.cancel();
        });
        ADD_FAILURE() << "the map finished";
      });
    });
    EXPECT_TRUE(scope.cancelledCaught());
  });
  KJ_IF_MAYBE(e, failure) ADD_FAILURE() << text(*e);
  EXPECT_EQ(known.size(), 3u);
}

TEST_F(PoolTest, TheMethodIsFoundByItsTypes) {
  auto schema = capnp::Schema::from<Squarer>();
  EXPECT_EQ(_::methodIdOf(schema, capnp::Schema::from<Squarer::WorkParams>(),
                          capnp::Schema::from<Squarer::WorkResults>()),
            0u);
  EXPECT_ANY_THROW(_::methodIdOf(schema, capnp::Schema::from<Squarer::Job>(),
                                 capnp::Schema::from<Squarer::Done>()));
}

}  // namespace
}  // namespace harrow

int main(int argc, char** argv) {
  return harrow::testing::multiProcessTestMain(argc, argv, harrow::implementations(), "pool_test");
}
