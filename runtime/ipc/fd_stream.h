// FdStream: a kj::AsyncIoStream over a socket (or pipe) fd that harrow owns, watched for
// readability only. harrow::Channel uses it for every stream that has an fd.
//
// Why not KJ's own fd stream (LowLevelAsyncIoProvider::wrapSocketFd): that one registers the fd
// with epoll for EPOLLIN|EPOLLOUT, edge-triggered, so every time the peer drains what we wrote the
// kernel signals write space and our event loop wakes for nothing (unpinned, a cross-CPU wakeup
// per message and side; see bench/README.md). It also calls read() once more after a short read,
// to learn from EAGAIN what the short read already said: the socket is drained.
//
// FdStream instead:
//  - registers the fd for reading only (UnixEventPort::FdObserver, OBSERVE_READ);
//  - calls read()/sendmsg() directly; a read() that returns less than the space offered drained
//    the socket, so it arms whenBecomesReadable() right then (the FdObserver rules in
//    kj/async-unix.h: only once the kernel reported "not at EOF") and the next read waits for it;
//  - watches for write space only while a write is blocked (EAGAIN or a short write), through a
//    second registration on a dup() of the fd (epoll allows one registration per fd number),
//    dropped again as soon as the write completes.
//
// Besides the kj::AsyncIoStream interface (getStream() users, tests), it offers the synchronous
// calls Channel is built on: readNow()/whenReadable() and writeNow()/writeLater().

#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/io.h>
#include <kj/vector.h>

namespace harrow {

namespace _ {  // internal
// Successful reads by FdStreams on this thread so far: how busy polling (busy_poll.h) tells that
// its event loop is still receiving.
uint64_t fdReadsOnThisThread();
}  // namespace _

class FdStream final : public kj::AsyncIoStream {
public:
  // Takes `fd` and makes it non-blocking and close-on-exec (as KJ's wrapSocketFd() does).
  FdStream(kj::UnixEventPort& eventPort, kj::AutoCloseFd fd);
  ~FdStream() noexcept(false);
  KJ_DISALLOW_COPY(FdStream);

  // If `stream` has an fd (getFd()) and `eventPort` (the event loop's port) is given, returns an
  // FdStream over a dup() of that fd and destroys `stream` (its epoll registration goes with it;
  // the socket stays open through the dup). Otherwise (or if `stream` is an FdStream already)
  // returns `stream` unchanged.
  // Only for plain byte streams over their fd: a wrapper that transforms the bytes but forwards
  // getFd() would be bypassed.
  static kj::Own<kj::AsyncIoStream> adopt(kj::Own<kj::AsyncIoStream> stream,
                                          kj::Maybe<kj::UnixEventPort&> eventPort);

  // ---- the synchronous interface (one reader and one writer at a time) ----

  // Reads up to `maxBytes` now: the count, 0 at EOF, or nullptr if nothing can be read now (then
  // await whenReadable() and try again). Throws a kj::Exception on an I/O error (ECONNRESET, ...).
  // Makes no syscall when an earlier read already found the socket drained.
  kj::Maybe<size_t> readNow(void* buffer, size_t maxBytes);

  // Resolves when readNow() may find data again; at once if the socket is not known to be
  // drained. May be cancelled (dropped) without losing anything: the next readNow() then asks the
  // kernel first.
  kj::Promise<void> whenReadable();

  // Writes as much of `pieces` as the kernel takes now, from pieces[index] + offset on, and
  // advances index and offset past what it wrote. True if it wrote everything; false if the
  // kernel took no more (then writeLater()). Throws a kj::Exception on an I/O error (EPIPE,
  // ECONNRESET, ...).
  bool writeNow(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces, size_t& index,
                size_t& offset);

  // After writeNow() returned false: writes the rest as space becomes available. The pieces must
  // stay valid until it resolves; dropping it stops writing, possibly in the middle of a piece.
  kj::Promise<void> writeLater(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces,
                               size_t index, size_t offset);

  // ---- passing fds (SCM_RIGHTS; Unix sockets only) ----

  // True if the fd is a Unix socket, over which fds can be passed.
  bool canPassFds() const;

  // `fd` goes with the next sendmsg() that writes at least one byte, so the peer receives it with
  // (or before) the first byte written after this call. Closed here once it has been sent.
  void sendFdWithNextWrite(kj::AutoCloseFd fd);

  // Fds received (with any read so far), oldest first; nullptr if none is waiting. At most
  // MAX_RECEIVED_FDS wait: a peer that sends more has the surplus closed.
  kj::Maybe<kj::AutoCloseFd> takeReceivedFd();
  static constexpr size_t MAX_RECEIVED_FDS = 4;

  // ---- kj::AsyncIoStream ----
  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;
  void shutdownWrite() override;
  void abortRead() override;
  void getsockopt(int level, int option, void* value, kj::uint* length) override;
  void setsockopt(int level, int option, const void* value, kj::uint length) override;
  void getsockname(struct sockaddr* addr, kj::uint* length) override;
  void getpeername(struct sockaddr* addr, kj::uint* length) override;
  kj::Maybe<int> getFd() const override { return fd.get(); }

private:
  struct WriteWatch;

  kj::UnixEventPort& eventPort;
  kj::AutoCloseFd fd;
  kj::UnixEventPort::FdObserver readObserver;  // OBSERVE_READ only: no EPOLLOUT wakeups
  bool isSocket = true;                        // false once sendmsg() said ENOTSOCK (a pipe)
  kj::Vector<kj::AutoCloseFd> fdsToSend;       // go with the next sendmsg()
  kj::Vector<kj::AutoCloseFd> receivedFds;     // arrived with reads, not yet taken

  // Armed (whenBecomesReadable()) when a read found the socket drained; readNow() returns
  // nullptr without a syscall while it is set.
  kj::Maybe<kj::Promise<void>> readable;

  // Exists only while a write waits for space.
  kj::Maybe<kj::Own<WriteWatch>> writeWatch;

  kj::Maybe<kj::ForkedPromise<void>> writeDisconnected;

  kj::Promise<void> writeRest(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces,
                              size_t index, size_t offset);
  kj::Promise<size_t> tryReadFrom(kj::byte* buffer, size_t minBytes, size_t maxBytes,
                                  size_t alreadyRead);
};

}  // namespace harrow
