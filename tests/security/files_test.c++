// The files a root trusts (docs/PROTOCOL.md, "Threat model"): its runtime directory and its cookie.
//  - the runtime directory is created 0700 and checked every time: one another user created first
//    (here: `nobody`, through setpriv), a symbolic link, or one others may enter is refused with
//    harrow.UnsafeFile naming the path, the owner and what to do;
//  - the cookie is refused at once when it is a FIFO (it would hang a reader), a symbolic link,
//    a directory or a device; mode and owner as before (auth_test.c++).
// The attacker steps run as `nobody` (setpriv), so these parts need root and skip otherwise.

#include <harrow/actor/actor.h>
#include <harrow/actor/cookie.h>
#include <harrow/co/errors.h>

#include "tests/program.h"

#include <gtest/gtest.h>
#include <kj/debug.h>

#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace harrow {
namespace {

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// Runs `command` as uid nobody, gid nogroup, no supplementary groups; its exit status.
int runAsNobody(std::vector<std::string> command) {
  std::vector<std::string> args = {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup",
                                   "--clear-groups"};
  args.insert(args.end(), command.begin(), command.end());
  pid_t pid = testing::spawnProgram(args, -1, -1, -1);
  int status;
  KJ_SYSCALL(waitpid(pid, &status, 0));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool canRunAsNobody() {
  return geteuid() == 0 && getpwnam("nobody") != nullptr && access("/usr/bin/setpriv", X_OK) == 0;
}

// A scratch directory that stands for $XDG_RUNTIME_DIR (so that the real /tmp/harrow-UID and
// every other test's are left alone), world-writable and sticky like /tmp so that `nobody` can
// squat in it.
class RuntimeDirectoryTest : public ::testing::Test {
protected:
  RuntimeDirectoryTest() {
    char buffer[] = "/tmp/harrow-files-test-XXXXXX";
    KJ_ASSERT(mkdtemp(buffer) != nullptr);
    base = buffer;
    KJ_SYSCALL(chmod(base.c_str(), 01777));
    const char* old = getenv("XDG_RUNTIME_DIR");
    if (old != nullptr) saved = old;
    setenv("XDG_RUNTIME_DIR", base.c_str(), 1);
  }
  ~RuntimeDirectoryTest() noexcept override {
    if (saved.empty()) {
      unsetenv("XDG_RUNTIME_DIR");
    } else {
      setenv("XDG_RUNTIME_DIR", saved.c_str(), 1);
    }
    std::string command = "rm -rf '" + base + "'";
    (void)!system(command.c_str());
  }

  std::string base;
  std::string saved;
  std::string dir() const { return base + "/harrow"; }

  // runtimeDirectory()'s refusal (harrow.UnsafeFile), or a failure if it accepted.
  std::string refusal() {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { runtimeDirectory(); })) {
      EXPECT_TRUE(is(*e, ErrorKind::UNSAFE_FILE)) << e->getDescription().cStr();
      return e->getDescription().cStr();
    }
    ADD_FAILURE() << "the runtime directory was accepted";
    return "";
  }
};

