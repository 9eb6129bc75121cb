// harrow::main: the entry point of a harrow program. The same binary is both the root of the
// actor tree and, re-executed by its parent, every child actor.
//
//   int main(int argc, char** argv) {
//     harrow::Implementations impls;
//     impls.add<CounterImpl>("counter");
//     return harrow::main(argc, argv, impls, [&](harrow::Actor& root) -> harrow::Co<void> {
//       co_await harrow::openActorNursery(root, [&](harrow::ActorNursery& an) -> harrow::Co<void> {
//         ...
//       });
//     });
//   }
//
// Flags the root understands (and removes nothing: the program may parse its own):
//   --harrow-name=NAME        the root actor's name (default: the program's file name)
//   --harrow-log=LEVEL        debug, info, warning or error, for the whole tree
//   --harrow-registry=ADDR    the registry to host or join, or "none"
//   --harrow-transport=KIND   what actors listen on: tcp, unix or unix-abstract
//   --harrow-max-message=BYTES  the largest message a channel carries (default 64M; K, M, G
//                             suffixes), for the whole tree (HARROW_MAX_MESSAGE_BYTES)
//   --harrow-encrypt          encrypt every channel that carries frame tags (TCP, links):
//                             HARROW_ENCRYPT=1, docs/PROTOCOL.md, "Frame protection"
//   --harrow-insecure-links   links between hosts without TLS tagged, not encrypted (default:
//                             encrypted); the node must say so too: HARROW_INSECURE_LINKS=1
//   --harrow-debug            debug mode for the whole tree (HARROW_DEBUG=1): harrow::pause(),
//                             post-mortem gdb on the root's terminal (<harrow/spawn/debug.h>)
//   --harrow-metrics=ADDR     every actor counts; the root serves the tree's metrics at
//                             http://ADDR/metrics (HOST:PORT, or PORT alone on loopback;
//                             HARROW_METRICS)
//   --harrow-metrics-token-file=PATH  a bearer token /metrics requires (a file only this user
//                             may read; HARROW_METRICS_TOKEN_FILE)
//   --harrow-log-format=FMT   text (default) or json: one JSON object per log line
//                             (HARROW_LOG_FORMAT)
//   --harrow-nodes=NAME=ADDR,...  nodes that run children on other hosts (HARROW_NODES;
//                             startActor(..., {.node = "NAME"}); <harrow/spawn/link.h>)
//   --harrow-hosts=NAME=ssh://[USER@]HOST[:PORT],...  hosts that run children through ssh
//                             (HARROW_HOSTS; startActor(..., {.host = "NAME"}); <harrow/spawn/ssh.h>)
//   --harrow-ssh-config=FILE  the ssh client's configuration file (ssh -F; HARROW_SSH_CONFIG)
//   --harrow-link-timeout=MS  how soon a silent link to such a child counts as lost (default 3000)
//   --harrow-tls-cert=PEM --harrow-tls-key=PEM --harrow-tls-ca=PEM  TLS on those links
// Opening a second root in one process is an error.
//
// In the root, `body` runs inside the root actor (tractor: open_root_actor) and main returns 0
// when it succeeds, 1 (after printing the error) when it fails. In a child, main serves the
// implementation the parent asked for until it is cancelled or its parent goes away; `body`
// does not run.

#pragma once

#include <harrow/actor/actor.h>
#include <harrow/spawn/forkserver.h>

namespace harrow {

int main(int argc, char** argv, Implementations& implementations,
         kj::Function<kj::Promise<void>(Actor& root)> body);

// Starts this process's zygote (<harrow/spawn/forkserver.h>) for a program that serves its children
// with `implementations` in harrow::main's child mode. harrow::main calls it itself; programs
// that spawn actors without harrow::main (tests, benchmarks) call it before any thread exists.
void startForkServer(Implementations& implementations);

}  // namespace harrow
