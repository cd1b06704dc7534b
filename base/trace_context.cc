#include "base/trace_context.h"

#include <cstdint>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"

namespace coach {
namespace {

bool IsLowerHex(absl::string_view text) {
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsAllZero(absl::string_view text) {
  return text.find_first_not_of('0') == absl::string_view::npos;
}

// kWords random 64-bit words in hex, never all zero. A per-thread
// generator: trace ids identify, they guard nothing, so no system call or
// lock on each request (OpenSSL's generator cost both on the proxy's hot
// path).
template <size_t kWords>
std::string RandomHex() {
  thread_local absl::BitGen generator;
  std::string hex;
  for (size_t i = 0; i < kWords; ++i) {
    absl::StrAppend(
        &hex, absl::Hex(absl::Uniform<uint64_t>(generator), absl::kZeroPad16));
  }
  if (IsAllZero(hex)) hex.back() = '1';  // invalid as all zeros (2^-64)
  return hex;
}

}  // namespace

std::optional<TraceContext> ParseTraceparent(absl::string_view header) {
  // version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55.
  constexpr size_t kLength = 55;
  if (header.size() < kLength) return std::nullopt;
  const absl::string_view version = header.substr(0, 2);
  if (!IsLowerHex(version) || version == "ff") return std::nullopt;
  // Version 00 is exactly 55 characters; a later one may add fields after
  // a dash.
  if (version == "00" ? header.size() != kLength
                      : header.size() > kLength && header[kLength] != '-') {
    return std::nullopt;
  }
  if (header[2] != '-' || header[35] != '-' || header[52] != '-') {
    return std::nullopt;
  }
  TraceContext trace{.trace_id = std::string(header.substr(3, 32)),
                     .span_id = std::string(header.substr(36, 16)),
                     .flags = std::string(header.substr(53, 2))};
  if (!IsLowerHex(trace.trace_id) || !IsLowerHex(trace.span_id) ||
      !IsLowerHex(trace.flags) || IsAllZero(trace.trace_id) ||
      IsAllZero(trace.span_id)) {
    return std::nullopt;
  }
  return trace;
}

std::string FormatTraceparent(const TraceContext& trace) {
  return absl::StrCat("00-", trace.trace_id, "-", trace.span_id, "-",
                      trace.flags);
}

std::string NewTraceId() { return RandomHex<2>(); }
std::string NewSpanId() { return RandomHex<1>(); }

TraceContext ContinueTrace(absl::string_view traceparent) {
  if (std::optional<TraceContext> parent = ParseTraceparent(traceparent)) {
    parent->span_id = NewSpanId();
    parent->continued = true;
    return *std::move(parent);
  }
  return TraceContext{.trace_id = NewTraceId(), .span_id = NewSpanId()};
}

bool IsForwardableTracestate(absl::string_view tracestate) {
  if (tracestate.size() > kMaxTracestateLength) return false;
  for (char c : tracestate) {
    if (c < 0x20 || c >= 0x7F) return false;
  }
  return true;
}

}  // namespace coach
