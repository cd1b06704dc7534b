// LogTimestamp: the time of every log line, formatted a second at a time,
// must read exactly as absl::FormatTime writes it.
#include "base/log.h"

#include <gtest/gtest.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace coach {
namespace {

std::string Expected(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

TEST(LogTest, TimestampReadsAsFormatTimeWritesIt) {
  const absl::Time base = absl::FromUnixSeconds(1795967669);  // 2026-11-29
  std::vector<absl::Time> times;
  // Within a second, across the next one, back to the first (the cached
  // second must not be reused for another), and far away.
  for (absl::Duration offset :
       {absl::ZeroDuration(), absl::Nanoseconds(1), absl::Microseconds(999),
        absl::Milliseconds(1), absl::Nanoseconds(999'999'999), absl::Seconds(1),
        absl::Milliseconds(1001), absl::Milliseconds(59'999),
        absl::Milliseconds(7), absl::Hours(24 * 365) + absl::Milliseconds(42),
        -absl::Hours(24 * 365 * 60) + absl::Milliseconds(500),  // before 1970
        -absl::Nanoseconds(1)}) {
    times.push_back(base + offset);
  }
  for (absl::Time time : times) {
    EXPECT_EQ(LogTimestamp(time), Expected(time)) << time;
  }
  // Every millisecond of a few seconds, in order, as a busy thread sees them.
  for (int ms = 0; ms < 3000; ms += 7) {
    const absl::Time time =
        base + absl::Milliseconds(ms) + absl::Microseconds(3);
    ASSERT_EQ(LogTimestamp(time), Expected(time)) << time;
  }
}

// The text request line's duration, with printf's "%.1f" rounding (ties of
// exact binary values to even: 0.25 is "0.2").
TEST(LogTest, RequestLineDurationIsPrintfsTenths) {
  for (double ms : {0.0, 0.04999, 0.05, 0.15, 0.25, 0.35, 0.75, 1.45, 2.5, 9.95,
                    99.95, 1234.56, 86'400'000.0, 1e300}) {
    RequestLogLine line;
    line.kind = "rpc";
    line.route = "/coach.v1.UserService/GetUserStats";
    line.code = "OK";
    line.duration_ms = ms;
    line.request_id = "r1";
    ::testing::internal::CaptureStderr();
    LogRequest(LogLevel::kInfo, line);
    const std::string written = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(written.find(absl::StrCat(
                  " code=OK duration_ms=", absl::StrFormat("%.1f", ms),
                  " request_id=r1\n")),
              std::string::npos)
        << written;
  }
}

TEST(LogTest, TimestampOfNowHasTheFormat) {
  const std::string now = LogTimestamp();
  ASSERT_EQ(now.size(), 24u) << now;  // 2026-11-29T19:14:29.664Z
  EXPECT_EQ(now[10], 'T');
  EXPECT_EQ(now[19], '.');
  EXPECT_EQ(now.back(), 'Z');
}

}  // namespace
}  // namespace coach
