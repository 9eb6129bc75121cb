#include <harrow/co/nursery.h>

namespace harrow {

TaskNursery::TaskNursery() : tasks(*this) {}

void TaskNursery::add(kj::Function<kj::Promise<void>()> fn) {
  KJ_REQUIRE(!closed, "nursery is closed: start tasks from inside its block or its tasks");
  _::AmbientScopeGuard guard(&scope);  // the task's coroutine runs in the nursery's scope
  tasks.add(runTask(kj::mv(fn)));
}

Co<void> TaskNursery::runTask(kj::Function<kj::Promise<void>()> fn) {
  try {
    co_await kj::evalNow([&]() { return fn(); });
  } catch (...) {
    record(currentException());
  }
}

void TaskNursery::record(kj::Exception&& exception) {
  if (isCancelled(exception)) {
    // Our own cancellation is not an error; an enclosing scope's is re-raised at the end so
    // that scope can absorb it.
    if (!scope.cancelCalled() && outerCancellation == nullptr) {
      outerCancellation = kj::mv(exception);
    }
    return;
  }
  // One failure, one error: a child actor's loss reaches every task that waited on its channel
  // and the child's supervisor, each with a copy of the same exception (ActorDied naming its pid,
  // ActorUnreachable naming its host); the nursery raises it once.
  if (is(exception, ErrorKind::ACTOR_DIED) || is(exception, ErrorKind::ACTOR_UNREACHABLE)) {
    for (auto& recorded : errors) {
      if (recorded.getDescription() == exception.getDescription()) return;
    }
  }
  errors.add(kj::mv(exception));
  scope.cancel();
}

void TaskNursery::taskFailed(kj::Exception&& exception) {
  // runTask() catches everything; anything reaching here escaped a destructor.
  record(kj::mv(exception));
}

Co<void> TaskNursery::join() {
  // Every task has been told to stop or is finishing on its own: waiting is not a checkpoint.
  co_await uncancellable(tasks.onEmpty());
  closed = true;
  if (!errors.empty()) {
    kj::throwFatalException(makeMultiError(errors.releaseAsArray()));
  }
  KJ_IF_MAYBE(cancelled, outerCancellation) {
    rethrow(kj::mv(*cancelled));
  }
}

Co<void> openNursery(kj::Function<kj::Promise<void>(TaskNursery&)> body) {
  TaskNursery nursery;
  nursery.add([&]() { return body(nursery); });
  co_await nursery.join();
}

}  // namespace harrow
