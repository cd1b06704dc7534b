// Clock: the one source of "now" for the rules, so that tests can move time
// (the monthly credit refill) without waiting for it.
#ifndef COACH_SERVER_CORE_CLOCK_H_
#define COACH_SERVER_CORE_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace coach {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// The system clock.
class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_CLOCK_H_
