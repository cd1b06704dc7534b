// The reasons of errors, one list: core's ErrorReason maps one to one onto
// coach.v1.ErrorReason (whose value names are the wire reasons), and every
// value of the proto enum is produced by coach-server or by coach-proxy.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "coach/v1/error_reason.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "server/core/errors.h"
#include "server/rpc/grpc_status.h"
#include "tests/support/test_server.h"

namespace coach {
namespace {

// Every core reason.
constexpr ErrorReason kCoreReasons[] = {
    ErrorReason::kInvalidArgument,      ErrorReason::kSessionNotFound,
    ErrorReason::kSessionForbidden,     ErrorReason::kNoCredits,
    ErrorReason::kAiUnavailable,        ErrorReason::kContentFiltered,
    ErrorReason::kDeadlineExceeded,     ErrorReason::kCancelled,
    ErrorReason::kUnauthenticated,      ErrorReason::kAdminDisabled,
    ErrorReason::kUnavailable,          ErrorReason::kInternal,
    ErrorReason::kRateLimited,          ErrorReason::kSessionLimitReached,
    ErrorReason::kUserForbidden,        ErrorReason::kIdempotencyInProgress,
    ErrorReason::kIdempotencyKeyReused,
};

// The wire name clients switch on, as it has always been. No default: a
// reason added to core stops the build (-Wswitch) until it is named here,
// next to the list above.
std::string WireName(ErrorReason reason) {
  switch (reason) {
    case ErrorReason::kInvalidArgument: return "INVALID_ARGUMENT";
    case ErrorReason::kSessionNotFound: return "SESSION_NOT_FOUND";
    case ErrorReason::kSessionForbidden: return "SESSION_FORBIDDEN";
    case ErrorReason::kNoCredits: return "NO_CREDITS";
    case ErrorReason::kAiUnavailable: return "AI_UNAVAILABLE";
    case ErrorReason::kContentFiltered: return "CONTENT_FILTERED";
    case ErrorReason::kDeadlineExceeded: return "DEADLINE_EXCEEDED";
    case ErrorReason::kCancelled: return "CANCELLED";
    case ErrorReason::kUnauthenticated: return "UNAUTHENTICATED";
    case ErrorReason::kAdminDisabled: return "ADMIN_DISABLED";
    case ErrorReason::kUnavailable: return "UNAVAILABLE";
    case ErrorReason::kInternal: return "INTERNAL";
    case ErrorReason::kRateLimited: return "RATE_LIMITED";
    case ErrorReason::kSessionLimitReached: return "SESSION_LIMIT_REACHED";
    case ErrorReason::kUserForbidden: return "USER_FORBIDDEN";
    case ErrorReason::kIdempotencyInProgress: return "IDEMPOTENCY_IN_PROGRESS";
    case ErrorReason::kIdempotencyKeyReused: return "IDEMPOTENCY_KEY_REUSED";
  }
  return "";
}

// The reasons only coach-proxy produces (it decides them before any call).
const std::set<std::string> kProxyOnly = {
    "ROUTE_NOT_FOUND",       "METHOD_NOT_ALLOWED",   "PAYLOAD_TOO_LARGE",
    "LENGTH_REQUIRED",       "UNSUPPORTED_ENCODING", "HEADERS_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE"};

// The ErrorInfo reason a status carries on the wire: exactly one ErrorInfo.
std::string WireReasonOf(const grpc::Status& status) {
  google::rpc::Status details;
  if (!details.ParseFromString(status.error_details())) return "";
  std::string reason;
  int infos = 0;
  for (const google::protobuf::Any& any : details.details()) {
    google::rpc::ErrorInfo info;
    if (any.Is<google::rpc::ErrorInfo>() && any.UnpackTo(&info)) {
      reason = info.reason();
      ++infos;
    }
  }
  return infos == 1 ? reason : "";
}

// The RetryInfo delay a status carries on the wire, if any.
std::optional<absl::Duration> WireRetryDelayOf(const grpc::Status& status) {
  return coach::testing::ErrorInfoOf(status).retry_delay;
}

TEST(ErrorReasonTest, EveryCoreReasonMapsToTheProtoValueOfItsName) {
  std::set<int> proto_values;
  for (const ErrorReason reason : kCoreReasons) {
    const v1::ErrorReason proto = ToProtoReason(reason);
    EXPECT_NE(proto, v1::ERROR_REASON_UNSPECIFIED) << WireName(reason);
    EXPECT_EQ(v1::ErrorReason_Name(proto), WireName(reason));
    proto_values.insert(proto);
  }
  // One to one.
  EXPECT_EQ(proto_values.size(), std::size(kCoreReasons));
}

TEST(ErrorReasonTest, EveryProtoValueIsProducedByTheServerOrTheProxy) {
  std::set<std::string> server;
  for (const ErrorReason reason : kCoreReasons) {
    server.insert(v1::ErrorReason_Name(ToProtoReason(reason)));
  }
  const google::protobuf::EnumDescriptor& type = *v1::ErrorReason_descriptor();
  for (int i = 0; i < type.value_count(); ++i) {
    const std::string& name = type.value(i)->name();
    if (type.value(i)->number() == 0) {
      EXPECT_EQ(name, "ERROR_REASON_UNSPECIFIED");
      continue;
    }
    EXPECT_TRUE(server.count(name) + kProxyOnly.count(name) == 1)
        << name << " is produced by nobody, or by both";
  }
  for (const std::string& name : kProxyOnly) {
    EXPECT_NE(type.FindValueByName(name), nullptr) << name;
  }
}

TEST(ErrorReasonTest, EveryErrorOfTheRulesCarriesItsWireReason) {
  const std::map<std::string, absl::Status> errors = {
      {"INVALID_ARGUMENT", InvalidArgumentError("userId", "« userId »")},
      {"SESSION_NOT_FOUND", SessionNotFoundError()},
      {"SESSION_FORBIDDEN", SessionForbiddenError()},
      {"NO_CREDITS", NoCreditsError()},
      {"AI_UNAVAILABLE", AiUnavailableError()},
      {"CONTENT_FILTERED", ContentFilteredError()},
      {"DEADLINE_EXCEEDED", CallerDeadlineError()},
      {"CANCELLED", CallerCancelledError()},
      {"UNAUTHENTICATED", UnauthenticatedError(/*token_given=*/true)},
      {"ADMIN_DISABLED", AdminDisabledError()},
      {"UNAVAILABLE", UnavailableError()},
      {"INTERNAL", InternalError()},
      {"RATE_LIMITED", RateLimitedError(absl::Seconds(3))},
      {"SESSION_LIMIT_REACHED", SessionLimitReachedError(500)},
      {"USER_FORBIDDEN", UserForbiddenError()},
      {"IDEMPOTENCY_IN_PROGRESS", IdempotencyInProgressError()},
      {"IDEMPOTENCY_KEY_REUSED", IdempotencyKeyReusedError()},
  };
  for (const auto& [name, error] : errors) {
    EXPECT_EQ(WireReasonOf(ToGrpcStatus(error)), name);
    // Only a rate limit says when to retry.
    EXPECT_EQ(WireRetryDelayOf(ToGrpcStatus(error)).has_value(),
              name == "RATE_LIMITED")
        << name;
  }
  // Anything without a reason goes out reasoned, its message withheld.
  EXPECT_EQ(WireReasonOf(ToGrpcStatus(absl::DataLossError("disk"))),
            "INTERNAL");
  EXPECT_EQ(WireReasonOf(ToGrpcStatus(absl::UnavailableError("locked"))),
            "UNAVAILABLE");
  EXPECT_FALSE(ReasonOf(absl::DataLossError("disk")).has_value());
  EXPECT_FALSE(ReasonOf(absl::OkStatus()).has_value());
}

TEST(ErrorReasonTest, RateLimitedCarriesItsWaitAsRetryInfo) {
  const grpc::Status status =
      ToGrpcStatus(RateLimitedError(absl::Milliseconds(2500)));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(WireRetryDelayOf(status), absl::Milliseconds(2500));
  // The message rounds up to whole seconds, as Retry-After does.
  EXPECT_EQ(status.error_message(),
            "Trop de requêtes en peu de temps. Réessayez dans 3 s.");
}

}  // namespace
}  // namespace coach
