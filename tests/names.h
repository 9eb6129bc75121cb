// Names a test binds or registers — abstract Unix socket names, socket files, registry
// addresses, actor names in a registry others can reach — that no other test process and no
// other run of the same test uses.
//
// Never built from the pid: Bazel's linux-sandbox gives every test a PID namespace of its own,
// so copies running side by side (--runs_per_test=N with several jobs) all have the same small
// pids, while they may well share a network namespace (where abstract names live) and /tmp.
// Hence 64 random bits from getrandom() in every name. TCP listeners bind port 0 and pass the
// port they got on; nothing here hands out port numbers.
//
// A test that must share something machine-wide (a fixed port, a well-known name) says so and
// holds an flock() on a file named after it while it runs. One does: programs_test's squatter on
// tcp:127.0.0.1:1616 (the old default registry port), under /tmp/harrow-test-port-1616.lock. The
// default registry (unix:<runtime dir>/registry.sock) is off for every test (.bazelrc:
// HARROW_REGISTRY=none).

#pragma once

#include <kj/debug.h>
#include <kj/encoding.h>
#include <kj/string.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/random.h>

namespace harrow::testing {

// 16 hex digits from getrandom(): different on every call, in every process.
inline kj::String randomToken() {
  kj::byte bytes[8];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0 && errno == EINTR) continue;
    KJ_ASSERT(n > 0, "getrandom() failed", errno);
    got += n;
  }
  return kj::encodeHex(kj::arrayPtr(bytes, sizeof(bytes)));
}

// "<prefix>-<random token>": e.g. an actor name registered in a registry another test can reach.
inline kj::String uniqueName(kj::StringPtr prefix) { return kj::str(prefix, "-", randomToken()); }

// "unix:@harrow-test-<prefix>-<token>": an abstract Unix socket address.
inline kj::String uniqueAbstractAddress(kj::StringPtr prefix) {
  return kj::str("unix:@harrow-test-", uniqueName(prefix));
}

// A path for a Unix socket file, "<dir>/<prefix>-<token>.sock": in $TEST_TMPDIR (private to
// this run) when the path fits into sun_path (108 bytes), else in /tmp (Bazel's TEST_TMPDIR is
// often too long).
inline kj::String uniqueSocketPath(kj::StringPtr prefix) {
  const char* tmp = getenv("TEST_TMPDIR");
  auto path = kj::str(tmp != nullptr && *tmp == '/' ? tmp : "/tmp", "/", uniqueName(prefix),
                      ".sock");
  if (path.size() > 100) path = kj::str("/tmp/harrow-test-", uniqueName(prefix), ".sock");
  return path;
}

// "unix:" + uniqueSocketPath(prefix).
inline kj::String uniqueSocketFileAddress(kj::StringPtr prefix) {
  return kj::str("unix:", uniqueSocketPath(prefix));
}

}  // namespace harrow::testing
