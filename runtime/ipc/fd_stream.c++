#include <harrow/ipc/fd_stream.h>

#include <kj/debug.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

namespace harrow {
namespace {

// At most this many pieces per sendmsg()/writev() (the kernel's UIO_MAXIOV).
constexpr size_t MAX_IOV = 1024;

}  // namespace

// A registration for write space, on its own dup() of the fd: epoll keys registrations on the fd
// number, and the read registration must stay as it is (a pending whenBecomesReadable() lives in
// it). Destroying it deregisters (EPOLL_CTL_DEL) before the dup is closed.
struct FdStream::WriteWatch {
  kj::AutoCloseFd dup;
  kj::UnixEventPort::FdObserver observer;

  WriteWatch(kj::UnixEventPort& eventPort, int fd)
      : dup(duplicate(fd)),
        observer(eventPort, dup.get(), kj::UnixEventPort::FdObserver::OBSERVE_WRITE) {}

  static kj::AutoCloseFd duplicate(int fd) {
    int result;
    KJ_SYSCALL(result = fcntl(fd, F_DUPFD_CLOEXEC, 0));
    return kj::AutoCloseFd(result);
  }
};

FdStream::FdStream(kj::UnixEventPort& eventPort, kj::AutoCloseFd fdParam)
    : eventPort(eventPort), fd(kj::mv(fdParam)),
      readObserver(eventPort, fd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ) {
  int flags;
  KJ_SYSCALL(flags = fcntl(fd.get(), F_GETFL));
  if ((flags & O_NONBLOCK) == 0) {
    KJ_SYSCALL(fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK));
  }
  KJ_SYSCALL(flags = fcntl(fd.get(), F_GETFD));
  if ((flags & FD_CLOEXEC) == 0) {
    KJ_SYSCALL(fcntl(fd.get(), F_SETFD, flags | FD_CLOEXEC));
  }
}

FdStream::~FdStream() noexcept(false) {
  // Promises from the observers go before the observers, and those before the fd is closed (the
  // declaration order does the same; explicit for clarity).
  writeDisconnected = nullptr;
  readable = nullptr;
  writeWatch = nullptr;
}

kj::Own<kj::AsyncIoStream> FdStream::adopt(kj::Own<kj::AsyncIoStream> stream,
                                           kj::Maybe<kj::UnixEventPort&> eventPort) {
  if (dynamic_cast<FdStream*>(stream.get()) != nullptr) return kj::mv(stream);  // one already
  KJ_IF_MAYBE(fd, stream->getFd()) {
    KJ_IF_MAYBE(port, eventPort) {
      kj::AutoCloseFd own = WriteWatch::duplicate(*fd);
      // The KJ stream's observer deregisters its fd (EPOLL_CTL_DEL) and, if it owned the fd,
      // closes it; the socket lives on in `own`.
      stream = nullptr;
      return kj::heap<FdStream>(*port, kj::mv(own));
    }
  }
  return kj::mv(stream);
}

// ---------------------------------------------------------------------------------------------
// Reading

namespace {
thread_local uint64_t readsOnThisThread = 0;
}  // namespace

uint64_t _::fdReadsOnThisThread() { return readsOnThisThread; }

kj::Maybe<size_t> FdStream::readNow(void* buffer, size_t maxBytes) {
  if (readable != nullptr) return nullptr;  // drained at the last read: wait for the next edge
  for (;;) {
    // recvmsg() on a socket, so that fds the peer passes (SCM_RIGHTS) are not lost: the kernel
    // closes fds sent with bytes read by a plain read().
    bool gotFds = false;
    ssize_t n;
    if (isSocket) {
      struct iovec iov = {buffer, maxBytes};
      alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * MAX_RECEIVED_FDS)];
      struct msghdr message = {};
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      n = ::recvmsg(fd.get(), &message, MSG_CMSG_CLOEXEC);
      if (n < 0 && errno == ENOTSOCK) {
        isSocket = false;
        continue;
      }
      if (n >= 0 && message.msg_controllen > 0) {
        for (struct cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr;
             c = CMSG_NXTHDR(&message, c)) {
          if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
          size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
          for (size_t i = 0; i < count; i++) {
            int received;
            memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            kj::AutoCloseFd owned(received);
            // A peer that sends more fds than anyone takes has the surplus closed.
            if (receivedFds.size() < MAX_RECEIVED_FDS) receivedFds.add(kj::mv(owned));
            gotFds = true;
          }
        }
      }
    } else {
      n = ::read(fd.get(), buffer, maxBytes);
    }
    if (n < 0) {
      int error = errno;
      if (error == EINTR) continue;
      if (error == EAGAIN || error == EWOULDBLOCK) {
        readable = readObserver.whenBecomesReadable();
        return nullptr;
      }
      KJ_FAIL_SYSCALL("read", error);
    }
    if (n > 0) ++readsOnThisThread;
    // (A read that brought fds ends at the sender's write boundary: short, yet not drained.)
    if (n > 0 && size_t(n) < maxBytes && !gotFds) {
      // A short read of a byte stream: the receive queue is empty. As kj/async-unix.h requires,
      // only trust that once the kernel has reported "not at EOF" (before the first event, or
      // after EPOLLRDHUP, the next read() has to find out: data, EAGAIN or EOF).
      KJ_IF_MAYBE(atEnd, readObserver.atEndHint()) {
        if (!*atEnd) readable = readObserver.whenBecomesReadable();
      }
    }
    return size_t(n);
  }
}

