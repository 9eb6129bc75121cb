// The engine's side of the shared-memory path for large frames (docs/PROTOCOL.md, "Large frames
// through shared memory"): the wire messages that announce a ring, stand for a frame in it, or say
// space was freed. The channel (<harrow/ipc/shared_ring.h>, Channel) moves the bytes.

#pragma once

#include <harrow/engine/peer.h>

namespace harrow {

// The codec the channel uses to build sharedMemoryRing and sharedMemoryFrame messages.
kj::Own<SharedFrameCodec> newWireSharedFrameCodec();

// True if the (envelope-checked) message is one of the shared-memory messages.
bool isSharedMemoryMessage(wire::Message::Reader message);

// Handles such a message: a ring announcement or a freed notice is consumed here (nullptr); a
// frame reference is replaced by the frame it stands for, copied out and checked as if it had come
// from the socket (its envelope is not checked yet: route it like any received message). Throws
// MalformedFrame for a bad announcement or reference, or a frame that is itself a reference.
kj::Maybe<kj::Own<capnp::MessageReader>> takeSharedMemoryMessage(Peer& peer,
                                                                 wire::Message::Reader message);

}  // namespace harrow
