// The errors the rules return, each with a stable machine reason and a
// French message fit to show a user. They are absl::Status values; the reason
// (and, for bad input, the field) travels as a payload, and server/rpc turns
// both into a google.rpc.ErrorInfo at the gRPC boundary.
#ifndef COACH_SERVER_CORE_ERRORS_H_
#define COACH_SERVER_CORE_ERRORS_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace coach {

// Why a rule refused: the reasons coach-server produces. server/rpc maps each
// to coach.v1.ErrorReason (protos/coach/v1/error_reason.proto), whose value
// name is the stable google.rpc.ErrorInfo.reason clients switch on; core
// knows no proto, so the names live there only.
enum class ErrorReason {
  kInvalidArgument,
  kSessionNotFound,
  kSessionForbidden,
  kNoCredits,
  kAiUnavailable,
  kContentFiltered,
  kDeadlineExceeded,
  kCancelled,
  kUnauthenticated,
  kAdminDisabled,
  kUnavailable,
  kInternal,
  kRateLimited,
  kSessionLimitReached,
  kUserForbidden,
  kIdempotencyInProgress,
  kIdempotencyKeyReused,
};

// The ErrorInfo domain of our reasons.
inline constexpr absl::string_view kErrorDomain = "coach.v1";

// INVALID_ARGUMENT naming the field by its JSON name ("userId").
absl::Status InvalidArgumentError(absl::string_view field,
                                  absl::string_view french_message);
absl::Status SessionNotFoundError();
absl::Status SessionForbiddenError();
absl::Status NoCreditsError();
absl::Status AiUnavailableError();
// The AI provider's content filter stopped the reply.
absl::Status ContentFilteredError();
// The caller stopped waiting (its deadline passed / it cancelled).
absl::Status CallerDeadlineError();
absl::Status CallerCancelledError();
absl::Status AdminUnauthenticatedError();
// A public RPC without a valid token (COACH_AUTH=jwt); `token_given`: one
// was sent but refused.
absl::Status UnauthenticatedError(bool token_given);
// The request acts for another user than the token's.
absl::Status UserForbiddenError();
absl::Status AdminDisabledError();
absl::Status InternalError();
absl::Status UnavailableError();
// Too many requests of one user (RESOURCE_EXHAUSTED): a per-user rate or
// concurrency limit. `retry_after` (> 0) travels with the status
// (RetryDelayOf) and to clients as a google.rpc.RetryInfo.
absl::Status RateLimitedError(absl::Duration retry_after);
// The user already owns `max_sessions` sessions (FAILED_PRECONDITION: they
// must delete one first; waiting does not help).
absl::Status SessionLimitReachedError(int max_sessions);
// A send with this Idempotency-Key is still running (ABORTED: retry later).
absl::Status IdempotencyInProgressError();
// This Idempotency-Key was used for another request (FAILED_PRECONDITION).
absl::Status IdempotencyKeyReusedError();

// `status` marked as the replay of an idempotency key's stored response
// (IsReplayed), for the transport to say so.
absl::Status MarkReplayed(absl::Status status);
bool IsReplayed(const absl::Status& status);

// The reason carried by `status`; none for a status not made here (a
// storage failure, OK).
std::optional<ErrorReason> ReasonOf(const absl::Status& status);
// The field named by an INVALID_ARGUMENT from InvalidArgumentError, or "".
std::string FieldOf(const absl::Status& status);
// How long the caller should wait before retrying, when `status` says
// (RateLimitedError); nullopt otherwise.
std::optional<absl::Duration> RetryDelayOf(const absl::Status& status);

// Passes our own errors through; turns anything else (a storage failure)
// into a reasoned INTERNAL/UNAVAILABLE after logging its detail, so that no
// backend message reaches a user.
absl::Status ToPublicError(const absl::Status& status,
                           absl::string_view operation);

}  // namespace coach

#endif  // COACH_SERVER_CORE_ERRORS_H_
