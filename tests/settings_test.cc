// base/settings: a table bound to a config struct, read from a real
// command line and the real environment (each test sets and unsets its
// variables; ctest runs each test in its own process).
#include "base/settings.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace coach {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct TestConfig {
  int count = 3;
  absl::Duration timeout = absl::Seconds(10);
  bool verbose = false;
  std::vector<std::string> names = {"a", "b"};
  int pin = 1234;  // A secret that can fail to parse.
};

std::vector<Setting> Table(TestConfig& c) {
  return {
      Essential(
          {"count", "TEST_SETTINGS_COUNT", &c.count, kPositive, "How many"}),
      Renamed({"timeout", "TEST_SETTINGS_TIMEOUT", &c.timeout, kNonNegative,
               "Wait"},
              "wait"),
      {"verbose", "TEST_SETTINGS_VERBOSE", &c.verbose, kAnyValue, "Talk"},
      Essential(
          {"names", "TEST_SETTINGS_NAMES", &c.names, kNonEmpty, "Who | what"}),
      Essential(
          Secret({"pin", "TEST_SETTINGS_PIN", &c.pin, kAnyValue, "The pin"})),
  };
}

absl::Status CountBelowTwenty(const TestConfig& c) {
  return c.count < 20 ? absl::OkStatus()
                      : absl::InvalidArgumentError("--count too large");
}

// A command line of `args` after the program name.
class Argv {
 public:
  explicit Argv(std::vector<std::string> args) : storage_(std::move(args)) {
    storage_.insert(storage_.begin(), "test-binary");
    for (std::string& s : storage_) pointers_.push_back(s.data());
    pointers_.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(storage_.size()); }
  char* const* argv() const { return pointers_.data(); }

 private:
  std::vector<std::string> storage_;
  std::vector<char*> pointers_;
};

absl::StatusOr<Startup<TestConfig>> Load(std::vector<std::string> args) {
  const Argv argv(std::move(args));
  return LoadSettings<TestConfig>("test-binary", "A test.", argv.argc(),
                                  argv.argv(), Table, CountBelowTwenty);
}

class SettingsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const char* name : {"TEST_SETTINGS_COUNT", "TEST_SETTINGS_TIMEOUT",
                             "TEST_SETTINGS_VERBOSE", "TEST_SETTINGS_NAMES",
                             "TEST_SETTINGS_PIN"}) {
      unsetenv(name);
    }
  }
};

TEST_F(SettingsTest, DefaultsComeFromTheStruct) {
  auto loaded = Load({});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->print_and_exit.empty());
  EXPECT_EQ(loaded->config.count, 3);
  EXPECT_EQ(loaded->config.timeout, absl::Seconds(10));
  EXPECT_EQ(loaded->config.names, (std::vector<std::string>{"a", "b"}));
}

TEST_F(SettingsTest, FlagBeatsEnvironmentBeatsDefault) {
  setenv("TEST_SETTINGS_COUNT", "7", 1);
  setenv("TEST_SETTINGS_TIMEOUT", "5m", 1);
  auto loaded = Load({"--count=9"});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.count, 9);
  EXPECT_EQ(loaded->config.timeout, absl::Minutes(5));
}

TEST_F(SettingsTest, BothFlagSpellingsAndABareBoolean) {
  auto loaded =
      Load({"--count", "4", "--timeout=500ms", "--verbose", "-names=x,y"});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.count, 4);
  EXPECT_EQ(loaded->config.timeout, absl::Milliseconds(500));
  EXPECT_TRUE(loaded->config.verbose);
  EXPECT_EQ(loaded->config.names, (std::vector<std::string>{"x", "y"}));
}

TEST_F(SettingsTest, AnEmptyVariableIsAValue) {
  setenv("TEST_SETTINGS_NAMES", "", 1);
  auto loaded = Load({});
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(),
              HasSubstr("--names (TEST_SETTINGS_NAMES) must not be empty"));
}

