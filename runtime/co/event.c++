#include <harrow/co/event.h>

namespace harrow {
namespace {

kj::ForkedPromise<void> newEventPromise(kj::Own<kj::PromiseFulfiller<void>>& fulfiller) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  fulfiller = kj::mv(paf.fulfiller);
  return paf.promise.fork();
}

}  // namespace

Event::Event() : done(newEventPromise(fulfiller)) {}

void Event::set() {
  if (setAlready) return;
  setAlready = true;
  fulfiller->fulfill();
}

}  // namespace harrow
