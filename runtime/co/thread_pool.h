// Blocking work off the event loop (trio's to_thread.run_sync, tractor's to_asyncio bridge).
//
//   auto digest = co_await harrow::runInThread([&](harrow::CancelToken& token) {
//     return hashFile(path, token);          // on a pool thread; checks token.cancelled()
//   });                                      // resumes here, on this coroutine's own loop
//
// The work runs on a bounded ThreadPool: at most size() jobs run at once, the rest wait in FIFO
// order. The coroutine resumes on its own event loop (the completion crosses back through a KJ
// cross-thread fulfiller); the work's result, or its exception, comes with it.
//
// No work outlives its scope. The `co_await` is a checkpoint: when the awaiting scope is
// cancelled, the work's CancelToken is set, a job still queued is dropped (it never runs), and a
// running one is waited for, without blocking the loop (the coroutine awaits it uncancellably),
// before Cancelled propagates. The work must therefore check token.cancelled() (or return soon
// anyway). KJ cancellation (the coroutine's promise dropped, e.g. its whole task torn down) is
// synchronous in KJ: nothing can be awaited then, so the promise's destructor sets the token and
// *blocks the loop's thread* until the running work returns, as kj::Executor's executeAsync()
// does. Either way, once the promise is gone no thread touches what the work captured.

#pragma once

#include <harrow/co/cancel_scope.h>

#include <kj/async.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace harrow {

class ThreadPool;

// Tells work running on a pool thread that its awaiting scope was cancelled.
class CancelToken {
public:
  bool cancelled() const noexcept { return flag.load(std::memory_order_acquire); }
  // Throws harrow.Cancelled if cancelled() (the exception is discarded: the awaiting coroutine
  // raises its own Cancelled); a convenient way out of deep work.
  void throwIfCancelled() const;

private:
  std::atomic<bool> flag{false};
  friend class ThreadPool;
};

namespace _ {

// One job of a ThreadPool. Owned by the awaiting coroutine's frame; the pool only points to it,
// and never after the job has left the RUNNING state (everything after that is under the pool's
// mutex).
class PoolJob {
public:
  virtual void run() noexcept = 0;  // on a pool thread
  CancelToken token;

protected:
  ~PoolJob() = default;

private:
  enum class State { NEW, QUEUED, RUNNING, DONE, DROPPED };
  State state = State::NEW;                                    // under the pool's mutex
  kj::Maybe<kj::Own<kj::CrossThreadPromiseFulfiller<void>>> waiter;  // likewise
  friend class ::harrow::ThreadPool;
};

}  // namespace _

class ThreadPool {
public:
  // At most `threads` jobs at once (at least 1). Threads start as jobs need them and stay until
  // the pool is destroyed.
  explicit ThreadPool(size_t threads = defaultSize());
  // Joins the threads. Every job has finished by then: each runInThread() waits for its own.
  ~ThreadPool() noexcept(false);
  KJ_DISALLOW_COPY(ThreadPool);

  // HARROW_THREADS if set (a number from 1 to 1024), else hardware_concurrency() capped at 4.
  static size_t defaultSize();

  size_t size() const { return limit; }
  size_t running() const;  // jobs on a thread now
  size_t queued() const;   // jobs waiting for a thread

  // ---- for runInThread() ----
  void submit(_::PoolJob& job);
  // Resolves on the calling thread's loop once `job` has finished or was dropped. Never rejects.
  kj::Promise<void> whenDone(_::PoolJob& job);
  // Sets the job's token; a queued job is dropped (it will not run). Returns whether it is
  // running still.
  bool cancel(_::PoolJob& job);
  // Blocks the calling thread until `job` is not running.
  void waitNotRunning(_::PoolJob& job);
  // On the awaiting thread once whenDone() resolved: takes the pool's mutex, after which what the
  // job's thread wrote is visible here (the cross-thread wake-up is KJ's, whose synchronisation
  // TSan cannot see in an uninstrumented libkj; this makes the hand-off explicit).
  void settled(_::PoolJob& job);

private:
  size_t limit;
  mutable std::mutex mutex;
  std::condition_variable work;      // a job was queued, or the pool is stopping
  std::condition_variable finished;  // a job left the RUNNING state
  std::deque<_::PoolJob*> jobs;
  size_t busy = 0;
  size_t idle = 0;
  bool stopping = false;
  std::vector<std::thread> threads;

