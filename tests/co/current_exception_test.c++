// currentException(): what a catch block reads of the exception it handles, and that reading a
// kj::Exception does not raise it again (every coroutine a cancellation crosses reads it: a
// rethrow there was a second unwinding per frame, bench/README.md "Graceful teardown").
//
// Linked with -Wl,--wrap=__cxa_rethrow (BUILD.bazel): every `throw;` of this binary, the
// runtime's included, goes through the counter below.

#include <harrow/co/co.h>

#include <gtest/gtest.h>
#include <kj/debug.h>

#include <stdexcept>

namespace {
int rethrows = 0;
}

extern "C" [[noreturn]] void __real___cxa_rethrow();
extern "C" [[noreturn]] void __wrap___cxa_rethrow() {
  ++rethrows;
  __real___cxa_rethrow();
}

namespace harrow {
namespace {

TEST(CurrentExceptionTest, AKjExceptionIsReadWhereItIsWithoutRaisingItAgain) {
  kj::Maybe<kj::Exception> read;
  try {
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "the peer left"));
  } catch (...) {
    rethrows = 0;
    read = currentException();
    EXPECT_EQ(rethrows, 0);
  }
  auto& e = KJ_ASSERT_NONNULL(read);
  EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED);
  EXPECT_EQ(e.getDescription(), "the peer left");
}

TEST(CurrentExceptionTest, TheHandledKjExceptionCanStillBeRaisedAgainAfterwards) {
  kj::Maybe<kj::Exception> outer;
  try {
    try {
      kj::throwFatalException(KJ_EXCEPTION(FAILED, "first"));
    } catch (...) {
      auto copy = currentException();
      EXPECT_EQ(copy.getDescription(), "first");
      throw;
    }
  } catch (const kj::Exception& e) {
    outer = kj::cp(e);
  }
  EXPECT_EQ(KJ_ASSERT_NONNULL(outer).getDescription(), "first");
}

TEST(CurrentExceptionTest, AStandardExceptionKeepsItsTypeNameAndWhat) {
  try {
    throw std::out_of_range("index 7");
  } catch (...) {
    auto e = currentException();
    EXPECT_NE(e.getDescription().findFirst('7'), nullptr);
    EXPECT_TRUE(e.getDescription().startsWith("std::out_of_range"));
  }
}

TEST(CurrentExceptionTest, AnythingElseIsNamedByItsType) {
  try {
    throw 42;
  } catch (...) {
    EXPECT_EQ(currentException().getDescription(), "unknown non-KJ exception of type i");
  }
}

}  // namespace
}  // namespace harrow
