# The harrow wire protocol: every message on a channel is one framed Cap'n Proto `Message`
# (standard capnp stream framing: segment table, then segments). docs/PROTOCOL.md describes the
# state machines; keep the two in step.
@0xb9d124d1f6ee5d4f;

$import "/capnp/c++.capnp".namespace("harrow::wire");

const protocolVersion :UInt32 = 2;
# 2: the proof covers both whole hellos, and frames after the handshake may carry tags
# (frameProtection; docs/PROTOCOL.md, "authenticate" and "Frame protection").

struct ActorId {
  # Names are not unique; the uuid is (random, 128 bits).
  name @0 :Text;
  uuid @1 :Data;
}

struct Message {
  union {
    # --- channel setup: each side sends exactly one hello first, then (except on the channel
    # between a parent and the child it spawned) proves it knows the tree's secret ---
    hello @0 :Hello;
    authenticate @15 :Data;   # HMAC-SHA512-256 over both whole hellos (docs/PROTOCOL.md,
                              # "authenticate")

    # --- sent by a parent to a child it spawned, right after the hellos ---
    spawnSpec @1 :SpawnSpec;

    # --- one task (call, stream or context) is addressed by the caller's callId ---
    start @2 :Start;          # caller -> callee: run a method
    startAck @3 :StartAck;    # callee -> caller: the method exists; its kind
    started @4 :Payload;      # callee -> caller: context's first value
    yield @5 :Payload;        # either way: one stream item
    stop @6 :Void;            # either way: no more items from the sender
    return @7 :Payload;       # callee -> caller: the result; the task is over
    error @8 :Error;          # either way: the task failed (or the peer violated the protocol)
    credit @9 :UInt32;        # either way: the receiver may now accept this many more items
    cancelTask @10 :Void;     # caller -> callee: cancel this task
    cancelTaskAck @11 :Void;  # callee -> caller: the task has been cancelled and is gone

    # --- whole-actor control, callId 0 ---
    cancelActor @12 :Void;    # parent or authenticated peer -> actor: tear the actor down
    cancelActorAck @13 :Void; # actor -> canceller: teardown done, about to exit

    # --- the link between a parent and a node that runs one of its children on another host
    # (docs/PROTOCOL.md, "Links between hosts"); never seen by an actor's Peer: the two ends strip
    # them ---
    link @16 :Link;

    # --- large frames through shared memory, callId 0, only between sides whose hellos both
    # said sharedMemory (docs/PROTOCOL.md, "Large frames through shared memory") ---
    sharedMemoryRing @17 :UInt64;   # the sender's ring of this many bytes: a sealed memfd, passed
                                    # with this message (SCM_RIGHTS); at most one per direction
    sharedMemoryFrame @18 :SharedMemoryFrame;  # stands for the frame at this place in the ring
    sharedMemoryFreed @19 :Void;    # the receiver freed ring space the sender waits for
    sharedMemoryFile @20 :SharedMemoryFrame;
    # stands for a frame too large for the ring, at byte `start` of a memfd sealed against
    # writes that is passed with this message (SCM_RIGHTS); the receiver reads it in place
  }
  callId @14 :UInt64;
  # Chosen by the side that sent `start`, unique among its open tasks on this channel. Messages
  # for a task travel both ways under the same id, so the two sides draw from disjoint sets: the
  # side that opened the connection uses odd ids, the side that accepted it even ids (as HTTP/2
  # streams do). 0 is reserved for channel-level messages (hello, authenticate, spawnSpec,
  # cancelActor*).
}

struct Hello {
  id @0 :ActorId;
  pid @1 :UInt32;
  protocolVersion @2 :UInt32;
  maxMessageBytes @3 :UInt64;
  # The largest frame (segment table plus segments) this side accepts; 0 means the default,
  # 64 MiB. Neither side sends a frame over the smaller of the two limits (docs/PROTOCOL.md,
  # "hello").
  nonce @4 :Data;             # 32 fresh random bytes: the challenge the peer's proof must cover
  sharedMemory @5 :Bool;      # this side takes large frames through shared memory (a Unix
                              # socket that can pass fds; docs/PROTOCOL.md, "Large frames through
                              # shared memory")
  frameProtection @6 :FrameProtection;
  # What this side requires of every frame after the handshake (docs/PROTOCOL.md, "Frame
  # protection"): the channel uses the stronger of the two sides' requirements. Covered by the
  # proofs, like every other field, so nobody in the middle can lower it.
}

enum FrameProtection {
  none @0;           # plain frames: a Unix socket between processes of one uid, a parent-child pair
  authenticated @1;  # each frame followed by a 16-byte Poly1305 tag (TCP, anything else)
  encrypted @2;      # the segments encrypted too (XChaCha20-Poly1305; --harrow-encrypt)
}

