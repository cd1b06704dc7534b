// When to retry a call to the AI provider, and how long to wait, as the
// official OpenAI SDKs do: retry connection errors, 408, 409, 429 and 5xx
// (not a 429 whose code is insufficient_quota: waiting will not pay the
// bill); back off exponentially with jitter; honour Retry-After when sane.
#ifndef COACH_SERVER_COACH_RETRY_POLICY_H_
#define COACH_SERVER_COACH_RETRY_POLICY_H_

#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/coach/openai_options.h"

namespace coach {

// `http_status` 0 means no response (connection error, timeout).
bool IsRetryable(int http_status, absl::string_view error_code);

// The wait before retry `retry` (1 = first retry): the server's Retry-After
// when given and within options.max_retry_after, else
// min(base * 2^(retry-1), max) reduced by up to 25% of jitter.
absl::Duration RetryDelay(int retry, std::optional<absl::Duration> retry_after,
                          const OpenAiOptions& options);

// Parses `retry-after-ms` (milliseconds) or `retry-after` (seconds, or an
// HTTP date, relative to `now`). nullopt when absent or unparsable.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view retry_after_ms,
                                              absl::string_view retry_after,
                                              absl::Time now);

}  // namespace coach

#endif  // COACH_SERVER_COACH_RETRY_POLICY_H_
