#ifndef COACH_TESTS_SUPPORT_EVENTUALLY_H_
#define COACH_TESTS_SUPPORT_EVENTUALLY_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace coach::testing {

// Polls `condition` every 5 ms until it holds (true) or `within` has passed
// (false). For state that nothing signals (a client's connection table, a
// peer's counter); where there is a signal, wait on it instead. Thread-safe
// if `condition` is.
template <typename Condition>
bool Eventually(Condition condition,
                absl::Duration within = absl::Seconds(30)) {
  const absl::Time give_up = absl::Now() + within;
  while (!condition()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_EVENTUALLY_H_
