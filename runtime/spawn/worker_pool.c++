#include <harrow/spawn/worker_pool.h>

#include <harrow/co/nursery.h>

#include <kj/debug.h>

namespace harrow {
namespace _ {

namespace {

// A pause before asking again for a worker whose channel broke before its supervisor heard of
// its exit (the supervisor's portal is then still to the instance that is gone).
constexpr kj::Duration REASK_AFTER = 10 * kj::MILLISECONDS;

// Whether `error` says the worker itself went (not an error of the item it was working on).
bool isWorkerLoss(const kj::Exception& error) {
  return is(error, ErrorKind::ACTOR_RESTARTED) || is(error, ErrorKind::ACTOR_DIED) ||
         is(error, ErrorKind::TRANSPORT_CLOSED) || is(error, ErrorKind::ACTOR_UNREACHABLE);
}

// The one failure that explains a context's end: the sending and the receiving task both see a
// worker die, and their nursery raises both together.
kj::Exception primaryFailure(kj::Exception&& error) {
  if (!isMultiError(error)) return kj::mv(error);
  auto failures = failuresIn(error);
  for (auto& failure : failures) {
    if (isWorkerLoss(failure)) return kj::mv(failure);
  }
  if (failures.size() > 0) return kj::mv(failures[0]);
  return kj::mv(error);
}

}  // namespace

uint16_t methodIdOf(capnp::InterfaceSchema interface, capnp::StructSchema params,
                    capnp::StructSchema results) {
  kj::Maybe<uint16_t> found;
  for (auto method : interface.getMethods()) {
    if (method.getParamType() != params || method.getResultType() != results) continue;
    KJ_REQUIRE(found == nullptr, "a worker pool's method: several methods of the interface take "
               "these params and results", interface.getShortDisplayName());
    found = method.getOrdinal();
  }
  KJ_IF_MAYBE(id, found) return *id;
  KJ_FAIL_REQUIRE("a worker pool's method: the interface has no method with these params and "
                  "results", interface.getShortDisplayName(), params.getShortDisplayName());
}

// One worker's part in one map: the items it has been sent and not answered yet, oldest first.
struct PoolCore::Lane {
  size_t worker = 0;
  std::deque<size_t> inFlight;
  bool ended = false;  // its worker has ended for good
  bool solo = false;   // its one item in flight is a suspect, sent alone
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> sleeping;  // its sender, waiting for room or work

  kj::Promise<void> sleep() {
    auto paf = kj::newPromiseAndFulfiller<void>();
    sleeping = kj::mv(paf.fulfiller);
    return kj::mv(paf.promise);
  }
  void wake() {
    KJ_IF_MAYBE(fulfiller, sleeping) {
      (*fulfiller)->fulfill();
      sleeping = nullptr;
    }
  }
};

// One map while it runs.
struct PoolCore::Running {
  explicit Running(Job& job) : job(job) {}

  Job& job;
  size_t next = 0;                  // the first item never sent
  std::deque<size_t> again;         // items to send again, before any new one
  // Items a worker had in flight when it died, among them (perhaps) the one it died on: each is
  // sent again alone on its worker, so that a death tells which item it was.
  std::deque<size_t> suspects;
  std::unordered_map<size_t, uint32_t> deaths;  // workers that died on each item
  size_t resolved = 0;              // items answered or reported
  kj::ArrayPtr<Lane> lanes;
  bool broken = false;              // fill or deliver raised: the map fails with that

