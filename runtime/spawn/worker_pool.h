// Worker pools: n actors serving one context method, fed items in a pipeline and supervised, with
// their results gathered (what tractor users build by hand as "a cluster of actors":
// tractor.open_actor_cluster plus its examples' worker_pool()._map; concurrent.futures' map).
//
// The worker's interface has a context method whose callee streams one result for each item the
// caller sends, in order:
//
//   interface Squarer $Harrow.actor {
//     work @0 () -> () $Harrow.context(started = "Ready", callerSends = "Job", calleeSends = "Done");
//     struct Ready {}  struct Job { n @0 :Int64; }  struct Done { square @0 :Int64; }
//   }
//
//   class SquarerImpl final : public SquarerActor::Server {
//     harrow::Co<void> work(WorkCall call) override {
//       co_await harrow::serveItems(call, [](Squarer::Job::Reader job, Squarer::Done::Builder done) {
//         done.setSquare(job.getN() * job.getN());
//       });
//     }
//   };
//
//   co_await harrow::openWorkerPool<SquarerImpl>(root, 4, &SquarerActor::Server::work,
//       [&](auto& pool) -> harrow::Co<void> {
//     auto squares = co_await pool.map(numbers);                // results in input order
//     co_await pool.mapUnordered(numbers, fill, [&](size_t i, Squarer::Done::Reader done) { ... });
//   });  // every worker stopped and reaped
//
// Guarantees:
//  - Structured: the pool lives inside its block, like openActorNursery. Its workers are children
//    of a supervisor (one_for_one, each worker PERMANENT): its own (openWorkerPool(actor, ...)) or
//    one the caller has (openWorkerPool(supervisor, ...)). When the block ends, or is cancelled,
//    every worker is stopped and reaped; no process outlives it.
//  - Pipelined: each map opens one context per worker and keeps up to `inFlight` items sent and
//    not yet answered on it, so a worker always has its next item in hand: no round trip per item.
//    Items go to whichever worker has room (a slow worker takes fewer).
//  - A worker that dies (a crash, a kill) is restarted by the supervisor; the map carries on with
//    the new instance. Which of the items it had in flight it died on is not known (answers it had
//    computed may have died with it), so each of them is sent again alone (nothing else in flight
//    on its worker): a worker dying with one item alone names that item. Under OnWorkerLoss::RETRY
//    such an item is sent again, alone, until `attempts` workers have died on it, then reported
//    (so a poison item, one that kills every worker taking it, costs 1 + attempts deaths, and is
//    never retried forever); under REPORT it is reported the first time. Items are processed at
//    least once, not exactly once: a worker's effects must be idempotent.
//  - An item whose handler raised (a RemoteActorError: the worker lives on) is reported at once; a
//    new context on the same worker takes the items queued behind it.
//  - Reported: to mapUnordered's onFailure(index, error), the map then going on; without one the
//    map raises the item's error (cancelling the rest), as concurrent.futures' map does.
//  - The restart intensity of the supervisor bounds it all: workers dying faster than it allows
//    fail the pool with harrow.RestartIntensity, like any supervisor.

#pragma once

#include <harrow/spawn/supervisor.h>
#include <harrow/typed/typed.h>

#include <deque>
#include <type_traits>
#include <unordered_map>

