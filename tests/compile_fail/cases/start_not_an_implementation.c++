// Only implementations of an actor interface can be started by type.
// expect-error: no matching function for call to .harrow::ActorNursery::startActor<NotAnActor>
#include <harrow/harrow.h>

struct NotAnActor {};

harrow::Co<void> use(harrow::ActorNursery& nursery) {
  auto portal = co_await nursery.startActor<NotAnActor>("c");
  (void)portal;
}