  bool done() const { return resolved == job.count; }
  bool hasWork() const { return !again.empty() || next < job.count; }
  size_t take() {
    if (!again.empty()) {
      size_t i = again.front();
      again.pop_front();
      return i;
    }
    return next++;
  }
  void wakeAll() {
    for (auto& lane : lanes) lane.wake();
  }
  // Item i is done with (answered or reported).
  void resolve() {
    if (++resolved == job.count) wakeAll();
  }
};

PoolCore::PoolCore(kj::Timer& timer, size_t workers, WorkerPoolOptions options, Hooks hooks)
    : timer(timer), options(options), hooks(kj::mv(hooks)) {
  KJ_REQUIRE(workers > 0, "a worker pool needs at least one worker");
  KJ_REQUIRE(options.inFlight > 0, "WorkerPoolOptions::inFlight must be positive");
  KJ_REQUIRE(options.attempts > 0, "WorkerPoolOptions::attempts must be positive");
  names = KJ_MAP(i, kj::range<size_t>(0, workers)) { return kj::str(options.name, '-', i); };
  this->options.name = nullptr;  // the caller's string: only the names above use it
}

PoolCore::~PoolCore() noexcept(false) {}

Co<void> PoolCore::run(kj::Function<kj::Promise<void>()> body) {
  kj::Maybe<kj::Exception> failure;
  try {
    // Every worker starts at once (a spawn each); the block begins once all are up.
    co_await openNursery([&](TaskNursery& starting) -> Co<void> {
      for (auto& name : names) starting.startSoon([&]() { return hooks.startWorker(name); });
      co_return;
    });
    co_await body();
  } catch (...) {
    failure = currentException();  // not finally: its cleanup depends on the kind of failure
  }
  // Stopped on purpose, the workers are not restarted; a worker that never started has nothing to
  // stop (its supervisor knows no child of that name, or one that has ended).
  for (auto& name : names) {
    kj::runCatchingExceptions([&]() { hooks.stopWorker(name); });
  }
  bool cancelled = false;
  KJ_IF_MAYBE(e, failure) cancelled = isCancelled(*e);
  if (!cancelled) {
    // Under a supervisor that carries on, the block ends once its workers have: no process of
    // the pool outlives it. (Cancelled, the supervisor itself is going, and reaps them.)
    co_await shielded([&]() -> Co<void> {
      for (auto& name : names) {
        co_await errorOf([&]() { return hooks.whenEnded(name); });
      }
    });
  }
  KJ_IF_MAYBE(e, failure) kj::throwFatalException(kj::mv(*e));
}

Co<void> PoolCore::map(Job job) {
  Running running(job);
  if (running.job.count == 0) co_return;
  auto lanes = kj::heapArray<Lane>(names.size());
  running.lanes = lanes;
  co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
    for (size_t i = 0; i < lanes.size(); ++i) {
      lanes[i].worker = i;
      tasks.startSoon([this, &running, &lane = lanes[i]]() { return runLane(running, lane); });
    }
    co_return;
  });
}

Co<void> PoolCore::runLane(Running& job, Lane& lane) {  // both the pool's, for the run
  kj::StringPtr name = names[lane.worker];
  while (!job.done()) {
    kj::Maybe<PortalHandle> portal;
    auto gone = co_await errorOf([&]() -> Co<void> { portal = co_await hooks.portalOf(name); });
    KJ_IF_MAYBE(e, gone) {
      // Its worker has ended for good (not restarted): the others take its share, unless none is
      // left.
      lane.ended = true;
      bool anyLeft = false;
      for (auto& other : job.lanes) anyLeft = anyLeft || !other.ended;
      if (!anyLeft) kj::throwFatalException(kj::mv(*e));
      co_return;
    }
    auto failure = co_await errorOf([&]() {
      return runContext(job, lane, *KJ_ASSERT_NONNULL(portal));
    });
    KJ_IF_MAYBE(e, failure) {
      if (job.broken) kj::throwFatalException(kj::mv(*e));
      auto cause = primaryFailure(kj::mv(*e));
      bool reask = is(cause, ErrorKind::TRANSPORT_CLOSED);
      lost(job, lane, kj::mv(cause));
      if (reask) co_await timer.afterDelay(REASK_AFTER);
    }
  }
}

Co<void> PoolCore::runContext(Running& job, Lane& lane,  // both the pool's, for the run
                              RawPortal& portal) {
  auto start = portal.newStart(hooks.interfaceId, hooks.methodId);
  hooks.initParams(*start);
  kj::Own<OutgoingTask> task = co_await portal.open(kj::mv(start), MethodKind::CONTEXT);
  // Leaving early (a failure, a cancel) tells the worker's task to stop.
  CancelRemoteUnlessFinished guard{*task};
  co_await task->started();
  co_await openNursery([&](TaskNursery& tasks) -> Co<void> {
    tasks.startSoon([&]() -> Co<void> {
      auto failure = co_await errorOf([&]() { return sendItems(job, lane, *task); });
      KJ_IF_MAYBE(e, failure) {
        // The worker went (or its side of the context ended): the receiver takes the results it
        // sent before that, then raises the same loss, with the item it died on at the front.
        // Anything else (a fill that raised, an item too large) fails the context at once.
        if (job.broken || !(isWorkerLoss(*e) || is(*e, ErrorKind::STREAM_CLOSED))) {
          kj::throwFatalException(kj::mv(*e));
        }
      }
    });
    co_await receiveResults(job, lane, *task);
  });
  task->stopReading();
  guard.finished = true;
  co_await task->result();
}