namespace harrow {

// What happens to the item a worker was working on when it died.
enum class OnWorkerLoss {
  RETRY,   // sent again, alone, until WorkerPoolOptions::attempts workers have died on it
  REPORT,  // reported as failed the first time a worker dies on it alone
};

struct WorkerPoolOptions {
  // Items sent to one worker and not yet answered (the pipeline's depth), per worker.
  uint32_t inFlight = 32;
  OnWorkerLoss onLoss = OnWorkerLoss::RETRY;
  // RETRY: how many workers may die on one item (alone) before it is reported.
  uint32_t attempts = 2;
  // The workers' names: "<name>-0" ... "<name>-(n-1)" (unique within their supervisor).
  kj::StringPtr name = "worker";
  // How each worker's process starts (backend, executable, node).
  SpawnOptions spawn = {};
  // The pool's own supervisor (openWorkerPool(actor, ...)); its strategy is one_for_one whatever
  // this says. More generous than OTP's 1 restart in 5 s: a pool expects poison items.
  SupervisorOptions supervisor = {.intensity = 10};
};

template <typename Call>
class WorkerPool;

// What a pool's block must be: called with the pool, it returns a promise (a coroutine returning
// harrow::Co<void>): `[&](WorkerPool<FooActor::Server::WorkCall>& pool) -> harrow::Co<void>`.
template <typename Body, typename Call>
concept PoolBody = requires(Body& body, WorkerPool<Call>& pool) {
  { body(pool) } -> std::convertible_to<kj::Promise<void>>;
};

namespace _ {

template <typename Call>
struct IsServerContext : std::false_type {};
template <typename P, typename R, typename S, typename In, typename Out>
struct IsServerContext<ServerContext<P, R, S, In, Out>> : std::true_type {
  using Params = P;
  using Results = R;
};

// The id of the method of `interface` whose params and results are these structs (each context
// method has its own $Params/$Results structs); raises if none or several.
uint16_t methodIdOf(capnp::InterfaceSchema interface, capnp::StructSchema params,
                    capnp::StructSchema results);

// The untyped engine of a pool: items are indices into the map's inputs; the typed WorkerPool
// fills and reads their messages.
class PoolCore {
public:
  struct Hooks {
    uint64_t interfaceId;
    uint16_t methodId;
    // Fills the context's params (all defaults).
    kj::Function<void(OutgoingMessage& start)> initParams;
    // Starts worker `name` under the supervisor.
    kj::Function<Co<void>(kj::StringPtr name)> startWorker;
    // The channel to worker `name`'s current instance (waiting while it restarts); raises
    // ActorDied once it has ended for good.
    kj::Function<Co<PortalHandle>(kj::StringPtr name)> portalOf;
    kj::Function<void(kj::StringPtr name)> stopWorker;
    kj::Function<Co<void>(kj::StringPtr name)> whenEnded;
    // Restarts by the supervisor so far.
    kj::Function<uint32_t()> restarts;
  };

  // One map: what it sends and where its results go.
  struct Job {
    size_t count;
    kj::Function<void(OutgoingMessage& item, size_t index)> fill;
    kj::Function<void(size_t index, kj::Own<IncomingMessage> result)> deliver;
    // nullptr: a failed item fails the map.
    kj::Maybe<kj::Function<void(size_t index, kj::Exception&& error)>> onFailure;
  };

  PoolCore(kj::Timer& timer, size_t workers, WorkerPoolOptions options, Hooks hooks);
  ~PoolCore() noexcept(false);
  KJ_DISALLOW_COPY(PoolCore);

  // Starts the workers, runs `body`, then stops the workers and waits until they have ended.
  Co<void> run(kj::Function<kj::Promise<void>()> body);
  // Runs one map to its end.
  Co<void> map(Job job);

  size_t size() const { return names.size(); }
  kj::StringPtr workerName(size_t i) const { return names[i]; }
  // Items sent again after their worker died (each suspect, each retry), all maps together.
  uint64_t retried() const { return retriedCount; }
  uint32_t restarts() { return hooks.restarts(); }

private:
  struct Running;
  struct Lane;
  kj::Timer& timer;
  WorkerPoolOptions options;
  Hooks hooks;
  kj::Array<kj::String> names;
  uint64_t retriedCount = 0;

  Co<void> runLane(Running& job, Lane& lane);
  Co<void> runContext(Running& job, Lane& lane, RawPortal& portal);
  Co<void> sendItems(Running& job, Lane& lane, OutgoingTask& task);
  Co<void> receiveResults(Running& job, Lane& lane, OutgoingTask& task);
  void lost(Running& job, Lane& lane, kj::Exception&& error);
};

}  // namespace _

// A pool of workers serving the context method whose call type is Call (`FooActor::Server::
// WorkCall`: ServerContext<Params, Results, Started, In, Out>). Made by openWorkerPool; valid inside
// its block. One map at a time or several at once: each has its own context on every worker.
template <typename Params, typename Results, typename Started, typename In, typename Out>
class WorkerPool<ServerContext<Params, Results, Started, In, Out>> {
public:
  explicit WorkerPool(_::PoolCore& core) : core(core) {}
  KJ_DISALLOW_COPY(WorkerPool);

