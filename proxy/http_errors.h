// HTTP errors in the documented shape:
//   {"error": "<short French label>", "code": "<REASON>", "message": "<French
//   detail>"}
// plus "field": "<JSON name>" after them when the error is about one field
// (an addition a client written against the page ignores): the
// ErrorInfo's metadata["field"] of coach-server's errors, the proxy's own
// transcoding errors' field (transcoder.h's ErrorField).
// gRPC codes map to HTTP statuses by the table grpc-gateway and Envoy share;
// a google.rpc.ErrorInfo reason overrides it, and names the label, where its
// coach.v1.ErrorReason value says so (options http_status, http_label in
// protos/coach/v1/error_reason.proto). No reason is known here by name.
// Likewise any google.rpc.RetryInfo becomes a `Retry-After` header.
#ifndef COACH_PROXY_HTTP_ERRORS_H_
#define COACH_PROXY_HTTP_ERRORS_H_

#include <grpcpp/support/status.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "coach/v1/error_reason.pb.h"

namespace coach::proxy {

struct HttpError {
  int status = 500;
  std::string body;  // JSON, the documented shape
  // The `Retry-After` header, in whole seconds (>= 1); none: no header.
  std::optional<int64_t> retry_after_seconds;
  // The body's `code` (the reason), for the access log.
  std::string reason;
};

// The standard gRPC -> HTTP status table.
int HttpStatusFromGrpc(grpc::StatusCode code);

// An error answered by coach-server: status from the code or the reason,
// message from the server (already French and fit for users).
HttpError HttpErrorFromGrpc(const grpc::Status& status);

// An error decided by the proxy itself (bad JSON, unknown route, ...);
// `field`, when not empty, names the field at fault. `label`, when not
// empty, replaces the reason's (an HTTP-layer refusal whose status says
// more than its reason: 414 under INVALID_ARGUMENT).
HttpError MakeHttpError(int http_status, v1::ErrorReason reason,
                        absl::string_view message, absl::string_view field = "",
                        absl::string_view label = "");

}  // namespace coach::proxy

#endif  // COACH_PROXY_HTTP_ERRORS_H_
