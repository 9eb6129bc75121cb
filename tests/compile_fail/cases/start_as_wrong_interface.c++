// An implementation started by its type cannot be taken for another interface's actor.
// expect-error: conversion from .harrow::registry::RegistryActor::Portal. to non-scalar type .CounterActor::Portal. requested
#include <harrow/harrow.h>
#include "examples/counter/counter.capnp.harrow.h"

class RegistryImpl : public harrow::RegistryActor::Server {};

harrow::Co<void> use(harrow::ActorNursery& nursery) {
  CounterActor::Portal counter = co_await nursery.startActor<RegistryImpl>("c");
  (void)counter;
}
