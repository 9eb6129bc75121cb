// Running blocking client code (raw sockets, system calls only) on a thread of its own while the
// test's actor serves on its event loop, for the flood tests.

#pragma once

#include <harrow/co/co.h>

#include <kj/async-unix.h>
#include <kj/debug.h>
#include <kj/function.h>

#include <fcntl.h>
#include <unistd.h>

#include <thread>

namespace harrow::testing {

// Runs `fn` on a new thread; resolves once it has returned (a pipe tells the loop, which serves
// on meanwhile) and the thread is joined.
inline Co<void> onThread(kj::UnixEventPort& eventPort, kj::Function<void()> fn) {
  int done[2];
  KJ_SYSCALL(pipe2(done, O_CLOEXEC | O_NONBLOCK));
  std::thread thread([&]() {
    fn();
    char byte = 1;
    (void)!write(done[1], &byte, 1);
  });
  {
    kj::UnixEventPort::FdObserver observer(eventPort, done[0],
                                           kj::UnixEventPort::FdObserver::OBSERVE_READ);
    char byte;
    while (read(done[0], &byte, 1) != 1) co_await observer.whenBecomesReadable();
  }
  thread.join();
  close(done[0]);
  close(done[1]);
}

}  // namespace harrow::testing
