// W3C Trace Context (https://www.w3.org/TR/trace-context/), version 00:
// propagation and log correlation only. No tracing SDK is packaged in
// Debian; an operator's collector (Jaeger, Tempo, Datadog...) joins our log
// lines, which carry trace_id and span_id, to the spans of the services
// around us.
//
//   traceparent: 00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>
//
// coach-proxy continues the trace a request brings (or starts one) and
// sends coach-server a traceparent naming its own span; coach-server logs
// the trace it is called in, under a span of its own. tracestate, vendors'
// data, travels along unread.
//
// Thread-safe (no state but a random generator per thread).
#ifndef COACH_BASE_TRACE_CONTEXT_H_
#define COACH_BASE_TRACE_CONTEXT_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace coach {

// HTTP headers, and the gRPC metadata keys (lower case) they travel as.
inline constexpr char kTraceparentHeader[] = "traceparent";
inline constexpr char kTracestateHeader[] = "tracestate";
// The longest tracestate forwarded (the spec's 32 members of at most 256
// characters would be ~8 KB; its advice is to keep at least 512).
inline constexpr size_t kMaxTracestateLength = 512;

struct TraceContext {
  std::string trace_id;      // 32 lower-case hex digits, not all zero
  std::string span_id;       // 16 lower-case hex digits, not all zero
  std::string flags = "00";  // 2 hex digits; 01: sampled upstream
  // True if this continues a trace a caller named (ContinueTrace): its
  // tracestate may travel with it; false for a trace started here.
  bool continued = false;
};

// The trace a traceparent header names (its parent-id as span_id), or none
// when the header is malformed: wrong lengths or characters, upper-case hex,
// all-zero ids, version ff. A later version is read by its version-00
// prefix, as the spec asks.
std::optional<TraceContext> ParseTraceparent(absl::string_view header);

// "00-<trace_id>-<span_id>-<flags>".
std::string FormatTraceparent(const TraceContext& trace);

// A random trace id (16 bytes) or span id (8 bytes), in hex, never all
// zero. Not unguessable (absl::BitGen, per thread): ids for correlation,
// which guard nothing.
std::string NewTraceId();
std::string NewSpanId();

// The trace a request continues: `traceparent`'s, under a new span of ours
// (span_id), or a new trace when the header is absent or malformed.
TraceContext ContinueTrace(absl::string_view traceparent);

// True if `tracestate` may be forwarded: printable ASCII, at most
// kMaxTracestateLength characters (its members are not checked: they are
// the vendors').
bool IsForwardableTracestate(absl::string_view tracestate);

}  // namespace coach

#endif  // COACH_BASE_TRACE_CONTEXT_H_
