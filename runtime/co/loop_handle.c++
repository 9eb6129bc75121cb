#include <harrow/co/loop_handle.h>

#include <kj/debug.h>

namespace harrow {
namespace {

kj::Exception loopGone() {
  return makeError(ErrorKind::LOOP_GONE, "the event loop this LoopHandle belongs to has ended: "
                                         "nothing runs on it any more");
}

}  // namespace

LoopHandle LoopHandle::current() {
  return LoopHandle(kj::getCurrentThreadExecutor().addRef(), std::this_thread::get_id());
}

void LoopHandle::checkCallable() const {
  KJ_REQUIRE(std::this_thread::get_id() != owner,
             "LoopHandle::run() called on the loop's own thread: it would wait for itself; "
             "call the function directly");
  if (!executor->isLive()) kj::throwFatalException(loopGone());
}

void LoopHandle::rethrowLoopGone(const kj::Executor& target, const kj::Exception& e) {
  if (e.getType() == kj::Exception::Type::DISCONNECTED && !target.isLive()) {
    kj::throwFatalException(loopGone());
  }
}

}  // namespace harrow
