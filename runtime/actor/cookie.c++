#include <harrow/actor/cookie.h>

#include <harrow/actor/actor.h>

#include <kj/debug.h>
#include <kj/encoding.h>

#include <sodium.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

namespace harrow {

namespace {

constexpr size_t MAX_SECRET_BYTES = 4096;

// `file`: "the cookie file", "the metrics token file", ...
[[noreturn]] void fileError(kj::StringPtr file, kj::StringPtr path, kj::StringPtr what) {
  kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                        kj::str(file, " ", path, " ", what)));
}

[[noreturn]] void cookieError(kj::StringPtr path, kj::StringPtr what) {
  fileError("the cookie file", path, what);
}

kj::String modeText(mode_t mode) {
  char text[8];
  snprintf(text, sizeof(text), "%04o", unsigned(mode & 07777));
  return kj::str(text);
}

void writeAll(int fd, kj::ArrayPtr<const kj::byte> bytes, kj::StringPtr path) {
  while (bytes.size() > 0) {
    ssize_t n = write(fd, bytes.begin(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) KJ_FAIL_SYSCALL("write", errno, path);
    bytes = bytes.slice(n, bytes.size());
  }
}

// A new cookie at `path`, unless one appears there first. Written to a private temporary file
// (O_EXCL, 0600) and linked into place, so the cookie appears complete or not at all; if another
// process linked its cookie first, that one wins and ours goes.
void createCookie(kj::StringPtr path) {
  kj::byte random[32];
  randombytes_buf(random, sizeof(random));
  auto text = kj::str(kj::encodeHex(kj::arrayPtr(random, sizeof(random))), "\n");
  sodium_memzero(random, sizeof(random));
  KJ_DEFER(sodium_memzero(text.begin(), text.size()));

  kj::byte suffix[8];
  randombytes_buf(suffix, sizeof(suffix));
  auto temporary = kj::str(path, ".new-", kj::encodeHex(kj::arrayPtr(suffix, sizeof(suffix))));
  int fd = open(temporary.cStr(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    cookieError(path, kj::str("does not exist and cannot be created: ", strerror(errno)));
  }
  KJ_DEFER(unlink(temporary.cStr()));
  {
    KJ_DEFER(close(fd));
    writeAll(fd, text.asBytes(), temporary);
    KJ_SYSCALL(fsync(fd), temporary);
  }
  if (link(temporary.cStr(), path.cStr()) != 0 && errno != EEXIST) {
    cookieError(path, kj::str("does not exist and cannot be created: ", strerror(errno)));
  }
}

constexpr kj::StringPtr SYMBOLIC_LINK =
    "is a symbolic link: refused (give the path of the file itself)"_kj;

[[noreturn]] void unsafeFile(kj::StringPtr file, kj::StringPtr path, kj::StringPtr what) {
  kj::throwFatalException(makeError(ErrorKind::UNSAFE_FILE, kj::str(file, " ", path, " ", what)));
}

// Refuses anything but a regular file of this user that only this user may read or write.
void checkSecretFile(kj::StringPtr file, kj::StringPtr path, const struct stat& st) {
  if (S_ISLNK(st.st_mode)) unsafeFile(file, path, SYMBOLIC_LINK);
  if (!S_ISREG(st.st_mode)) {
    kj::StringPtr kind = S_ISFIFO(st.st_mode)  ? "a FIFO"_kj
                         : S_ISDIR(st.st_mode) ? "a directory"_kj
                         : S_ISSOCK(st.st_mode) ? "a socket"_kj
                                                : "a device"_kj;
    unsafeFile(file, path, kj::str("is ", kind, ", not a regular file: refused"));
  }
  if (st.st_uid != geteuid()) {
    unsafeFile(file, path, kj::str("belongs to uid ", st.st_uid, ", not to this user (uid ",
                                   geteuid(), "): refused"));
  }
  if ((st.st_mode & 077) != 0) {
    unsafeFile(file, path, kj::str("has mode ", modeText(st.st_mode),
                                   ": others may read or change it, so it proves nothing; "
                                   "refused (chmod 600 ", path, ")"));
  }
}

}  // namespace

kj::String cookiePathFromEnvironment() {
  const char* path = getenv("HARROW_COOKIE");
  if (path != nullptr && *path != '\0') return kj::str(path);
  return kj::str(runtimeDirectory(), "/cookie");
}

kj::Array<kj::byte> readSecretFile(kj::StringPtr file, kj::StringPtr path) {
  // Looked at before it is opened (a device or FIFO is never opened at all), then opened without
  // following a link and without blocking (a FIFO swapped in meanwhile cannot hang the root),
  // then checked again through the descriptor: what is read is what was checked.
  struct stat seen;
  if (lstat(path.cStr(), &seen) != 0) {
    fileError(file, path, kj::str("cannot be read: ", strerror(errno)));
  }
  checkSecretFile(file, path, seen);
  int fd = open(path.cStr(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ELOOP) unsafeFile(file, path, SYMBOLIC_LINK);
  if (fd < 0) fileError(file, path, kj::str("cannot be read: ", strerror(errno)));
  KJ_DEFER(close(fd));

  struct stat st;
  KJ_SYSCALL(fstat(fd, &st), path);
  checkSecretFile(file, path, st);
  if (st.st_dev != seen.st_dev || st.st_ino != seen.st_ino) {
    unsafeFile(file, path, "was replaced while it was being opened");
  }
  if (st.st_size > off_t(MAX_SECRET_BYTES)) {
    fileError(file, path, kj::str("is larger than ", MAX_SECRET_BYTES, " bytes"));
  }

  auto buffer = kj::heapArray<kj::byte>(MAX_SECRET_BYTES + 1);
  KJ_ON_SCOPE_FAILURE(sodium_memzero(buffer.begin(), buffer.size()));
  size_t size = 0;
  for (;;) {
    ssize_t n = read(fd, buffer.begin() + size, buffer.size() - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fileError(file, path, kj::str("cannot be read: ", strerror(errno)));
    if (n == 0) break;
    size += n;
    if (size == buffer.size()) {
      fileError(file, path, kj::str("is larger than ", MAX_SECRET_BYTES, " bytes"));
    }
  }
  // A trailing newline (or any whitespace) is an editor's, not part of the secret.
  while (size > 0 && (buffer[size - 1] == '\n' || buffer[size - 1] == '\r' ||
                      buffer[size - 1] == ' ' || buffer[size - 1] == '\t')) {
    --size;
  }
  auto contents = kj::heapArray<kj::byte>(buffer.slice(0, size));
  sodium_memzero(buffer.begin(), buffer.size());
  return contents;
}

TreeSecret readCookie(kj::StringPtr path) {
  struct stat seen;
  if (lstat(path.cStr(), &seen) != 0 && errno == ENOENT) createCookie(path);
  auto contents = readSecretFile("the cookie file", path);
  KJ_DEFER(sodium_memzero(contents.begin(), contents.size()));
  if (contents.size() < 16) {
    cookieError(path, kj::str("holds ", contents.size(), " bytes; a cookie needs at least 16"));
  }
  return TreeSecret::fromCookie(contents);
}

}  // namespace harrow