struct SharedMemoryFrame {
  start @0 :UInt64;           # the frame's first byte, counted from the ring's creation; must be
                              # where the previous frame ended (frames are taken in order)
  length @1 :UInt64;          # its size in bytes (segment table plus segments)
}

struct SpawnSpec {
  # Runtime values a child receives from its parent before it serves anything.
  implementation @0 :Text;     # which registered implementation to run
  bindAddresses @1 :List(Text);# where the child serves its own channel server
  registryAddress @2 :Text;    # the tree's registry (the root, by default)
  rootAddress @3 :Text;
  logLevel @4 :Text;           # obsolete: never written nor read (the environment carries it)
  debug @5 :Bool;
  args @6 :AnyPointer;         # obsolete: never written nor read (left null, ignored)
  gracePeriodNanos @7 :UInt64; # how long the parent waits after cancelActor before SIGKILL
                               # (0: not said); the child's own children get less (docs/PROTOCOL.md,
                               # "Cancelling an actor")
  maxMessageBytes @8 :UInt64;  # the parent's message limit, which the child adopts; 0: keep its own
  treeSecret @9 :Data;         # the tree's 32-byte secret: the child authenticates with it
  debugTerminal @10 :Text;     # with `debug`: where the root hands out its terminal (a Unix
                               # socket, docs/DEBUGGING.md); the tree runs with --harrow-debug
}

enum MethodKind {
  call @0;     # params -> one result                         (tractor: Portal.run)
  stream @1;   # params -> items until stop                   (tractor: open_stream_from)
  context @2;  # params -> started, streams both ways, return (tractor: open_context)
}

struct Start {
  interfaceId @0 :UInt64;   # the capnp type id of the actor interface
  methodId @1 :UInt16;      # ordinal of the method in that interface
  params @2 :Payload;       # the method's params struct
  window @3 :UInt32;        # initial credit the caller grants for items sent to it
  timeoutNanos @4 :UInt64;
  # What was left of the caller's deadline when it sent the start, in nanoseconds (relative, so
  # no clock is shared); 0: no deadline. The handler runs under a cancel scope that expires that
  # long after the start arrived; on expiry the callee answers with an `error` of kind
  # deadlineExceeded (docs/PROTOCOL.md, "Deadlines").
}

struct StartAck {
  kind @0 :MethodKind;
  window @1 :UInt32;        # initial credit the callee grants for items sent to it (contexts)
}

struct Payload {
  value @0 :AnyPointer;     # a struct of the type the schema declares for this message
  typeId @1 :UInt64;        # that struct's capnp type id: the receiver checks it (a mismatch is
                            # a protocol violation, not a misread)
}

struct Error {
  type @0 :Text;            # the boxed error type, e.g. "kj::Exception(FAILED)" or a C++ type
  message @1 :Text;
  remoteTrace @2 :Text;     # stack / async trace text from where it was raised
  file @3 :Text;            # source location where it was raised
  line @4 :UInt32;
  origin @5 :ActorId;       # the actor that raised it
  relayPath @6 :List(ActorId);  # actors it passed through on the way here, nearest last
  kind @7 :ErrorKind;
  causes @8 :List(Error);   # a MultiError's errors, each whole; the fields above then describe the
                            # MultiError itself (type "harrow.MultiError", origin: who raised it)
}

enum ErrorKind {
  failed @0;              # the remote handler raised
  contextCancelled @1;    # the remote task was cancelled (tractor: ContextCancelled)
  protocolViolation @2;   # the peer sent something the state machine does not allow
  unknownMethod @3;       # no such interface or method on that actor
  deadlineExceeded @4;    # the deadline the start carried (timeoutNanos) passed at the callee
}

struct Link {
  # One per frame on a parent-node link, callId 0, interleaved with the relayed child channel's
  # frames (which are never `link`). docs/PROTOCOL.md, "Links between hosts".
  union {
    spawn @0 :NodeSpawn;      # parent -> node, first after the handshake: start this child
    spawned @1 :UInt32;       # node -> parent: it runs, with this pid; relaying starts
    heartbeat @2 :Void;       # either way, whenever the sender has sent nothing for a while
    kill @3 :UInt32;          # parent -> node: send the child this signal (the grace ran out)
    exited @4 :UInt32;        # node -> parent: the child's wait status; the node's last frame
    refused @5 :Text;         # node -> parent, instead of spawned: why not (no such executable)
  }
}

struct NodeSpawn {
  name @0 :Text;              # the child actor's name
  executable @1 :Text;        # the program the node runs (one it allows), as a path on its host
  gracePeriodNanos @2 :UInt64;# how long the node waits after cancelling an orphaned child
  heartbeatMillis @3 :UInt32; # the parent's heartbeat interval; the node uses the same
  silenceMillis @4 :UInt32;   # how long a silent link is tolerated before it counts as lost
}