TEST_F(RuntimeDirectoryTest, IsCreatedPrivateAndUsedAgain) {
  EXPECT_EQ(std::string(runtimeDirectory().cStr()), dir());
  struct stat st;
  ASSERT_EQ(lstat(dir().c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_EQ(std::string(runtimeDirectory().cStr()), dir());
}

TEST_F(RuntimeDirectoryTest, OneAnotherUserCreatedFirstIsRefusedNamingItAndItsOwner) {
  if (!canRunAsNobody()) GTEST_SKIP() << "needs root, user nobody and setpriv";
  ASSERT_EQ(runAsNobody({"/bin/mkdir", "-m", "0777", dir()}), 0);
  auto why = refusal();
  EXPECT_TRUE(has(why, dir())) << why;
  EXPECT_TRUE(has(why, "belongs to uid " + std::to_string(getpwnam("nobody")->pw_uid) +
                          " (nobody)")) << why;
  EXPECT_TRUE(has(why, "XDG_RUNTIME_DIR")) << why;  // what to do instead
  // Nothing of ours went into it.
  EXPECT_NE(access((dir() + "/cookie").c_str(), F_OK), 0);
  EXPECT_TRUE(has(refusal(), "another user created it first"));
}

TEST_F(RuntimeDirectoryTest, ASymbolicLinkIsRefusedEvenToADirectoryOfOurs) {
  std::string ours = base + "/ours";
  ASSERT_EQ(mkdir(ours.c_str(), 0700), 0);
  ASSERT_EQ(symlink(ours.c_str(), dir().c_str()), 0);
  auto why = refusal();
  EXPECT_TRUE(has(why, dir() + " is a symbolic link")) << why;
  if (!canRunAsNobody()) GTEST_SKIP() << "needs root, user nobody and setpriv";
  // The same link made by `nobody`, to a directory of ours: refused too.
  ASSERT_EQ(unlink(dir().c_str()), 0);
  ASSERT_EQ(runAsNobody({"/bin/ln", "-s", ours, dir()}), 0);
  EXPECT_TRUE(has(refusal(), "is a symbolic link"));
}

TEST_F(RuntimeDirectoryTest, ADirectoryOthersMayEnterIsRefusedSayingHowToFixIt) {
  ASSERT_EQ(mkdir(dir().c_str(), 0700), 0);
  ASSERT_EQ(chmod(dir().c_str(), 0755), 0);
  auto why = refusal();
  EXPECT_TRUE(has(why, "has mode 0755")) << why;
  EXPECT_TRUE(has(why, "chmod 700 " + dir())) << why;
  ASSERT_EQ(chmod(dir().c_str(), 0700), 0);
  EXPECT_EQ(std::string(runtimeDirectory().cStr()), dir());
}

TEST_F(RuntimeDirectoryTest, AFileInItsPlaceIsRefused) {
  int fd = open(dir().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_TRUE(has(refusal(), "is not a directory"));
}

// ---------------------------------------------------------------------------------------------
// The cookie: only a regular file is ever read.

class CookieFileTest : public RuntimeDirectoryTest {
protected:
  std::string cookie = base + "/cookie";

  std::string refusal(const std::string& path) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { readCookie(path.c_str()); })) {
      EXPECT_TRUE(is(*e, ErrorKind::UNSAFE_FILE)) << e->getDescription().cStr();
      return e->getDescription().cStr();
    }
    ADD_FAILURE() << "the cookie was accepted";
    return "";
  }
};

TEST_F(CookieFileTest, AFifoAtAnExplicitPathFailsAtOnce) {
  ASSERT_EQ(mkfifo(cookie.c_str(), 0600), 0);
  // A reader that opened the FIFO would wait for a writer forever: the guard ends the binary.
  alarm(30);
  auto why = refusal(cookie);
  alarm(0);
  EXPECT_TRUE(has(why, cookie + " is a FIFO, not a regular file")) << why;
}

TEST_F(CookieFileTest, ASymbolicLinkIsRefusedEvenToAGoodCookie) {
  std::string real = base + "/real-cookie";
  int fd = open(real.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "0123456789abcdef0123456789abcdef\n", 33), 33);
  close(fd);
  readCookie(real.c_str());  // the file itself is fine
  ASSERT_EQ(symlink(real.c_str(), cookie.c_str()), 0);
  auto why = refusal(cookie);
  EXPECT_TRUE(has(why, cookie + " is a symbolic link")) << why;
}

TEST_F(CookieFileTest, ADirectoryOrADeviceIsRefusedUnopened) {
  EXPECT_TRUE(has(refusal(base), "is a directory, not a regular file"));
  EXPECT_TRUE(has(refusal("/dev/zero"), "is a device, not a regular file"));
}

}  // namespace
}  // namespace harrow