  // concurrent.futures' Executor.map: every input through a worker; the results in input order.
  // `inputs` (anything with size() and operator[]) is read while the map runs: keep it alive until
  // the map resolves (a temporary in the co_await's own expression is). `fill(In::Builder, const
  // Input&)` builds each item. Raises the first failed item's error (the rest are cancelled).
  template <typename Inputs, typename Fill>
  Co<kj::Array<Received<Out>>> map(const Inputs& inputs, Fill fill) {
    auto results = kj::heapArray<Received<Out>>(inputs.size());
    // (A named Job, not a braced temporary in the co_await: GCC 12 destroys those twice.)
    _::PoolCore::Job job{
        .count = inputs.size(),
        .fill = [&](OutgoingMessage& item, size_t i) { fill(item.template init<In>(), inputs[i]); },
        .deliver = [&](size_t i, kj::Own<IncomingMessage> result) {
          results[i] = Received<Out>(kj::mv(result));
        },
        .onFailure = nullptr,
    };
    co_await core.map(kj::mv(job));
    co_return kj::mv(results);
  }
  // The same, each result taken as a value by `take(Out::Reader) -> R` as it arrives (R default-
  // constructible): nothing of the messages is kept (a Received holds its whole message).
  template <typename Inputs, typename Fill, typename Take>
    requires std::invocable<Take&, typename Out::Reader>
  Co<kj::Array<std::invoke_result_t<Take&, typename Out::Reader>>> map(const Inputs& inputs,
                                                                        Fill fill, Take take) {
    auto results = kj::heapArray<std::invoke_result_t<Take&, typename Out::Reader>>(inputs.size());
    _::PoolCore::Job job{
        .count = inputs.size(),
        .fill = [&](OutgoingMessage& item, size_t i) { fill(item.template init<In>(), inputs[i]); },
        .deliver = [&](size_t i, kj::Own<IncomingMessage> result) {
          results[i] = take(result->template get<Out>());
        },
        .onFailure = nullptr,
    };
    co_await core.map(kj::mv(job));
    co_return kj::mv(results);
  }

  // The same for items of one field, given their values (`pool.map(numbers)`).
  template <typename Inputs>
    requires HasOneField<In>
  Co<kj::Array<Received<Out>>> map(const Inputs& inputs) {
    return map(inputs, [](typename In::Builder item, const auto& value) {
      OneField<In>::set(item, value);
    });
  }

  // The results as they come, whatever their order: `onResult(size_t index, Out::Reader)` for
  // each (the reader is valid during the call). Raises the first failed item's error.
  template <typename Inputs, typename Fill, typename OnResult>
  Co<void> mapUnordered(const Inputs& inputs, Fill fill, OnResult onResult) {
    return unordered(inputs, kj::mv(fill), kj::mv(onResult), nullptr);
  }
  // The same, each failed item reported to `onFailure(size_t index, kj::Exception&& error)` while
  // the map goes on.
  template <typename Inputs, typename Fill, typename OnResult, typename OnFailure>
  Co<void> mapUnordered(const Inputs& inputs, Fill fill, OnResult onResult, OnFailure onFailure) {
    return unordered(inputs, kj::mv(fill), kj::mv(onResult),
                     kj::Function<void(size_t, kj::Exception&&)>(kj::mv(onFailure)));
  }

  // The number of workers, and worker i's name (its supervisor's child name).
  size_t size() const { return core.size(); }
  kj::StringPtr workerName(size_t i) const { return core.workerName(i); }
  // Items sent again because their worker died, so far.
  uint64_t retried() const { return core.retried(); }
  // Workers restarted so far: the supervisor's restartCount() (under a caller's supervisor, its
  // other children's restarts too).
  uint32_t restarts() { return core.restarts(); }

private:
  _::PoolCore& core;

