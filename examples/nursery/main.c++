// A tour of harrow's structured concurrency on a real KJ event loop and timer:
//   (a) a nursery running tasks concurrently, (b) a started handshake, (c) a deadline,
//   (d) a failure cancelling its siblings, which clean up before the error reaches main,
//   (e) blocking work off the loop: hashing a file on a pool thread (runInThread), a deadline
//   that cuts endless hashing short and waits for its thread, and another thread calling into
//   the loop (LoopHandle).
//
//   bazel run //examples/nursery

#include <harrow/co/loop_handle.h>
#include <harrow/co/nursery.h>
#include <harrow/co/thread_pool.h>

#include <kj/async-io.h>
#include <kj/debug.h>

#include <cstdio>
#include <thread>

using harrow::Co;
using harrow::TaskNursery;
using kj::MILLISECONDS;

namespace {

// FNV-1a over a file, read in 64 KiB chunks on whatever thread calls it: blocking I/O that has
// no place on an event loop. Checks the token between chunks, so a cancelled caller does not wait
// long; `bytes` counts what was read.
uint64_t hashFile(const char* path, harrow::CancelToken& token, uint64_t& bytes) {
  FILE* file = fopen(path, "rb");
  KJ_REQUIRE(file != nullptr, "cannot open", path);
  KJ_DEFER(fclose(file));
  uint64_t hash = 0xcbf29ce484222325ull;
  static thread_local char buffer[65536];
  while (!token.cancelled()) {
    size_t n = fread(buffer, 1, sizeof(buffer), file);
    if (n == 0) break;
    for (size_t i = 0; i < n; ++i) {
      hash = (hash ^ static_cast<unsigned char>(buffer[i])) * 0x100000001b3ull;
    }
    bytes += n;
  }
  return hash;
}

void say(kj::StringPtr who, kj::StringPtr what) {
  printf("%-9s %s\n", kj::str("[", who, "]").cStr(), what.cStr());
  fflush(stdout);
}

// The tour's tasks, sharing the event loop's timer and counting what happened to them.
class Tour {
public:
  explicit Tour(kj::Timer& timer) : timer(timer) {}

  // Runs (a) to (d); true when everything behaved as described.
  Co<bool> run();

private:
  kj::Timer& timer;
  int cancelledTasks = 0;
  int cleanedUpTasks = 0;

