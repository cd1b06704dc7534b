// Envs for tests (base/env.h): one that records the lines logged, on real
// time; one whose clock moves only when the test says so.
#ifndef COACH_TESTS_SUPPORT_TEST_ENV_H_
#define COACH_TESTS_SUPPORT_TEST_ENV_H_

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/env.h"

namespace coach::testing {

// Real time; every line logged is recorded ("LEVEL message") and echoed
// through the real Env, so that a failing test's output still shows it.
class CapturingEnv : public Env {
 public:
  absl::Time Now() override { return Env::Default().Now(); }
  absl::Duration MonotonicNow() override {
    return Env::Default().MonotonicNow();
  }

  void Log(LogLevel level, absl::string_view message) override {
    Env::Default().Log(level, message);
    absl::MutexLock lock(&log_mu_);
    lines_.push_back(absl::StrCat(LogLevelName(level), " ", message));
  }

  std::vector<std::string> lines() const {
    absl::MutexLock lock(&log_mu_);
    return lines_;
  }
  // Every line, each ended by '\n'.
  std::string text() const {
    std::string text;
    for (const std::string& line : lines()) absl::StrAppend(&text, line, "\n");
    return text;
  }
  // How many lines hold `needle`.
  int CountLines(absl::string_view needle) const {
    absl::MutexLock lock(&log_mu_);
    return CountLocked(needle);
  }
  // Waits until `times` lines hold `needle`: for a line the code under test
  // logs at a moment the test cannot otherwise see. False after `timeout`
  // (bounded: a line never logged fails the test rather than hangs it).
  bool AwaitLines(absl::string_view needle, int times,
                  absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock lock(&log_mu_);
    const auto logged = [this, needle, times]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                            log_mu_) { return CountLocked(needle) >= times; };
    return log_mu_.AwaitWithTimeout(absl::Condition(&logged), timeout);
  }

 private:
  int CountLocked(absl::string_view needle) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(log_mu_) {
    int count = 0;
    for (const std::string& line : lines_) {
      if (absl::StrContains(line, needle)) ++count;
    }
    return count;
  }

  mutable absl::Mutex log_mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(log_mu_);
};

// A CapturingEnv whose clock stands still until Advance. It starts at the
// real time of its construction, since callers' deadlines (gRPC's) are real
// times; its monotonic clock starts at zero.
class FakeClockEnv final : public CapturingEnv {
 public:
  absl::Time Now() override {
    absl::MutexLock lock(&time_mu_);
    return start_ + elapsed_;
  }
  absl::Duration MonotonicNow() override {
    absl::MutexLock lock(&time_mu_);
    return elapsed_;
  }

  // Moves both clocks forward by `d`, then returns once every watcher (an
  // AsyncHttpClient's loop) has run the timers due at the new time. Not from
  // a watcher's own thread (a callback of the loop): it would wait for
  // itself.
  void Advance(absl::Duration d) {
    {
      absl::MutexLock lock(&time_mu_);
      elapsed_ += d;
    }
    absl::MutexLock lock(&watchers_mu_);
    for (ClockWatcher* watcher : watchers_) watcher->ClockAdvanced();
  }

  void AddClockWatcher(ClockWatcher* watcher) override {
    absl::MutexLock lock(&watchers_mu_);
    watchers_.push_back(watcher);
  }
  void RemoveClockWatcher(ClockWatcher* watcher) override {
    absl::MutexLock lock(&watchers_mu_);
    std::erase(watchers_, watcher);
  }

 private:
  absl::Mutex time_mu_;
  const absl::Time start_ = absl::Now();
  absl::Duration elapsed_ ABSL_GUARDED_BY(time_mu_);
  // Held while watchers are called: RemoveClockWatcher waits for them.
  absl::Mutex watchers_mu_;
  std::vector<ClockWatcher*> watchers_ ABSL_GUARDED_BY(watchers_mu_);
};

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_TEST_ENV_H_
