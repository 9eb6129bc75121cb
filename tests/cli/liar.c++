// An actor that lies about its pid, for `harrow cancel`'s tests: getpid() answers
// HARROW_TEST_LIE_PID (when set) everywhere in this process, so the actor registers under that
// pid and reports it in Introspect.info, just as a peer that wanted another process killed would.
// Prints "serving: liar" once it serves; runs until cancelled.

#include <harrow/main.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

extern "C" pid_t getpid() noexcept {
  const char* lie = getenv("HARROW_TEST_LIE_PID");
  if (lie != nullptr && *lie != '\0') return pid_t(atoi(lie));
  return pid_t(syscall(SYS_getpid));
}

int main(int argc, char** argv) {
  harrow::Implementations implementations;
  return harrow::main(argc, argv, implementations, [](harrow::Actor& root) -> harrow::Co<void> {
    printf("serving: liar\n");
    fflush(stdout);
    co_await root.whenCancelled();
  });
}