  kj::Promise<void> sleep(int ms) { return timer.afterDelay(ms * MILLISECONDS); }
  Co<void> worker(const char* name, int steps, int ms);
  Co<void> patientWorker(const char* name);
  Co<void> flaky();
  Co<bool> offLoop();
};

// (a) A task that takes `steps` steps of `ms` each, reporting its progress.
Co<void> Tour::worker(const char* name, int steps, int ms) {
  for (int i = 1; i <= steps; ++i) {
    co_await sleep(ms);
    say(name, kj::str("step ", i, "/", steps));
  }
  say(name, "done");
}

// (d) A task that runs until cancelled, then cleans up (asynchronously!) before re-raising.
Co<void> Tour::patientWorker(const char* name) {
  kj::Maybe<kj::Exception> cancelled;
  try {
    for (int i = 1;; ++i) {
      co_await sleep(15);
      say(name, kj::str("tick ", i));
    }
  } catch (const kj::Exception& e) {
    if (!harrow::isCancelled(e)) throw;
    cancelled = e;  // no co_await inside a catch block: clean up below
  }
  say(name, "cancelled; cleaning up");
  ++cancelledTasks;
  // Cleanup may await, but it must be shielded: every checkpoint would raise Cancelled again.
  co_await harrow::shielded([this, name]() -> Co<void> {
    co_await sleep(10);  // e.g. tell a peer we are leaving and wait for its ack
    say(name, "cleanup finished");
    ++cleanedUpTasks;
  });
  KJ_IF_MAYBE(e, cancelled) kj::throwFatalException(kj::mv(*e));  // let the nursery see it
}

Co<void> Tour::flaky() {
  co_await sleep(40);
  say("flaky", "failing: disk on fire");
  KJ_FAIL_REQUIRE("disk on fire");
}

Co<bool> Tour::run() {
  say("main", "(a) three workers in one nursery");
  co_await harrow::openNursery([this](TaskNursery& n) -> Co<void> {
    n.startSoon([this]() { return worker("fast", 3, 10); });
    n.startSoon([this]() { return worker("medium", 2, 17); });
    n.startSoon([this]() { return worker("slow", 1, 45); });
    say("main", "all three started; the nursery waits for them");
    co_return;
  });
  say("main", "nursery closed: every worker has finished");

  say("main", "(b) started handshake");
  co_await harrow::openNursery([this](TaskNursery& n) -> Co<void> {
    auto serve = [this](harrow::TaskStatus<int>& status) -> Co<void> {
      KJ_DEFER(say("server", "stopped listening"));  // runs however the task ends
      say("server", "binding...");
      co_await sleep(20);
      say("server", "listening on port 8080");
      status.started(8080);
      co_await kj::Promise<void>(kj::NEVER_DONE);  // serve forever (until cancelled)
    };
    int port = co_await n.start<int>(kj::mv(serve));
    say("main", kj::str("server is up on port ", port, "; connecting"));
    co_await sleep(10);
    say("main", "done with the server; cancelling the nursery");
    n.cancel();  // cancellation is not an error: the nursery just closes
  });
  say("main", "server stopped");

  say("main", "(c) deadline: moveOnAfter(30ms) around a 1s operation");
  bool cutShort = co_await harrow::moveOnAfter(timer, 30 * MILLISECONDS, [this]() -> Co<void> {
    say("download", "started (takes 1s)");
    co_await sleep(1000);
    say("download", "finished");  // not reached
  });
  say("main", cutShort ? "deadline passed: download abandoned" : "download finished in time");

  say("main", "(d) one failure cancels the siblings");
  kj::Maybe<kj::Exception> error;
  try {
    co_await harrow::openNursery([this](TaskNursery& n) -> Co<void> {
      n.startSoon([this]() { return patientWorker("alice"); });
      n.startSoon([this]() { return patientWorker("bob"); });
      n.startSoon([this]() { return flaky(); });
      co_return;
    });
  } catch (const kj::Exception& e) {
    error = e;
  }
  KJ_IF_MAYBE(e, error) {
    say("main", kj::str("nursery raised: ", e->getDescription()));
  } else {
    say("main", "nursery raised nothing (unexpected)");
  }
  bool offLoopOk = co_await offLoop();
  co_return cutShort && error != nullptr && cancelledTasks == 2 && cleanedUpTasks == 2 && offLoopOk;
}

// (e) Work that blocks (file I/O, hashing, a C library without async) runs on a pool thread;
// the coroutine resumes on its own loop with the result.
Co<bool> Tour::offLoop() {
  say("main", "(e) blocking work off the loop");
  auto loopThread = std::this_thread::get_id();
  std::thread::id hashedOn;
  uint64_t bytes = 0;
  uint64_t digest = co_await harrow::runInThread([&](harrow::CancelToken& token) {
    hashedOn = std::this_thread::get_id();
    return hashFile("/proc/self/exe", token, bytes);
  });
  bool resumedHere = std::this_thread::get_id() == loopThread;
  say("hash", kj::str("this program (", bytes, " bytes) hashes to ", kj::hex(digest),
                      hashedOn != loopThread ? ", on a pool thread"
                                             : ", ON THE LOOP (unexpected)"));
  say("main", resumedHere ? "resumed on the loop's thread" : "resumed elsewhere (unexpected)");

  // Endless work stops when its scope is cancelled, and the scope waits for the thread.
  uint64_t zeros = 0;
  bool threadReturned = false;
  bool cut = co_await harrow::moveOnAfter(timer, 20 * MILLISECONDS, [&]() -> Co<void> {
    say("hash", "hashing /dev/zero (endless) with a 20ms deadline");
    co_await harrow::runInThread([&](harrow::CancelToken& token) {
      hashFile("/dev/zero", token, zeros);
      threadReturned = true;
    });
  });
  say("main", kj::str(cut ? "deadline passed" : "no deadline (unexpected)",
                      threadReturned ? "; its thread had stopped before the scope ended"
                                     : "; its thread was NOT waited for"));

  // The other direction: a thread that is not the loop's calls into it and gets a result.
  auto handle = harrow::LoopHandle::current();
  auto done = kj::newPromiseAndCrossThreadFulfiller<void>();
  kj::String answer;
  std::thread foreign([&]() {
    answer = handle.run([&]() {  // on the loop's thread, where the tour's state lives
      return kj::str(cancelledTasks, " tasks were cancelled so far");
    });
    done.fulfiller->fulfill();
  });
  co_await kj::mv(done.promise);  // the loop runs the call while it waits
  foreign.join();
  say("thread", kj::str("asked the loop: ", answer));
  co_return resumedHere && hashedOn != loopThread && cut && threadReturned && bytes > 0;
}

}  // namespace

int main() {
  auto io = kj::setupAsyncIo();
  Tour tour(io.provider->getTimer());
  bool ok = tour.run().wait(io.waitScope);
  say("main", ok ? "everything behaved as expected" : "UNEXPECTED behaviour");
  return ok ? 0 : 1;
}
