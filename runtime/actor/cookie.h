// The cookie: the file that gives a tree its secret (Erlang's ~/.erlang.cookie is the model).
//
// A root actor reads its tree's secret from a cookie file, so that two programs of one user meet
// without configuration (examples/multi_program: daemon and client), and children receive it from
// their parent in the spawn spec. The file is `runtimeDirectory()/cookie` unless
// --harrow-cookie=PATH or HARROW_COOKIE names another. A missing file is created (64 random hex
// digits, mode 0600, atomically: no reader ever sees it half written). A file that is not a
// regular file of this user (a symbolic link, FIFO, directory or device), or that anyone else may
// read or write (mode & 077), is refused with harrow.UnsafeFile naming it: a cookie others can
// read authenticates them too. It is never opened before it has been seen to be a regular file,
// and then O_NOFOLLOW|O_NONBLOCK and checked again: a FIFO cannot hang the root.

#pragma once

#include <harrow/engine/auth.h>

#include <kj/string.h>

namespace harrow {

// HARROW_COOKIE if set, else runtimeDirectory()/cookie.
kj::String cookiePathFromEnvironment();

// The tree secret from the cookie file at `path`, created first if it does not exist. Throws
// harrow.UnsafeFile (naming the file) if it is not a regular file owned by this user with mode
// 0600 or stricter,
// if it holds fewer than 16 bytes, or if it cannot be read or created.
TreeSecret readCookie(kj::StringPtr path);

// The contents of a file that holds a secret (the cookie, the metrics endpoint's bearer token),
// without trailing whitespace, checked as the cookie is: harrow.UnsafeFile unless it is a regular
// file (never a link, FIFO or device: not even opened) of this user that group and others may
// neither read nor write. `file` names it in errors ("the metrics token file"); at most 4096 bytes.
kj::Array<kj::byte> readSecretFile(kj::StringPtr file, kj::StringPtr path);

}  // namespace harrow
