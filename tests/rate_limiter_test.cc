// RateLimiter and ConcurrencyLimiter on their own, with a TestClock: the
// bucket's refill, and the bounds on their memory.
#include "server/core/rate_limiter.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tests/support/test_clock.h"

namespace coach::testing {
namespace {

TEST(RateLimiterTest, BurstThenOneTokenPerIntervalNeverMoreThanTheBucket) {
  TestClock clock(MidNovember2026());
  RateLimiter limiter(/*per_minute=*/4, clock);  // one token per 15 s
  for (int i = 0; i < 4; ++i) EXPECT_EQ(limiter.TryTake("u"), std::nullopt);
  EXPECT_EQ(limiter.TryTake("u"), absl::Seconds(15));
  // A refusal takes nothing: the wait only shrinks.
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(limiter.TryTake("u"), absl::Seconds(10));
  clock.Advance(absl::Seconds(10));
  EXPECT_EQ(limiter.TryTake("u"), std::nullopt);
  EXPECT_EQ(limiter.TryTake("u"), absl::Seconds(15));
  // An hour idle refills the bucket, not past its size.
  clock.Advance(absl::Hours(1));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(limiter.TryTake("u"), std::nullopt);
  EXPECT_NE(limiter.TryTake("u"), std::nullopt);
  // GiveBack returns one token.
  limiter.GiveBack("u");
  EXPECT_EQ(limiter.TryTake("u"), std::nullopt);
  // A clock moved back refills nothing.
  clock.Advance(-absl::Minutes(5));
  EXPECT_NE(limiter.TryTake("u"), std::nullopt);
}

TEST(RateLimiterTest, AFloodOfDistinctUsersDoesNotGrowItWithoutBound) {
  TestClock clock(MidNovember2026());
  RateLimiter limiter(/*per_minute=*/20, clock);
  constexpr int kPerMinute = 5000;
  for (int minute = 0; minute < 10; ++minute) {
    for (int i = 0; i < kPerMinute; ++i) {
      limiter.TryTake(absl::StrCat("farm-", minute, "-", i));
    }
    clock.Advance(absl::Seconds(61));
  }
  // Only the users of about the last minute or two are kept (50,000 ids
  // were seen): a full bucket is forgotten.
  EXPECT_LE(limiter.tracked_users(), 3u * kPerMinute);
}

TEST(ConcurrencyLimiterTest, SlotsAreMoveOnlyAndGivenBackWhenDestroyed) {
  ConcurrencyLimiter limiter(/*max_per_user=*/2);
  std::optional<ConcurrencySlot> a = limiter.TryAcquire("u");
  std::optional<ConcurrencySlot> b = limiter.TryAcquire("u");
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_FALSE(limiter.TryAcquire("u").has_value());
  EXPECT_TRUE(limiter.TryAcquire("other").has_value());  // released at once

  ConcurrencySlot moved = std::move(*a);
  a.reset();  // the moved-from slot gives nothing back
  EXPECT_FALSE(limiter.TryAcquire("u").has_value());
  moved.Release();
  EXPECT_FALSE(moved.held());
  std::optional<ConcurrencySlot> c = limiter.TryAcquire("u");
  EXPECT_TRUE(c.has_value());
  b.reset();
  c.reset();
  // No slot held: no entry left.
  EXPECT_EQ(limiter.tracked_users(), 0u);
}

}  // namespace
}  // namespace coach::testing
