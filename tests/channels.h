// Channels for tests, and what the shared-memory tests count and record around them.
//
//   auto channels = harrow::testing::socketpairChannels(io.unixEventPort);
//   harrow::testing::SharedFrameRecord sent;
//   channels.client->sendLargeFramesThroughSharedMemory(
//       kj::heap<harrow::testing::RecordingCodec>(sent), 16u << 10, 1u << 20);
//   ...
//   EXPECT_EQ(harrow::testing::mappingsOf("harrow-frame"), 0u);
//
// Why here: tests/ipc (the channel alone) and tests/engine (peers over it) check the same things
// of the shared-memory path (fds and mappings left behind, where frames went), so they count them
// the same way.

#pragma once

#include <harrow/ipc/channel.h>

#include "harrow/wire.capnp.h"

#include <capnp/message.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/vector.h>

#include <dirent.h>
#include <sys/socket.h>

#include <fstream>
#include <string>

namespace harrow::testing {

// The two ends of one connection: the opener's (the client's) and the acceptor's (the server's).
struct ChannelPair {
  kj::Own<Channel> client;
  kj::Own<Channel> server;
};

// Both ends of a new socketpair, as channels doing their own I/O on the fds (so they can pass
// fds: rings and sealed frames).
inline ChannelPair socketpairChannels(kj::UnixEventPort& eventPort) {
  int fds[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  return {kj::heap<Channel>(eventPort, kj::AutoCloseFd(fds[0])),
          kj::heap<Channel>(eventPort, kj::AutoCloseFd(fds[1]))};
}

// The fds this process has open.
inline size_t openFds() {
  size_t count = 0;
  DIR* dir = opendir("/proc/self/fd");
  KJ_ASSERT(dir != nullptr);
  while (auto* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;  // the DIR's own fd
}

// Mappings in this process of memfds whose name holds `name` ("harrow-ring", "harrow-frame").
inline size_t mappingsOf(const char* name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  size_t count = 0;
  while (std::getline(maps, line)) {
    if (line.find(name) != std::string::npos) ++count;
  }
  return count;
}

// Where a channel put the frames it sent through shared memory.
struct SharedFrameRecord {
  uint64_t ringEnd = 0;             // the end of the last frame in the ring
  kj::Vector<uint64_t> fileStarts;  // where each sealed frame starts in its file
};

// The wire messages of the engine's codec (runtime/engine/internal/shared_frames.c++), recording
// in `record` where each frame went.
class RecordingCodec final : public SharedFrameCodec {
public:
  explicit RecordingCodec(SharedFrameRecord& record) : record(record) {}
  kj::Own<capnp::MessageBuilder> ringMessage(uint64_t capacity) override {
    auto builder = kj::heap<capnp::MallocMessageBuilder>();
    builder->initRoot<wire::Message>().setSharedMemoryRing(capacity);
    return builder;
  }
  kj::Own<capnp::MessageBuilder> frameMessage(uint64_t start, uint64_t length) override {
    record.ringEnd = start + length;
    auto builder = kj::heap<capnp::MallocMessageBuilder>();
    auto frame = builder->initRoot<wire::Message>().initSharedMemoryFrame();
    frame.setStart(start);
    frame.setLength(length);
    return builder;
  }
  kj::Own<capnp::MessageBuilder> fileMessage(uint64_t start, uint64_t length) override {
    record.fileStarts.add(start);
    auto builder = kj::heap<capnp::MallocMessageBuilder>();
    auto file = builder->initRoot<wire::Message>().initSharedMemoryFile();
    file.setStart(start);
    file.setLength(length);
    return builder;
  }

private:
  SharedFrameRecord& record;
};

}  // namespace harrow::testing
