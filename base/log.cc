#include "base/log.h"

#include <charconv>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace coach {
namespace {

using Json = nlohmann::ordered_json;  // ts, level, msg first, as written

constexpr EnumName<LogFormat> kFormatNames[] = {{LogFormat::kText, "text"},
                                                {LogFormat::kJson, "json"}};
constexpr EnumName<LogLevel> kLevelNames[] = {{LogLevel::kDebug, "debug"},
                                              {LogLevel::kInfo, "info"},
                                              {LogLevel::kWarning, "warn"},
                                              {LogLevel::kError, "error"}};

std::string JsonLevel(LogLevel level) { return EnumNameOf(level, kLevelNames); }

Json JsonLine(LogLevel level, absl::string_view message) {
  Json line;
  line["ts"] = LogTimestamp();
  line["level"] = JsonLevel(level);
  line["msg"] = std::string(message);
  return line;
}

void Write(const Json& line) {
  // Bytes that are not UTF-8 (a client's header) become U+FFFD: the line
  // stays valid JSON. One fwrite per line: lines do not interleave.
  std::string text =
      line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text.push_back('\n');
  std::fwrite(text.data(), 1, text.size(), stderr);
}

}  // namespace

bool AbslParseFlag(absl::string_view text, LogFormat* format,
                   std::string* error) {
  return ParseEnumName(text, kFormatNames, format, error);
}
std::string AbslUnparseFlag(LogFormat format) {
  return EnumNameOf(format, kFormatNames);
}
bool AbslParseFlag(absl::string_view text, LogLevel* level,
                   std::string* error) {
  return ParseEnumName(text, kLevelNames, level, error);
}
std::string AbslUnparseFlag(LogLevel level) {
  return EnumNameOf(level, kLevelNames);
}

std::vector<Setting> LogSettings(LogOptions& options) {
  return {
      Essential(
          {"log_format", "COACH_LOG_FORMAT", &options.format, kAnyValue,
           "`text`: `<time> <LEVEL> <message>`; `json`: one JSON object per "
           "line "
           "(`ts`, `level`, `msg`, and for requests `request_id`, `route`, "
           "`status`, `code`, `reason`, `duration_ms`, `trace_id`, "
           "`span_id`)"}),
      Essential(
          {"log_level", "COACH_LOG_LEVEL", &options.level, kAnyValue,
           "Lines below this level are dropped (`warn`: no request lines)"}),
  };
}

void ApplyLogOptions(const LogOptions& options) {
  log_internal::min_level.store(static_cast<int>(options.level),
                                std::memory_order_relaxed);
  log_internal::json.store(options.format == LogFormat::kJson,
                           std::memory_order_relaxed);
}

std::string LogTimestamp() { return LogTimestamp(absl::Now()); }

std::string LogTimestamp(absl::Time time) {
  // "2026-11-29T19:14:29" of the second `time` is in (rounded down, as
  // FormatTime does), kept for the next lines of this thread.
  struct Cache {
    int64_t second = 0;
    std::string text;
  };
  thread_local Cache cache;
  const int64_t second = absl::ToUnixSeconds(time);
  if (cache.text.empty() || cache.second != second) {
    cache.second = second;
    cache.text =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(second),
                         absl::UTCTimeZone());
  }
  const int64_t millis =
      absl::ToInt64Milliseconds(time - absl::FromUnixSeconds(second));
  const char fraction[] = {'.', static_cast<char>('0' + millis / 100),
                           static_cast<char>('0' + millis / 10 % 10),
                           static_cast<char>('0' + millis % 10), 'Z'};
  return absl::StrCat(cache.text,
                      absl::string_view(fraction, sizeof(fraction)));
}

void WriteJsonLogLine(LogLevel level, absl::string_view message) {
  Write(JsonLine(level, message));
}

void LogRequest(LogLevel level, const RequestLogLine& r) {
  if (!LogEnabled(level)) return;
  std::string summary(r.kind);
  if (!r.method.empty()) absl::StrAppend(&summary, " ", r.method);
  absl::StrAppend(&summary, " ", r.route);
  if (LogJson()) {
    Json line = JsonLine(level, summary);
    line["request_id"] = std::string(r.request_id);
    if (!r.method.empty()) line["method"] = std::string(r.method);
    line["route"] = std::string(r.route);
    if (r.status >= 0) line["status"] = r.status;
    if (!r.code.empty()) line["code"] = std::string(r.code);
    if (!r.reason.empty()) line["reason"] = std::string(r.reason);
    if (r.duration_ms >= 0) {
      // Tenths of a millisecond, as the text line shows.
      line["duration_ms"] =
          static_cast<double>(static_cast<int64_t>(r.duration_ms * 10 + 0.5)) /
          10;
    }
    if (!r.note.empty()) line["note"] = std::string(r.note);
    if (!r.trace_id.empty()) line["trace_id"] = std::string(r.trace_id);
    if (!r.span_id.empty()) line["span_id"] = std::string(r.span_id);
    return Write(line);
  }
  if (r.status >= 0) absl::StrAppend(&summary, " status=", r.status);
  if (!r.code.empty()) absl::StrAppend(&summary, " code=", r.code);
  if (!r.reason.empty()) absl::StrAppend(&summary, " reason=", r.reason);
  if (!r.note.empty()) absl::StrAppend(&summary, " ", r.note);
  if (r.duration_ms >= 0) {
    // "%.1f" (to_chars with a precision is printf's rounding), without
    // StrFormat's parsing of the format on every request line.
    char tenths[64];
    const std::to_chars_result end =
        std::to_chars(tenths, tenths + sizeof(tenths), r.duration_ms,
                      std::chars_format::fixed, 1);
    if (end.ec == std::errc()) {
      absl::StrAppend(
          &summary, " duration_ms=",
          absl::string_view(tenths, static_cast<size_t>(end.ptr - tenths)));
    } else {  // more digits than a request takes
      absl::StrAppend(&summary,
                      " duration_ms=", absl::StrFormat("%.1f", r.duration_ms));
    }
  }
  absl::StrAppend(&summary, " request_id=", r.request_id);
  if (!r.trace_id.empty()) absl::StrAppend(&summary, " trace_id=", r.trace_id);
  if (!r.span_id.empty()) absl::StrAppend(&summary, " span_id=", r.span_id);
  Env::Default().Log(level, summary);
}

}  // namespace coach
