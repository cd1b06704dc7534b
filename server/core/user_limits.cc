#include "server/core/user_limits.h"

#include <algorithm>

namespace coach {

RateRule RateRule::PerMinute(int per_minute) {
  const int burst = std::max(1, per_minute);
  const absl::Duration interval = absl::Minutes(1) / burst;
  return RateRule(interval, interval * (burst - 1));
}

RateRule::Taken RateRule::Take(absl::Time tat, absl::Time now) const {
  const absl::Time due = std::max(tat, now);
  const absl::Duration ahead = due - now;
  if (ahead > tolerance_) {
    return Taken{
        .allowed = false, .tat = tat, .retry_after = ahead - tolerance_};
  }
  return Taken{.allowed = true,
               .tat = due + interval_,
               .retry_after = absl::ZeroDuration()};
}

}  // namespace coach
