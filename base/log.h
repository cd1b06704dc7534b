// Logging: one line per event, to stderr through Env::Default(). Never pass a
// secret (API key, admin token, JWT) nor a user's message.
//
// Two formats (COACH_LOG_FORMAT): `text`, "<UTC time> <LEVEL> <message>",
// and `json`, one object per line: {"ts": RFC 3339 UTC with milliseconds,
// "level": "debug"|"info"|"warn"|"error", "msg": ..., and for request lines
// the fields of RequestLogLine}. A minimum level (COACH_LOG_LEVEL) drops the
// lines below it before anything is formatted: a filtered line costs one
// relaxed atomic load.
//
// LogInfo/LogWarning/LogError write through the process's real Env; code
// handed an Env (the AI client) logs through it with LogTo, so that its
// tests can read the lines.
//
// Thread-safety: every function may be called from any thread. Each binary
// calls ApplyLogOptions once in main, before it starts threads.
#ifndef COACH_BASE_LOG_H_
#define COACH_BASE_LOG_H_

#include <atomic>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/env.h"
#include "base/settings.h"

namespace coach {

namespace log_internal {
inline std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};
inline std::atomic<bool> json{false};
}  // namespace log_internal

// Whether a line of `level` is written at all.
inline bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >=
         log_internal::min_level.load(std::memory_order_relaxed);
}
// Whether lines are JSON objects (COACH_LOG_FORMAT=json).
inline bool LogJson() {
  return log_internal::json.load(std::memory_order_relaxed);
}

// COACH_LOG_FORMAT: `text` or `json`.
enum class LogFormat { kText, kJson };

// The two log settings of both binaries, as their settings tables hold them.
struct LogOptions {
  LogFormat format = LogFormat::kText;
  LogLevel level = LogLevel::kInfo;  // written debug | info | warn | error
};

// absl's flag marshalling of the two (base/settings.h): "text", "json";
// "debug", "info", "warn", "error".
bool AbslParseFlag(absl::string_view text, LogFormat* format,
                   std::string* error);
std::string AbslUnparseFlag(LogFormat format);
bool AbslParseFlag(absl::string_view text, LogLevel* level, std::string* error);
std::string AbslUnparseFlag(LogLevel level);
// The rows of COACH_LOG_FORMAT and COACH_LOG_LEVEL, bound to `options`.
std::vector<Setting> LogSettings(LogOptions& options);
// Makes `options` (checked by LogSettings' rows) the process's.
void ApplyLogOptions(const LogOptions& options);

// The time as lines show it: RFC 3339, UTC, milliseconds (truncated), as
// absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ") writes it. The part up to the
// seconds is formatted once a second per thread: every request has a line.
std::string LogTimestamp();
std::string LogTimestamp(absl::Time time);
// Writes {"ts","level","msg"} as one line (JSON format).
void WriteJsonLogLine(LogLevel level, absl::string_view message);

// A request's line, in the access logs of both binaries. Empty strings and
// negative numbers are left out.
struct RequestLogLine {
  absl::string_view kind;    // "http" (coach-proxy) or "rpc" (coach-server)
  absl::string_view method;  // the HTTP method; empty on rpc lines
  absl::string_view route;   // the route's template, or the gRPC method
  int status = -1;           // the HTTP status; none on rpc lines
  absl::string_view code;    // the gRPC status code's name ("NOT_FOUND")
  absl::string_view reason;  // the error's reason ("SESSION_NOT_FOUND")
  double duration_ms = -1;
  absl::string_view request_id;  // "-" when none
  absl::string_view trace_id;    // W3C trace context (trace_context.h);
  absl::string_view span_id;     // empty: none
  absl::string_view note;        // a few words more (text) / "note" (JSON)
};
// Text: "<kind> [<method> ]<route> status=.. code=.. reason=.. <note>
// duration_ms=.. request_id=.. trace_id=.. span_id=..". JSON: "msg" is
// "<kind> [<method> ]<route>" and every field is a member. Callers check
// LogEnabled first when building the line costs anything.
void LogRequest(LogLevel level, const RequestLogLine& line);

template <typename... Args>
void LogTo(Env& env, LogLevel level, const absl::FormatSpec<Args...>& format,
           const Args&... args) {
  if (!LogEnabled(level)) return;
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
