// harrow::main as a program's root: one root per process, whichever thread asks; its flags, read
// through <harrow/flags.h>'s table.

#include <harrow/harrow.h>

#include <gtest/gtest.h>

#include <stdio.h>
#include <unistd.h>

#include <string>
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

// What `fn` writes to stderr (a temporary file stands in for it meanwhile).
template <typename Fn>
std::string stderrOf(Fn&& fn) {
  fflush(stderr);
  FILE* captured = tmpfile();
  int saved = dup(STDERR_FILENO);
  dup2(fileno(captured), STDERR_FILENO);
  fn();
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::string text;
  rewind(captured);
  for (int c; (c = fgetc(captured)) != EOF;) text.push_back(char(c));
  fclose(captured);
  return text;
}

TEST(MainTest, ABadSettingStopsTheRootBeforeAnythingRunsAndNamesIt) {
  struct Case {
    const char* variable;
    const char* value;
  };
  for (Case bad : {Case{"HARROW_LOG", "bogus"}, Case{"HARROW_LOG_FORMAT", "xml"},
                   Case{"HARROW_MAX_MESSAGE_BYTES", "12"}}) {
    setenv(bad.variable, bad.value, 1);
    int status = -1;
    std::string said = stderrOf([&]() {
      status = runMain([](Actor&) -> Co<void> {
        ADD_FAILURE() << "the root ran";
        co_return;
      });
    });
    unsetenv(bad.variable);
    EXPECT_EQ(status, 1) << bad.variable;
    EXPECT_NE(said.find(bad.variable), std::string::npos) << said;
    EXPECT_NE(said.find(bad.value), std::string::npos) << said;
  }
}

TEST(MainTest, HarrowHelpPrintsEverySettingAndRunsNothing) {
  static Implementations impls;
  const char* argv[] = {"main_test", "--harrow-help", nullptr};
  bool ran = false;
  testing::internal::CaptureStdout();
  int status = harrow::main(2, const_cast<char**>(argv), impls, [&](Actor&) -> Co<void> {
    ran = true;
    co_return;
  });
  std::string help = testing::internal::GetCapturedStdout();
  EXPECT_EQ(status, 0);
  EXPECT_FALSE(ran);
  for (const Setting& setting : settings()) {
    if (setting.parse == Parse::CHILD_MODE) {  // not for users
      EXPECT_EQ(help.find(setting.flag.cStr()), std::string::npos) << setting.flag.cStr();
      continue;
    }
    EXPECT_NE(help.find(setting.help.cStr()), std::string::npos) << help;
    EXPECT_NE(help.find(setting.variable.cStr()), std::string::npos) << setting.variable.cStr();
    if (setting.flag.size() > 0) {
      EXPECT_NE(help.find(kj::str("  ", setting.flag).cStr()), std::string::npos)
          << setting.flag.cStr();
    }
  }
}

TEST(MainTest, AFlagBecomesItsVariableAndTheLastOneGivenWins) {
  for (const char* variable : {"HARROW_LOG", "HARROW_ENCRYPT", "HARROW_LOG_FORMAT"}) {
    unsetenv(variable);
  }
  const char* argv[] = {"program",          "--harrow-log=debug",  "--harrow-log=info",
                        "--harrow-encrypt", "--harrow-log-format", "--harrow-name=root",
                        "--harrow-name=",   "--own-flag=x",        nullptr};
  RootFlags flags = applyFlags(8, const_cast<char**>(argv));
  EXPECT_STREQ(getenv("HARROW_LOG"), "info");
  EXPECT_STREQ(getenv("HARROW_ENCRYPT"), "1");
  EXPECT_EQ(getenv("HARROW_LOG_FORMAT"), nullptr);  // a value flag without its value: not harrow's
  KJ_IF_MAYBE (name, flags.name) {
    EXPECT_STREQ(name->cStr(), "root");  // an empty name leaves the last one given
  } else {
    ADD_FAILURE() << "no root name";
  }
  EXPECT_FALSE(flags.help);
  for (const char* variable : {"HARROW_LOG", "HARROW_ENCRYPT"}) unsetenv(variable);
}

TEST(MainTest, AProgramOfItsOwnTakesOnlyTheFlagsItAccepts) {
  unsetenv("HARROW_LOG");
  unsetenv("HARROW_INSECURE_LINKS");
  const kj::StringPtr accepted[] = {"--harrow-log"_kj, "--harrow-insecure-links"_kj};
  EXPECT_TRUE(applyFlag("--harrow-log=info", accepted));
  EXPECT_TRUE(applyFlag("--harrow-insecure-links", accepted));
  EXPECT_FALSE(applyFlag("--harrow-log-format=json", accepted));   // harrow's, not accepted
  EXPECT_FALSE(applyFlag("--harrow-log", accepted));               // no value
  EXPECT_FALSE(applyFlag("--harrow-insecure-links=1", accepted));  // a switch takes none
  EXPECT_STREQ(getenv("HARROW_LOG"), "info");
  EXPECT_STREQ(getenv("HARROW_INSECURE_LINKS"), "1");
  EXPECT_EQ(getenv("HARROW_LOG_FORMAT"), nullptr);
  unsetenv("HARROW_LOG");
  unsetenv("HARROW_INSECURE_LINKS");
}

}  // namespace
}  // namespace harrow