  template <typename Inputs, typename Fill, typename OnResult>
  Co<void> unordered(const Inputs& inputs, Fill fill, OnResult onResult,
                     kj::Maybe<kj::Function<void(size_t, kj::Exception&&)>> onFailure) {
    _::PoolCore::Job job{
        .count = inputs.size(),
        .fill = [&](OutgoingMessage& item, size_t i) { fill(item.template init<In>(), inputs[i]); },
        .deliver = [&](size_t i, kj::Own<IncomingMessage> result) {
          onResult(i, result->template get<Out>());
        },
        .onFailure = kj::mv(onFailure),
    };
    co_await core.map(kj::mv(job));
  }
};

// The worker's side of a pool's context: answers each item with one result, in the order they
// come, by `fn(In::Reader item, Out::Builder result)`; started with an empty Started. An exception
// from `fn` fails the context (the pool reports that item and goes on with a new context).
template <typename P, typename R, typename S, typename In, typename Out, typename Fn>
Co<void> serveItems(ServerContext<P, R, S, In, Out>& call,  // the handler's: it awaits this
                    Fn fn) {
  co_await call.started([](typename S::Builder) {});
  co_await call.openStream([&](MsgStream<Out, In>& stream) -> Co<void> {
    while (auto item = co_await stream.receive()) {
      co_await stream.send([&](typename Out::Builder result) { fn(item.get(), result); });
    }
  });
}

// Opens a pool of `n` workers running implementation Impl as children of `supervisor` (its
// strategy and intensity apply), runs `body(WorkerPool<Call>&)`, then stops the workers and
// resolves once they have ended. `method` names the context the workers serve:
// &FooActor::Server::work.
template <typename Impl, typename Server, typename Call, PoolBody<Call> Body>
requires std::is_base_of_v<Server, Impl> Co<void> openWorkerPool(
    ActorSupervisor& supervisor,  // the caller's, open around this call
    size_t n, Co<void> (Server::*method)(Call), Body body, WorkerPoolOptions options = {}) {
  static_assert(_::IsServerContext<Call>::value,
                "a worker pool runs a context method ($Harrow.context, callerSends and "
                "calleeSends): the callee streams one result for each item the caller sends");
  (void)method;
  if constexpr (_::IsServerContext<Call>::value) {  // (else: only the assertion above is reported)
    using Interface = typename Impl::Interface;
    using Portal = typename Interface::Portal;
    using Params = typename _::IsServerContext<Call>::Params;
    using Results = typename _::IsServerContext<Call>::Results;
    ChildSpec spec{.restart = Restart::PERMANENT, .spawn = options.spawn};
    _::PoolCore::Hooks hooks{
        .interfaceId = Interface::INTERFACE_ID,
        .methodId = _::methodIdOf(capnp::Schema::from<typename Interface::Schema>(),
                                  capnp::Schema::from<Params>(), capnp::Schema::from<Results>()),
        .initParams = [](OutgoingMessage& start) { start.template init<Params>(); },
        .startWorker = [&supervisor, spec](kj::StringPtr name) -> Co<void> {
          co_await supervisor.startChild<Impl>(name, spec);
        },
        .portalOf = [&supervisor](kj::StringPtr name) -> Co<PortalHandle> {
          Portal portal = co_await supervisor.portal<Interface>(name);
          co_return PortalHandle(portal.raw());
        },
        .stopWorker = [&supervisor](kj::StringPtr name) { supervisor.stopChild(name); },
        .whenEnded = [&supervisor](kj::StringPtr name) { return supervisor.whenEnded(name); },
        .restarts = [&supervisor]() { return supervisor.restartCount(); },
    };
    _::PoolCore core(currentActor().timer(), n, options, kj::mv(hooks));
    WorkerPool<Call> pool(core);
    co_await core.run([&]() -> kj::Promise<void> { return body(pool); });
  }
}

// The same under a supervisor of its own (options.supervisor, one_for_one) in `actor`.
template <typename Impl, typename Server, typename Call, typename Body>
  requires std::is_base_of_v<Server, Impl> &&
           std::is_convertible_v<std::invoke_result_t<Body&, WorkerPool<Call>&>, kj::Promise<void>>
Co<void> openWorkerPool(Actor& actor, size_t n, Co<void> (Server::*method)(Call), Body body,
                        WorkerPoolOptions options = {}) {
  SupervisorOptions supervision = options.supervisor;
  supervision.strategy = Strategy::ONE_FOR_ONE;
  co_await openActorSupervisor(actor, [&](ActorSupervisor& supervisor) -> Co<void> {
    co_await openWorkerPool<Impl>(supervisor, n, method, kj::mv(body), options);
  }, supervision);
}

// The same in the current actor (harrow::currentActor()).
template <typename Impl, typename Server, typename Call, typename Body>
  requires std::is_base_of_v<Server, Impl> &&
           std::is_convertible_v<std::invoke_result_t<Body&, WorkerPool<Call>&>, kj::Promise<void>>
Co<void> openWorkerPool(size_t n, Co<void> (Server::*method)(Call), Body body,
                        WorkerPoolOptions options = {}) {
  return openWorkerPool<Impl>(currentActor(), n, method, kj::mv(body), options);
}

}  // namespace harrow
