// harrow::main as a program's root: one root per process, whichever thread asks.

#include <harrow/harrow.h>

#include <gtest/gtest.h>

#include <thread>

namespace harrow {
namespace {

int runMain(kj::Function<kj::Promise<void>(Actor&)> body) {
  static Implementations impls;
  const char* argv[] = {"main_test", "--harrow-registry=none", nullptr};
  return harrow::main(2, const_cast<char**>(argv), impls, kj::mv(body));
}

TEST(MainTest, ASecondRootOnAnotherThreadIsRefusedAndTheFirstCarriesOn) {
  int second = -1;
  bool firstRan = false;
  int first = runMain([&](Actor& root) -> Co<void> {
    std::thread other([&]() {
      second = runMain([](Actor&) -> Co<void> {
        ADD_FAILURE() << "the second root ran";
        co_return;
      });
    });
    other.join();  // refused at once: nothing to wait for
    co_await kj::evalLater([]() {});  // the first root's loop still turns
    (void)root;
    firstRan = true;
  });
  EXPECT_EQ(second, 1);
  EXPECT_EQ(first, 0);
  EXPECT_TRUE(firstRan);
  // Once the first root is done, a new one may run.
  EXPECT_EQ(runMain([](Actor&) -> Co<void> { co_return; }), 0);
}

}  // namespace
}  // namespace harrow
