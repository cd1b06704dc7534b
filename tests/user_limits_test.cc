// RateRule on its own: GCRA's arithmetic (burst, even refill, retry delay,
// a clock moved back). The limits as decided in the store's transaction, on
// both engines, are in store_test.cc; end to end in limits_test.cc and,
// across three servers, in server_process_test.cc.
#include "server/core/user_limits.h"

#include <gtest/gtest.h>

#include "tests/support/test_clock.h"

namespace coach::testing {
namespace {

// Takes one at `now` against `tat`, keeping the new TAT.
struct Limited {
  RateRule rule;
  absl::Time tat = absl::UnixEpoch();

  // Zero when taken, else the retry delay (> 0).
  absl::Duration TakeAt(absl::Time now) {
    const RateRule::Taken taken = rule.Take(tat, now);
    if (!taken.allowed) {
      EXPECT_EQ(taken.tat, tat) << "a refusal moved the state";
      EXPECT_GT(taken.retry_after, absl::ZeroDuration());
      return taken.retry_after;
    }
    tat = taken.tat;
    return absl::ZeroDuration();
  }
};

TEST(RateRuleTest, BurstThenOnePerIntervalNeverMoreThanTheBurst) {
  absl::Time now = MidNovember2026();
  Limited limit{.rule = RateRule::PerMinute(4)};  // one per 15 s
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(limit.TakeAt(now), absl::ZeroDuration());
  EXPECT_EQ(limit.TakeAt(now), absl::Seconds(15));
  // A refusal takes nothing: the wait only shrinks.
  now += absl::Seconds(5);
  EXPECT_EQ(limit.TakeAt(now), absl::Seconds(10));
  now += absl::Seconds(10);
  EXPECT_EQ(limit.TakeAt(now), absl::ZeroDuration());
  EXPECT_EQ(limit.TakeAt(now), absl::Seconds(15));
  // An hour idle gives the whole burst back, not more.
  now += absl::Hours(1);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(limit.TakeAt(now), absl::ZeroDuration());
  EXPECT_GT(limit.TakeAt(now), absl::ZeroDuration());
  // A clock moved back gives nothing back.
  now -= absl::Minutes(5);
  EXPECT_GT(limit.TakeAt(now), absl::ZeroDuration());
}

TEST(RateRuleTest, TwentyPerMinuteIsTwentyAtOnceThenOneEveryThreeSeconds) {
  absl::Time now = MidNovember2026();
  Limited limit{.rule = RateRule::PerMinute(20)};
  int taken = 0;
  // Over two minutes at one attempt a second: the burst, then one per 3 s.
  for (int second = 0; second < 120; ++second, now += absl::Seconds(1)) {
    for (int i = 0; i < 30; ++i) {
      if (limit.TakeAt(now) == absl::ZeroDuration()) ++taken;
    }
  }
  EXPECT_EQ(taken, 20 + 119 / 3);  // at 3 s, 6 s, ... 117 s
}

TEST(RateRuleTest, ANeverUsedLimitIsAFullBurst) {
  Limited limit{.rule = RateRule::PerMinute(1)};
  EXPECT_EQ(limit.TakeAt(MidNovember2026()), absl::ZeroDuration());
  EXPECT_EQ(limit.TakeAt(MidNovember2026()), absl::Minutes(1));
}

}  // namespace
}  // namespace coach::testing
