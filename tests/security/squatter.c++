// An attacker for the squatting tests: another local user's process that listens first where a
// tree might connect (by default the old registry address, tcp:127.0.0.1:1616) and reports every
// connection it gets. Run as uid nobody by the test (setpriv); plain libc, so that it runs from a
// copy outside Bazel's output tree (which `nobody` cannot enter).
//
//   squatter PORT     prints "listening on PORT" (or "in use PORT", exit 3), then
//                     "connection N" as each is accepted and "connection N: B bytes" once it
//                     ends; runs until killed.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

void say(const char* text) {
  // Unbuffered: the test reads the lines while this runs.
  (void)!write(STDOUT_FILENO, text, strlen(text));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: squatter PORT\n");
    return 2;
  }
  int port = atoi(argv[1]);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 4;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char line[128];
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(fd, 16) != 0) {
    snprintf(line, sizeof(line), "in use %d\n", port);
    say(line);
    return 3;
  }
  snprintf(line, sizeof(line), "listening on %d\n", port);
  say(line);
  for (int n = 1;; ++n) {
    int connection = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) continue;
    snprintf(line, sizeof(line), "connection %d\n", n);
    say(line);
    // Whatever the other side sends until it gives up (a harrow hello, then nothing).
    size_t total = 0;
    char buffer[4096];
    for (;;) {
      ssize_t got = read(connection, buffer, sizeof(buffer));
      if (got <= 0) break;
      total += got;
    }
    close(connection);
    snprintf(line, sizeof(line), "connection %d: %zu bytes\n", n, total);
    say(line);
  }
}