kj::Promise<void> FdStream::whenReadable() {
  KJ_IF_MAYBE(promise, readable) {
    auto result = kj::mv(*promise);
    readable = nullptr;
    return result;
  }
  return kj::READY_NOW;
}

kj::Promise<size_t> FdStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  return kj::evalNow([&]() {
    return tryReadFrom(static_cast<kj::byte*>(buffer), minBytes, maxBytes, 0);
  });
}

kj::Promise<size_t> FdStream::tryReadFrom(kj::byte* buffer, size_t minBytes, size_t maxBytes,
                                          size_t alreadyRead) {
  while (alreadyRead < minBytes) {
    KJ_IF_MAYBE(n, readNow(buffer + alreadyRead, maxBytes - alreadyRead)) {
      if (*n == 0) break;  // EOF
      alreadyRead += *n;
    } else {
      return whenReadable().then([this, buffer, minBytes, maxBytes, alreadyRead]() {
        return tryReadFrom(buffer, minBytes, maxBytes, alreadyRead);
      });
    }
  }
  return alreadyRead;
}

void FdStream::abortRead() { KJ_SYSCALL(::shutdown(fd.get(), SHUT_RD)); }

// ---------------------------------------------------------------------------------------------
// Writing

bool FdStream::writeNow(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces, size_t& index,
                        size_t& offset) {
  for (;;) {
    struct iovec iov[MAX_IOV];
    size_t count = 0;
    size_t offered = 0;
    for (size_t i = index; i < pieces.size() && count < MAX_IOV; i++) {
      size_t skip = i == index ? offset : 0;
      if (pieces[i].size() == skip) continue;  // empty
      iov[count].iov_base = const_cast<kj::byte*>(pieces[i].begin() + skip);
      iov[count].iov_len = pieces[i].size() - skip;
      offered += iov[count].iov_len;
      count++;
    }
    if (count == 0) {
      index = pieces.size();
      offset = 0;
      return true;
    }

    ssize_t n;
    if (isSocket) {
      struct msghdr message = {};
      message.msg_iov = iov;
      message.msg_iovlen = count;
      alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * MAX_RECEIVED_FDS)];
      size_t fdCount = kj::min(fdsToSend.size(), MAX_RECEIVED_FDS);
      if (fdCount > 0) {
        message.msg_control = control;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * fdCount);
        struct cmsghdr* c = CMSG_FIRSTHDR(&message);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fdCount);
        for (size_t i = 0; i < fdCount; i++) {
          int raw = fdsToSend[i].get();
          memcpy(CMSG_DATA(c) + i * sizeof(int), &raw, sizeof(int));
        }
      }
      n = ::sendmsg(fd.get(), &message, MSG_NOSIGNAL);  // EPIPE as an error, never SIGPIPE
      if (n < 0 && errno == ENOTSOCK) {
        isSocket = false;
        continue;
      }
      if (n > 0 && fdCount > 0) {
        // In flight now (the kernel holds its own references): ours can go.
        kj::Vector<kj::AutoCloseFd> rest;
        for (size_t i = fdCount; i < fdsToSend.size(); i++) rest.add(kj::mv(fdsToSend[i]));
        fdsToSend = kj::mv(rest);
      }
    } else {
      n = ::writev(fd.get(), iov, count);
    }
    if (n < 0) {
      int error = errno;
      if (error == EINTR) continue;
      if (error == EAGAIN || error == EWOULDBLOCK) return false;
      KJ_FAIL_SYSCALL("sendmsg", error);
    }

    for (size_t left = n; left > 0;) {  // n never exceeds what is left, so index stays valid
      size_t available = pieces[index].size() - offset;
      if (left >= available) {
        left -= available;
        index++;
        offset = 0;
      } else {
        offset += left;
        left = 0;
      }
    }
    while (index < pieces.size() && pieces[index].size() == offset) {  // empty pieces
      index++;
      offset = 0;
    }
    if (index == pieces.size()) return true;
    // A short write means the send buffer is full (kj/async-unix.h); otherwise it only means we
    // offered fewer than all pieces (MAX_IOV) and go on.
    if (size_t(n) < offered) return false;
  }
}

