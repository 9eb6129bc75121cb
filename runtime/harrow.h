// harrow: trees of actors, each an OS process, supervised with structured concurrency.
//
// The one header an application includes: the whole public API, nothing internal. Generated
// code (FooActor::Server, FooActor::Portal) includes only <harrow/typed/typed.h>.

#pragma once

#include <harrow/co/cancel_scope.h>
#include <harrow/co/co.h>
#include <harrow/co/errors.h>
#include <harrow/co/event.h>
#include <harrow/co/loop_handle.h>
#include <harrow/co/multi_error.h>
#include <harrow/co/nursery.h>
#include <harrow/co/thread_pool.h>
#include <harrow/co/version.h>
#include <harrow/typed/typed.h>
#include <harrow/engine/peer.h>
#include <harrow/engine/remote_error.h>
#include <harrow/actor/actor.h>
#include <harrow/actor/log.h>
#include <harrow/discovery/discovery.h>
#include <harrow/spawn/actor_nursery.h>
#include <harrow/spawn/debug.h>
#include <harrow/spawn/supervisor.h>
#include <harrow/spawn/worker_pool.h>
#include <harrow/spawn/link.h>
#include <harrow/spawn/ssh.h>
#include <harrow/flags.h>
#include <harrow/main.h>
