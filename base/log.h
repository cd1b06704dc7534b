// Logging: one line per event, UTC time and level first (Env::Default()
// writes them to stderr). Never pass a secret (API key, admin token).
//
// LogInfo/LogWarning/LogError write through the process's real Env; code
// handed an Env (the AI client) logs through it with LogTo, so that its
// tests can read the lines.
#ifndef COACH_BASE_LOG_H_
#define COACH_BASE_LOG_H_

#include "absl/strings/str_format.h"
#include "base/env.h"

namespace coach {

template <typename... Args>
void LogTo(Env& env, LogLevel level, const absl::FormatSpec<Args...>& format,
           const Args&... args) {
  env.Log(level, absl::StrFormat(format, args...));
}

template <typename... Args>
void LogInfo(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogTo(Env::Default(), LogLevel::kInfo, format, args...);
}

template <typename... Args>
void LogWarning(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogTo(Env::Default(), LogLevel::kWarning, format, args...);
}

template <typename... Args>
void LogError(const absl::FormatSpec<Args...>& format, const Args&... args) {
  LogTo(Env::Default(), LogLevel::kError, format, args...);
}

}  // namespace coach

#endif  // COACH_BASE_LOG_H_