kj::Promise<void> FdStream::writeLater(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces,
                                       size_t index, size_t offset) {
  // Watch for write space until the rest is written (or the write is dropped), no longer.
  return writeRest(pieces, index, offset).attach(kj::defer([this]() { writeWatch = nullptr; }));
}

kj::Promise<void> FdStream::writeRest(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces,
                                      size_t index, size_t offset) {
  if (writeWatch == nullptr) writeWatch = kj::heap<WriteWatch>(eventPort, fd.get());
  // The write just came back short or with EAGAIN, so the buffer is full: the one moment
  // whenBecomesWritable() may be called. A registration made after the buffer drained again
  // reports it at once (EPOLL_CTL_ADD checks the current state).
  auto& watch = *KJ_ASSERT_NONNULL(writeWatch);
  return watch.observer.whenBecomesWritable().then(
      [this, pieces, index, offset]() mutable -> kj::Promise<void> {
        if (writeNow(pieces, index, offset)) return kj::READY_NOW;
        return writeRest(pieces, index, offset);
      });
}

kj::Promise<void> FdStream::write(const void* buffer, size_t size) {
  return kj::evalNow([&]() -> kj::Promise<void> {
    auto piece = kj::heapArray<kj::ArrayPtr<const kj::byte>>(1);
    piece[0] = kj::arrayPtr(static_cast<const kj::byte*>(buffer), size);
    size_t index = 0;
    size_t offset = 0;
    if (writeNow(piece, index, offset)) return kj::READY_NOW;
    auto rest = writeLater(piece, index, offset);
    return rest.attach(kj::mv(piece));
  });
}

kj::Promise<void> FdStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  return kj::evalNow([&]() -> kj::Promise<void> {
    size_t index = 0;
    size_t offset = 0;
    if (writeNow(pieces, index, offset)) return kj::READY_NOW;
    return writeLater(pieces, index, offset);
  });
}

kj::Promise<void> FdStream::whenWriteDisconnected() {
  KJ_IF_MAYBE(fork, writeDisconnected) return fork->addBranch();
  auto& fork = writeDisconnected.emplace(readObserver.whenWriteDisconnected().fork());
  return fork.addBranch();
}

bool FdStream::canPassFds() const {
  struct sockaddr_storage address;
  socklen_t length = sizeof(address);
  if (::getsockname(fd.get(), reinterpret_cast<struct sockaddr*>(&address), &length) < 0) {
    return false;
  }
  return address.ss_family == AF_UNIX;
}

void FdStream::sendFdWithNextWrite(kj::AutoCloseFd fdToSend) { fdsToSend.add(kj::mv(fdToSend)); }

kj::Maybe<kj::AutoCloseFd> FdStream::takeReceivedFd() {
  if (receivedFds.empty()) return nullptr;
  auto first = kj::mv(receivedFds[0]);
  kj::Vector<kj::AutoCloseFd> rest;
  for (size_t i = 1; i < receivedFds.size(); i++) rest.add(kj::mv(receivedFds[i]));
  receivedFds = kj::mv(rest);
  return kj::mv(first);
}

void FdStream::shutdownWrite() { KJ_SYSCALL(::shutdown(fd.get(), SHUT_WR)); }

// ---------------------------------------------------------------------------------------------
// Socket options and names

void FdStream::getsockopt(int level, int option, void* value, kj::uint* length) {
  socklen_t socklen = *length;
  KJ_SYSCALL(::getsockopt(fd.get(), level, option, value, &socklen));
  *length = socklen;
}

void FdStream::setsockopt(int level, int option, const void* value, kj::uint length) {
  KJ_SYSCALL(::setsockopt(fd.get(), level, option, value, length));
}

void FdStream::getsockname(struct sockaddr* addr, kj::uint* length) {
  socklen_t socklen = *length;
  KJ_SYSCALL(::getsockname(fd.get(), addr, &socklen));
  *length = socklen;
}

void FdStream::getpeername(struct sockaddr* addr, kj::uint* length) {
  socklen_t socklen = *length;
  KJ_SYSCALL(::getpeername(fd.get(), addr, &socklen));
  *length = socklen;
}

}  // namespace harrow
