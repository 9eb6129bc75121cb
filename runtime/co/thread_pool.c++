#include <harrow/co/thread_pool.h>

#include <harrow/co/errors.h>

#include <kj/debug.h>

#include <stdlib.h>

namespace harrow {

void CancelToken::throwIfCancelled() const {
  if (cancelled()) {
    kj::throwFatalException(
        makeError(ErrorKind::CANCELLED, "the work's awaiting scope was cancelled"));
  }
}

size_t ThreadPool::defaultSize() {
  if (const char* text = getenv("HARROW_THREADS")) {
    char* end = nullptr;
    unsigned long n = strtoul(text, &end, 10);
    if (end != text && *end == '\0' && n >= 1 && n <= 1024) return n;
    KJ_FAIL_REQUIRE("HARROW_THREADS must be a number of threads from 1 to 1024", text);
  }
  size_t cores = std::thread::hardware_concurrency();
  return kj::max(size_t(1), kj::min(cores, size_t(4)));
}

ThreadPool::ThreadPool(size_t threads) : limit(threads) {
  KJ_REQUIRE(threads >= 1, "a thread pool needs at least one thread");
}

ThreadPool::~ThreadPool() noexcept(false) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    KJ_ASSERT(jobs.empty() && busy == 0, "thread pool destroyed with work in it");
    stopping = true;
  }
  work.notify_all();
  for (auto& thread : threads) thread.join();
}

size_t ThreadPool::running() const {
  std::lock_guard<std::mutex> lock(mutex);
  return busy;
}

size_t ThreadPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex);
  return jobs.size();
}

void ThreadPool::submit(_::PoolJob& job) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    KJ_REQUIRE(job.state == _::PoolJob::State::NEW);
    job.state = _::PoolJob::State::QUEUED;
    jobs.push_back(&job);
    // A thread for it, unless one is idle or all `limit` exist: then it waits its turn.
    if (idle < jobs.size() && threads.size() < limit) {
      threads.emplace_back([this]() { worker(); });
    }
  }
  work.notify_one();
}

kj::Promise<void> ThreadPool::whenDone(_::PoolJob& job) {
  std::lock_guard<std::mutex> lock(mutex);
  if (job.state == _::PoolJob::State::DONE || job.state == _::PoolJob::State::DROPPED) {
    return kj::READY_NOW;
  }
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  job.waiter = kj::mv(paf.fulfiller);  // replaces one whose promise was dropped (a cancel)
  return kj::mv(paf.promise);
}

bool ThreadPool::cancel(_::PoolJob& job) {
  std::lock_guard<std::mutex> lock(mutex);
  job.token.flag.store(true, std::memory_order_release);
  switch (job.state) {
    case _::PoolJob::State::QUEUED:
      for (auto it = jobs.begin(); it != jobs.end(); ++it) {
        if (*it == &job) {
          jobs.erase(it);
          break;
        }
      }
      job.state = _::PoolJob::State::DROPPED;
      return false;
    case _::PoolJob::State::RUNNING:
      return true;
    default:
      return false;
  }
}

void ThreadPool::waitNotRunning(_::PoolJob& job) {
  std::unique_lock<std::mutex> lock(mutex);
  finished.wait(lock, [&]() { return job.state != _::PoolJob::State::RUNNING; });
}

void ThreadPool::settled(_::PoolJob& job) {
  std::lock_guard<std::mutex> lock(mutex);
  KJ_ASSERT(job.state == _::PoolJob::State::DONE || job.state == _::PoolJob::State::DROPPED);
}

void ThreadPool::worker() {
  std::unique_lock<std::mutex> lock(mutex);
  for (;;) {
    ++idle;
    work.wait(lock, [&]() { return stopping || !jobs.empty(); });
    --idle;
    if (jobs.empty()) return;  // stopping
    _::PoolJob* job = jobs.front();
    jobs.pop_front();
    job->state = _::PoolJob::State::RUNNING;
    ++busy;
    lock.unlock();
    job->run();
    lock.lock();
    --busy;
    job->state = _::PoolJob::State::DONE;
    // From here on the job may be freed by its owner: only the fulfiller, now ours, is used.
    auto waiter = kj::mv(job->waiter);
    job->waiter = nullptr;
    finished.notify_all();
    lock.unlock();
    KJ_IF_MAYBE(w, waiter) (*w)->fulfill();
    waiter = nullptr;
    lock.lock();
  }
}

ThreadPool& defaultThreadPool() {
  static thread_local kj::Maybe<kj::Own<ThreadPool>> pool;
  KJ_IF_MAYBE(p, pool) return **p;
  return *pool.emplace(kj::heap<ThreadPool>());
}

}  // namespace harrow
