#include "base/trace_context.h"

#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/escaping.h"
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

// kBytes random bytes in hex, never all zero.
template <size_t kBytes>
std::string RandomHex() {
  std::array<uint8_t, kBytes> bytes;
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    std::fprintf(stderr, "FATAL: OpenSSL RAND_bytes failed\n");
    std::abort();
  }
  std::string hex = absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(bytes.data()), bytes.size()));
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

std::string NewTraceId() { return RandomHex<16>(); }
std::string NewSpanId() { return RandomHex<8>(); }

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