  void worker();
};

// This thread's default pool, made on first use with defaultSize() threads and destroyed (its
// threads joined) when the thread exits: per event loop, as the ambient cancel scope is.
ThreadPool& defaultThreadPool();

namespace _ {

template <typename Fn>
concept TakesToken = std::is_invocable_v<Fn&, CancelToken&>;

template <typename Fn, bool = TakesToken<Fn>>
struct ThreadResultOf {
  using Type = std::invoke_result_t<Fn&, CancelToken&>;
};
template <typename Fn>
struct ThreadResultOf<Fn, false> {
  using Type = std::invoke_result_t<Fn&>;
};
template <typename Fn>
using ThreadResult = typename ThreadResultOf<Fn>::Type;

template <typename Fn>
class TypedJob final : public PoolJob {
public:
  using T = ThreadResult<Fn>;
  explicit TypedJob(Fn&& fn) : fn(kj::mv(fn)) {}

  void run() noexcept override {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      if constexpr (std::is_void_v<T>) {
        call();
        value = true;
      } else {
        value = call();
      }
    })) {
      error = kj::mv(*e);
    }
  }

  // On the loop's thread, after the job is DONE.
  T take() {
    KJ_IF_MAYBE(e, error) kj::throwFatalException(kj::mv(*e));
    if constexpr (!std::is_void_v<T>) {
      KJ_IF_MAYBE(v, value) return kj::mv(*v);
      kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                            kj::str("a thread pool job ended without a result")));
    }
  }

private:
  Fn fn;
  kj::Maybe<std::conditional_t<std::is_void_v<T>, bool, T>> value;
  kj::Maybe<kj::Exception> error;

  T call() {
    if constexpr (TakesToken<Fn>) {
      return fn(token);
    } else {
      return fn();
    }
  }
};

// KJ cancellation of runInThread(): the work is told, then waited for, synchronously.
class JobGuard {
public:
  JobGuard(ThreadPool& pool, PoolJob& job) : pool(pool), job(job) {}
  ~JobGuard() noexcept(false) {
    if (!settled && pool.cancel(job)) pool.waitNotRunning(job);
  }
  KJ_DISALLOW_COPY(JobGuard);
  bool settled = false;

private:
  ThreadPool& pool;
  PoolJob& job;
};

}  // namespace _

// Runs `fn(token)` (or `fn()`) on a thread of `pool` and resolves, on the calling coroutine's
// loop, with what it returned or raised. See the top of this file for cancellation.
template <typename Fn>
Co<_::ThreadResult<Fn>> runInThread(ThreadPool& pool,  // the caller's: outlives the work
                                    Fn fn) {
  _::TypedJob<Fn> job(kj::mv(fn));
  _::JobGuard guard(pool, job);
  pool.submit(job);
  kj::Maybe<kj::Exception> failure;
  try {
    co_await pool.whenDone(job);  // a checkpoint of the awaiting scope
  } catch (...) {
    failure = currentException();
  }
  KJ_IF_MAYBE(e, failure) {
    // Cancelled (whenDone() never rejects): tell the work, wait for it, then unwind.
    if (pool.cancel(job)) co_await uncancellable(pool.whenDone(job));
    pool.settled(job);
    guard.settled = true;
    kj::throwFatalException(kj::mv(*e));
  }
  pool.settled(job);
  guard.settled = true;
  co_return job.take();
}

// The same on this thread's defaultThreadPool().
template <typename Fn>
Co<_::ThreadResult<Fn>> runInThread(Fn fn) {
  return runInThread(defaultThreadPool(), kj::mv(fn));
}

}  // namespace harrow