Co<void> PoolCore::sendItems(Running& job, Lane& lane,  // both the pool's, for the run
                             OutgoingTask& task) {      // the caller's, which awaits this
  while (!job.done()) {
    size_t i;
    if (lane.solo && !lane.inFlight.empty()) {
      co_await lane.sleep();  // a suspect is out alone: nothing goes with it
      continue;
    }
    lane.solo = false;
    if (!job.suspects.empty()) {
      if (!lane.inFlight.empty()) {
        co_await lane.sleep();  // suspects go alone: wait until this worker's items are answered
        continue;
      }
      i = job.suspects.front();
      job.suspects.pop_front();
      lane.solo = true;
    } else if (lane.inFlight.size() < options.inFlight && job.hasWork()) {
      i = job.take();
    } else {
      co_await lane.sleep();
      continue;
    }
    lane.inFlight.push_back(i);
    auto item = task.newItem();
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { job.job.fill(*item, i); })) {
      job.broken = true;
      kj::throwFatalException(kj::mv(*e));
    }
    co_await task.send(kj::mv(item));
  }
  co_await task.stop();  // the worker's loop ends, and its stream with it
}

Co<void> PoolCore::receiveResults(Running& job, Lane& lane,  // both the pool's, for the run
                                  OutgoingTask& task) {
  for (;;) {
    auto received = co_await task.receive();
    KJ_IF_MAYBE(message, received) {
      KJ_REQUIRE(!lane.inFlight.empty(), "a worker of the pool answered an item it was not sent",
                 names[lane.worker]);
      size_t i = lane.inFlight.front();
      lane.inFlight.pop_front();
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { job.job.deliver(i, kj::mv(*message)); })) {
        job.broken = true;
        kj::throwFatalException(kj::mv(*e));
      }
      job.resolve();
      // Room again (half the window, so that the sender wakes once per batch, not per item).
      if (lane.inFlight.size() <= options.inFlight / 2) lane.wake();
    } else {
      break;
    }
  }
  KJ_REQUIRE(lane.inFlight.empty(), "a worker of the pool ended its stream with items unanswered",
             names[lane.worker], lane.inFlight.size());
}

void PoolCore::lost(Running& job, Lane& lane, kj::Exception&& error) {
  bool loss = isWorkerLoss(error);
  lane.solo = false;
  if (lane.inFlight.empty()) {
    // Nothing of ours was lost with it. A worker that went is asked for again (its restart); any
    // other failure with no item to blame (a handler that raises at once) fails the map.
    if (!loss) kj::throwFatalException(kj::mv(error));
    return;
  }
  if (loss && lane.inFlight.size() > 1) {
    // Which of them it died on is unknown (the answers it had computed may have died with it):
    // each is sent again alone, none blamed yet.
    retriedCount += lane.inFlight.size();
    for (size_t i : lane.inFlight) job.suspects.push_back(i);
    lane.inFlight.clear();
    job.wakeAll();
    return;
  }
  // The oldest item is the one it failed on: a worker that died with it alone, or a handler that
  // raised (the worker answers in order, and its answers before the error arrived). Those behind
  // it go back untouched, in order, ahead of the items never sent.
  size_t blamed = lane.inFlight.front();
  lane.inFlight.pop_front();
  while (!lane.inFlight.empty()) {
    job.again.push_front(lane.inFlight.back());
    lane.inFlight.pop_back();
  }
  if (loss && options.onLoss == OnWorkerLoss::RETRY && ++job.deaths[blamed] < options.attempts) {
    job.suspects.push_front(blamed);  // again, alone
    ++retriedCount;
  } else {
    KJ_IF_MAYBE(report, job.job.onFailure) {
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { (*report)(blamed, kj::mv(error)); })) {
        job.broken = true;
        kj::throwFatalException(kj::mv(*e));
      }
      job.resolve();
    } else {
      uint32_t tries = loss ? kj::max(job.deaths[blamed], 1u) : 1;
      error.wrapContext(__FILE__, __LINE__, kj::str("worker pool: item ", blamed, " failed on ",
                                                    names[lane.worker], " (try ", tries, ")"));
      kj::throwFatalException(kj::mv(error));
    }
  }
  job.wakeAll();
}

}  // namespace _
}  // namespace harrow
