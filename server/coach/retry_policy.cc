#include "server/coach/retry_policy.h"

#include <algorithm>
#include <string>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"

namespace coach {
namespace {

// The SDKs shave up to a quarter off each backoff so that clients that
// failed together do not retry together.
constexpr double kMaxJitterFraction = 0.25;

}  // namespace

bool IsRetryable(int http_status, absl::string_view error_code) {
  // An account out of credit stays so, whether it says so with a 429 or in
  // an error object at the head of a stream (no status of its own: 0).
  if (error_code == "insufficient_quota") return false;
  if (http_status == 0) return true;
  if (http_status == 429) return true;
  return http_status == 408 || http_status == 409 || http_status >= 500;
}

absl::Duration RetryDelay(int retry, std::optional<absl::Duration> retry_after,
                          const OpenAiOptions& options) {
  if (retry_after.has_value() && *retry_after >= absl::ZeroDuration() &&
      *retry_after <= options.max_retry_after) {
    return *retry_after;
  }
  absl::Duration delay = options.retry_base_delay;
  for (int i = 1; i < retry && delay < options.retry_max_delay; ++i) delay *= 2;
  delay = std::min(delay, options.retry_max_delay);
  thread_local absl::BitGen random;
  const double jitter = absl::Uniform(random, 0.0, kMaxJitterFraction);
  return delay * (1.0 - jitter);
}

std::optional<absl::Duration> ParseRetryAfter(absl::string_view retry_after_ms,
                                              absl::string_view retry_after,
                                              absl::Time now) {
  double value = 0;
  if (!retry_after_ms.empty() && absl::SimpleAtod(retry_after_ms, &value) &&
      value >= 0) {
    return absl::Milliseconds(value);
  }
  if (retry_after.empty()) return std::nullopt;
  if (absl::SimpleAtod(retry_after, &value) && value >= 0) {
    return absl::Seconds(value);
  }
  // An HTTP date: "Wed, 21 Oct 2015 07:28:00 GMT".
  absl::Time when;
  std::string error;
  if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", std::string(retry_after),
                      absl::UTCTimeZone(), &when, &error)) {
    return std::max(absl::ZeroDuration(), when - now);
  }
  return std::nullopt;
}

}  // namespace coach
