#include "server/rpc/grpc_status.h"

#include <cstdint>
#include <optional>
#include <string>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace coach {

v1::ErrorReason ToProtoReason(ErrorReason reason) {
  // No default: -Wswitch (an error in CI) names a core reason left unmapped.
  switch (reason) {
    case ErrorReason::kInvalidArgument: return v1::INVALID_ARGUMENT;
    case ErrorReason::kSessionNotFound: return v1::SESSION_NOT_FOUND;
    case ErrorReason::kSessionForbidden: return v1::SESSION_FORBIDDEN;
    case ErrorReason::kNoCredits: return v1::NO_CREDITS;
    case ErrorReason::kAiUnavailable: return v1::AI_UNAVAILABLE;
    case ErrorReason::kContentFiltered: return v1::CONTENT_FILTERED;
    case ErrorReason::kDeadlineExceeded: return v1::DEADLINE_EXCEEDED;
    case ErrorReason::kCancelled: return v1::CANCELLED;
    case ErrorReason::kUnauthenticated: return v1::UNAUTHENTICATED;
    case ErrorReason::kAdminDisabled: return v1::ADMIN_DISABLED;
    case ErrorReason::kUserForbidden: return v1::USER_FORBIDDEN;
    case ErrorReason::kUnavailable: return v1::UNAVAILABLE;
    case ErrorReason::kInternal: return v1::INTERNAL;
    case ErrorReason::kRateLimited: return v1::RATE_LIMITED;
    case ErrorReason::kSessionLimitReached: return v1::SESSION_LIMIT_REACHED;
    case ErrorReason::kIdempotencyInProgress:
      return v1::IDEMPOTENCY_IN_PROGRESS;
    case ErrorReason::kIdempotencyKeyReused: return v1::IDEMPOTENCY_KEY_REUSED;
  }
  return v1::INTERNAL;  // not reached: a value outside the enumerators
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // Our errors always carry a reason; anything else is a bug, reported as a
  // reasoned INTERNAL so that no internal message reaches a client.
  const absl::Status public_status = ToPublicError(status, "rpc");

  google::rpc::ErrorInfo info;
  info.set_reason(v1::ErrorReason_Name(
      ToProtoReason(ReasonOf(public_status).value_or(ErrorReason::kInternal))));
  info.set_domain(std::string(kErrorDomain));
  if (std::string field = FieldOf(public_status); !field.empty()) {
    (*info.mutable_metadata())["field"] = std::move(field);
  }
  google::rpc::Status details;
  details.set_code(static_cast<int>(public_status.code()));
  details.set_message(std::string(public_status.message()));
  details.add_details()->PackFrom(info);
  if (const std::optional<absl::Duration> delay = RetryDelayOf(public_status);
      delay.has_value()) {
    google::rpc::RetryInfo retry;
    const absl::Duration seconds = absl::Trunc(*delay, absl::Seconds(1));
    retry.mutable_retry_delay()->set_seconds(absl::ToInt64Seconds(seconds));
    retry.mutable_retry_delay()->set_nanos(
        static_cast<int32_t>(absl::ToInt64Nanoseconds(*delay - seconds)));
    details.add_details()->PackFrom(retry);
  }

  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(public_status.code()),
                      std::string(public_status.message()),
                      details.SerializeAsString());
}

std::string ReasonOfGrpcStatus(const grpc::Status& status) {
  google::rpc::Status details;
  if (status.error_details().empty() ||
      !details.ParseFromString(status.error_details())) {
    return "";
  }
  for (const google::protobuf::Any& any : details.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) return info.reason();
  }
  return "";
}

}  // namespace coach
