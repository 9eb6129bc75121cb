// What every C++ snippet of the documentation may use without declaring it (docs:snippets_test,
// extract.py): harrow, the actors of snippets.capnp, WorkerImpl, and a few helpers. A snippet
// that is a statement list runs as the body of
//   harrow::Co<void> snippet(harrow::Actor& root, harrow::ActorNursery& an,
//                            CounterActor::Portal& counter, TickerActor::Portal& portal,
//                            const kj::Exception& e)
// and a snippet of declarations (a class, a function, main) is compiled as it is. Each "## "
// section of a page is a namespace of its own: its snippets see the ones before them.

#pragma once

#include "docs/snippets/snippets.capnp.harrow.h"

#include <harrow/harrow.h>

#include <stdio.h>

// Stand-ins for what the snippets do with a value.
template <typename T>
void print(const T&) {}
template <typename T>
void show(const T&) {}
template <typename T>
void save(const T&) {}

class WorkerImpl final : public WorkerActor::Server {
public:
  harrow::Co<void> work(WorkCall call) override {
    call.results().setResult(call.params().getJob());
    co_return;
  }
};
