// A clock that tests set by hand (the monthly refill without waiting).
#ifndef COACH_TESTS_SUPPORT_TEST_CLOCK_H_
#define COACH_TESTS_SUPPORT_TEST_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/clock.h"

namespace coach::testing {

class TestClock final : public Clock {
 public:
  explicit TestClock(absl::Time now) : now_(now) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Set(absl::Time now) {
    absl::MutexLock lock(&mu_);
    now_ = now;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_;
};

// 2026-11-15T10:00:00Z, mid-month.
inline absl::Time MidNovember2026() {
  return absl::FromCivil(absl::CivilSecond(2026, 11, 15, 10, 0, 0),
                         absl::UTCTimeZone());
}

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_TEST_CLOCK_H_
