#include "proxy/http_errors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace coach::proxy {
namespace {

// The options of `reason`'s coach.v1.ErrorReason value; the defaults (no
// status override, no label) for a reason this build does not know.
const google::protobuf::EnumValueOptions& ReasonOptions(
    absl::string_view reason) {
  const google::protobuf::EnumValueDescriptor* value =
      v1::ErrorReason_descriptor()->FindValueByName(std::string(reason));
  if (value == nullptr) {
    return google::protobuf::EnumValueOptions::default_instance();
  }
  return value->options();
}

// The body in the documented shape; `reason` goes out as it came.
HttpError Body(int http_status, absl::string_view reason,
               absl::string_view message, absl::string_view field = "",
               absl::string_view label_override = "") {
  // Every reason has its label; one this build does not know yet, a generic
  // one.
  std::string label = label_override.empty()
                          ? ReasonOptions(reason).GetExtension(v1::http_label)
                          : std::string(label_override);
  if (label.empty()) {
    label = http_status < 500 ? "Requête invalide" : "Erreur serveur";
  }
  // Ordered: the documented body lists error, code, message in this order.
  nlohmann::ordered_json body = {
      {"error", std::move(label)},
      {"code", std::string(reason)},
      {"message", std::string(message)},
  };
  if (!field.empty()) body["field"] = std::string(field);
  // Replace, not throw, on invalid UTF-8: an error body must always go out.
  return HttpError{
      .status = http_status,
      .body = body.dump(-1, ' ', false,
                        nlohmann::ordered_json::error_handler_t::replace),
      .retry_after_seconds = std::nullopt,
      .reason = std::string(reason)};
}

// The first detail of type T in the status details, if any.
template <typename T>
std::optional<T> DetailOf(const grpc::Status& status) {
  google::rpc::Status details;
  if (status.error_details().empty() ||
      !details.ParseFromString(status.error_details())) {
    return std::nullopt;
  }
  for (const google::protobuf::Any& any : details.details()) {
    T detail;
    if (any.Is<T>() && any.UnpackTo(&detail)) return detail;
  }
  return std::nullopt;
}

// The ErrorInfo reason in the status details, or "".
std::string ReasonOf(const grpc::Status& status) {
  const auto info = DetailOf<google::rpc::ErrorInfo>(status);
  return info.has_value() ? info->reason() : "";
}

// The field the ErrorInfo names (metadata["field"], a JSON name), or "".
std::string FieldOf(const grpc::Status& status) {
  const auto info = DetailOf<google::rpc::ErrorInfo>(status);
  if (!info.has_value()) return "";
  const auto found = info->metadata().find("field");
  return found == info->metadata().end() ? "" : found->second;
}

// A RetryInfo's delay as Retry-After seconds: rounded up, at least 1 (0
// would invite an immediate retry); none without a RetryInfo.
std::optional<int64_t> RetryAfterOf(const grpc::Status& status) {
  const auto retry = DetailOf<google::rpc::RetryInfo>(status);
  if (!retry.has_value()) return std::nullopt;
  const google::protobuf::Duration& delay = retry->retry_delay();
  const int64_t seconds = delay.seconds() + (delay.nanos() > 0 ? 1 : 0);
  return std::max<int64_t>(1, seconds);
}

// French messages for failures that carry no message fit for users.
absl::string_view DefaultMessage(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
      return "Le service est momentanément indisponible. Réessayez dans un "
             "instant.";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "Le service n'a pas répondu à temps. Réessayez dans un instant.";
    default: return "Erreur serveur. Réessayez plus tard.";
  }
}

}  // namespace

int HttpStatusFromGrpc(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return 200;
    case grpc::StatusCode::CANCELLED: return 499;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE: return 400;
    case grpc::StatusCode::UNAUTHENTICATED: return 401;
    case grpc::StatusCode::PERMISSION_DENIED: return 403;
    case grpc::StatusCode::NOT_FOUND: return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED: return 409;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return 429;
    case grpc::StatusCode::UNIMPLEMENTED: return 501;
    case grpc::StatusCode::UNAVAILABLE: return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return 504;
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DATA_LOSS:
    default: return 500;
  }
}

HttpError MakeHttpError(int http_status, v1::ErrorReason reason,
                        absl::string_view message, absl::string_view field,
                        absl::string_view label) {
  return Body(http_status, v1::ErrorReason_Name(reason), message, field, label);
}

HttpError HttpErrorFromGrpc(const grpc::Status& status) {
  std::string reason = ReasonOf(status);
  int http_status = HttpStatusFromGrpc(status.error_code());
  if (const int override_status =
          ReasonOptions(reason).GetExtension(v1::http_status);
      override_status != 0) {
    http_status = override_status;
  }
  // Only coach-server's own errors (with a reason) carry a message written
  // for users. A status without one comes from the channel itself: the
  // server unreachable or restarting (UNAVAILABLE, CANCELLED), a deadline, a
  // message over gRPC's size limit. Its message is technical and stays in
  // logs; its status says what the client can do about it.
  if (reason.empty()) {
    switch (status.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
      case grpc::StatusCode::CANCELLED:
        return MakeHttpError(503, v1::UNAVAILABLE,
                             DefaultMessage(grpc::StatusCode::UNAVAILABLE));
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        return MakeHttpError(504, v1::DEADLINE_EXCEEDED,
                             DefaultMessage(status.error_code()));
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        return MakeHttpError(413, v1::PAYLOAD_TOO_LARGE,
                             "La requête dépasse la taille acceptée.");
      default:
        return MakeHttpError(500, v1::INTERNAL,
                             DefaultMessage(status.error_code()));
    }
  }
  HttpError error =
      Body(http_status, reason, status.error_message(), FieldOf(status));
  error.retry_after_seconds = RetryAfterOf(status);
  return error;
}

}  // namespace coach::proxy
