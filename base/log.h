// Minimal structured-enough logging to stderr: one line per event, UTC time
// and level first. Never pass a secret (API key, admin token) to these.
#ifndef COACH_BASE_LOG_H_
#define COACH_BASE_LOG_H_

#include <cstdio>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace coach {

namespace log_internal {
template <typename... Args>
void Write(const char* level, const absl::FormatSpec<Args...>& format,
           const Args&... args) {
  // One fprintf per line: lines from concurrent threads do not interleave.
  std::fprintf(stderr, "%s %s %s\n",
               absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                absl::UTCTimeZone())
                   .c_str(),
               level, absl::StrFormat(format, args...).c_str());
}
}  // namespace log_internal

template <typename... Args>
void LogInfo(const absl::FormatSpec<Args...>& format, const Args&... args) {
  log_internal::Write("INFO", format, args...);
}

template <typename... Args>
void LogWarning(const absl::FormatSpec<Args...>& format, const Args&... args) {
  log_internal::Write("WARN", format, args...);
}

template <typename... Args>
void LogError(const absl::FormatSpec<Args...>& format, const Args&... args) {
  log_internal::Write("ERROR", format, args...);
}

}  // namespace coach

#endif  // COACH_BASE_LOG_H_
