// The tree debugger (tractor's multi-process debugger, on gdb). docs/DEBUGGING.md walks through a
// session.
//
// A tree started with --harrow-debug (or HARROW_DEBUG=1) is in debug mode; every child learns it
// from its spawn spec. In debug mode an actor stops for the debugger
//  - when it calls harrow::pause() (a breakpoint in actor code),
//  - post mortem, when one of its handlers raises an error of its own (not a cancellation, and
//    not an error relayed from another actor, which stops where it was raised): stopped in the
//    handler's coroutine as the error leaves its body, its frame and locals alive for gdb, and
//  - post mortem, when it receives a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT).
//
// A stopped actor asks the root for the terminal, over a Unix socket whose address the spawn spec
// carries. The root holds one terminal lock: actors take turns, first come first served. When
// an actor's turn comes, the root starts gdb attached to it (`gdb -p PID`, or HARROW_GDB) and gives
// gdb the terminal (its foreground process group: the terminal's Ctrl-C goes to gdb, never to the
// tree), and takes the terminal back when gdb exits. Quitting gdb (`quit`, Ctrl-D) detaches it:
// a pause() returns and the actor carries on; a post-mortem's error then propagates as it would
// have (the handler's caller gets it; a fatal signal kills the actor). gdb's `kill` ends the actor
// instead (its parent sees it die).
//
// While any actor holds or waits for the terminal, supervisors do not kill actors whose grace
// period has run out (ActorNursery's SIGKILL waits for the debugger, then a grace period more).
// A root without a terminal (stdin not a tty) prints what stopped and lets the actor go on.

#pragma once

#include <harrow/actor/actor.h>

namespace harrow {

// Whether HARROW_DEBUG asks for debug mode ("1", "true", "yes" or "on"); harrow::main sets it from
// --harrow-debug.
bool debugModeFromEnvironment();

// A breakpoint: in debug mode, blocks the calling actor until the root's terminal is free and the
// user has quit gdb (attached to this actor: `bt` shows the caller); returns at once otherwise.
// Blocking, not a coroutine, so that the debugger sees the caller's own stack. In the root it
// only prints the command to attach gdb yourself: the root's event loop hands out the terminal.
void pause();

// harrow::main's: the root `root` hosts the terminal lock and puts its address into the spawn
// specs of the children it spawns. Before serve().
void hostDebugger(Actor& root);

// harrow::main's: a child that received `debug` in its spawn spec asks the root at `address`.
// Installs the fatal-signal handlers. Before serve().
void joinDebugger(Actor& actor, kj::StringPtr address);

// For supervisors: resolves once no actor of the tree holds or waits for the debugger, then
// `grace` more if one did (so that an actor just released gets its grace period); at once
// without debug mode.
kj::Promise<void> whenDebuggerIdle(Actor& actor, kj::Duration grace);

}  // namespace harrow
