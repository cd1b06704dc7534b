// HTTP errors in the documented shape:
//   {"error": "<short French label>", "code": "<REASON>", "message": "<French detail>"}
// gRPC codes map to HTTP statuses by the table grpc-gateway and Envoy share;
// a google.rpc.ErrorInfo reason overrides it where the API page says so
// (NO_CREDITS -> 402).
#ifndef COACH_PROXY_HTTP_ERRORS_H_
#define COACH_PROXY_HTTP_ERRORS_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/strings/string_view.h"

namespace coach::proxy {

struct HttpError {
  int status = 500;
  std::string body;  // JSON, the documented shape
};

// The standard gRPC -> HTTP status table.
int HttpStatusFromGrpc(grpc::StatusCode code);

// An error answered by coach-server: status from the code or the reason,
// message from the server (already French and fit for users).
HttpError HttpErrorFromGrpc(const grpc::Status& status);

// An error decided by the proxy itself (bad JSON, unknown route, ...).
HttpError MakeHttpError(int http_status, absl::string_view reason,
                        absl::string_view message);

// Reasons the proxy itself produces.
namespace proxy_reason {
inline constexpr absl::string_view kInvalidArgument = "INVALID_ARGUMENT";
inline constexpr absl::string_view kRouteNotFound = "ROUTE_NOT_FOUND";
inline constexpr absl::string_view kMethodNotAllowed = "METHOD_NOT_ALLOWED";
inline constexpr absl::string_view kPayloadTooLarge = "PAYLOAD_TOO_LARGE";
inline constexpr absl::string_view kLengthRequired = "LENGTH_REQUIRED";
inline constexpr absl::string_view kUnsupportedEncoding = "UNSUPPORTED_ENCODING";
inline constexpr absl::string_view kUnavailable = "UNAVAILABLE";
inline constexpr absl::string_view kDeadlineExceeded = "DEADLINE_EXCEEDED";
inline constexpr absl::string_view kInternal = "INTERNAL";
}  // namespace proxy_reason

}  // namespace coach::proxy

#endif  // COACH_PROXY_HTTP_ERRORS_H_