TEST_F(SettingsTest, ErrorsNameTheFlagOrTheVariable) {
  EXPECT_THAT(Load({"--cuont=1"}).status().message(),
              HasSubstr("unknown flag --cuont"));
  EXPECT_THAT(Load({"--count"}).status().message(),
              HasSubstr("--count: missing value"));
  EXPECT_THAT(Load({"--count=0"}).status().message(),
              HasSubstr("--count (TEST_SETTINGS_COUNT) must be positive"));
  EXPECT_THAT(Load({"--count=x"}).status().message(),
              HasSubstr("--count: expected an integer, got \"x\""));
  EXPECT_THAT(Load({"--count=25"}).status().message(),
              HasSubstr("--count too large"));
  setenv("TEST_SETTINGS_TIMEOUT", "soon", 1);
  EXPECT_THAT(Load({}).status().message(),
              HasSubstr("environment variable TEST_SETTINGS_TIMEOUT: expected "
                        "a duration"));
}

TEST_F(SettingsTest, ASecretsValueIsNeverEchoed) {
  setenv("TEST_SETTINGS_PIN", "98x76", 1);
  const absl::Status status = Load({}).status();
  EXPECT_THAT(status.message(),
              HasSubstr("environment variable TEST_SETTINGS_PIN: expected an "
                        "integer"));
  EXPECT_THAT(status.message(), Not(HasSubstr("98x76")));
}

TEST_F(SettingsTest, HelpListsTheEssentialSettingsWithTheirDefaults) {
  setenv("TEST_SETTINGS_COUNT", "not read", 1);
  auto loaded = Load({"--help"});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const std::string& help = loaded->print_and_exit;
  EXPECT_THAT(help, HasSubstr("| Variable | Flag | Default | Meaning |\n"));
  EXPECT_THAT(help, HasSubstr("| `TEST_SETTINGS_COUNT` | `--count` | `3` | "
                              "How many |\n"));
  EXPECT_THAT(help, HasSubstr("| `TEST_SETTINGS_NAMES` | `--names` | `a,b` | "
                              "Who \\| what |\n"));
  EXPECT_THAT(help, HasSubstr("| `TEST_SETTINGS_PIN` | `--pin` | (secret) |"));
  EXPECT_THAT(help, Not(HasSubstr("1234")));
  // The others only in --helpfull.
  EXPECT_THAT(help, Not(HasSubstr("TEST_SETTINGS_TIMEOUT")));
  EXPECT_THAT(help, Not(HasSubstr("TEST_SETTINGS_VERBOSE")));
  EXPECT_THAT(help, HasSubstr("--helpfull"));
}

TEST_F(SettingsTest, HelpfullListsEverySettingAndTheFormerFlagNames) {
  setenv("TEST_SETTINGS_COUNT", "not read", 1);
  auto loaded = Load({"--helpfull"});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const std::string& help = loaded->print_and_exit;
  EXPECT_THAT(help, HasSubstr("| `TEST_SETTINGS_COUNT` | `--count` | `3` | "
                              "How many |\n"));
  EXPECT_THAT(help, HasSubstr("| `TEST_SETTINGS_TIMEOUT` | `--timeout` | "
                              "`10s` | Wait |\n"));
  EXPECT_THAT(help, HasSubstr("| `TEST_SETTINGS_VERBOSE` | `--verbose` |"));
  EXPECT_THAT(help, HasSubstr("| `TEST_SETTINGS_PIN` | `--pin` | (secret) |"));
  EXPECT_THAT(help, Not(HasSubstr("1234")));
  EXPECT_THAT(help, HasSubstr("--wait (--timeout)"));
}

TEST_F(SettingsTest, AFormerFlagNameIsStillAccepted) {
  auto loaded = Load({"--wait=5s"});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.timeout, absl::Seconds(5));
  loaded = Load({"--timeout=7s"});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.timeout, absl::Seconds(7));
}

TEST_F(SettingsTest, VersionPrintsTheVersionAndBuildType) {
  auto loaded = Load({"--version"});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->print_and_exit,
            "test-binary " COACH_VERSION " (" COACH_BUILD_TYPE ")\n");
}

}  // namespace
}  // namespace coach
