// The errors the rules return, each with a stable machine reason and a
// French message fit to show a user. They are absl::Status values; the reason
// (and, for bad input, the field) travels as a payload, and server/rpc turns
// both into a google.rpc.ErrorInfo at the gRPC boundary.
#ifndef COACH_SERVER_CORE_ERRORS_H_
#define COACH_SERVER_CORE_ERRORS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace coach {

// Stable reasons (google.rpc.ErrorInfo.reason). Clients switch on these.
namespace reason {
inline constexpr absl::string_view kInvalidArgument = "INVALID_ARGUMENT";
inline constexpr absl::string_view kSessionNotFound = "SESSION_NOT_FOUND";
inline constexpr absl::string_view kSessionForbidden = "SESSION_FORBIDDEN";
inline constexpr absl::string_view kNoCredits = "NO_CREDITS";
inline constexpr absl::string_view kAiUnavailable = "AI_UNAVAILABLE";
inline constexpr absl::string_view kContentFiltered = "CONTENT_FILTERED";
inline constexpr absl::string_view kDeadlineExceeded = "DEADLINE_EXCEEDED";
inline constexpr absl::string_view kCancelled = "CANCELLED";
inline constexpr absl::string_view kUnauthenticated = "UNAUTHENTICATED";
inline constexpr absl::string_view kAdminDisabled = "ADMIN_DISABLED";
inline constexpr absl::string_view kUnavailable = "UNAVAILABLE";
inline constexpr absl::string_view kInternal = "INTERNAL";
}  // namespace reason

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
absl::Status AdminDisabledError();
absl::Status InternalError();
absl::Status UnavailableError();

// The reason carried by `status`, or "" if it carries none.
std::string ReasonOf(const absl::Status& status);
// The field named by an INVALID_ARGUMENT from InvalidArgumentError, or "".
std::string FieldOf(const absl::Status& status);

// Passes our own errors through; turns anything else (a storage failure)
// into a reasoned INTERNAL/UNAVAILABLE after logging its detail, so that no
// backend message reaches a user.
absl::Status ToPublicError(const absl::Status& status,
                           absl::string_view operation);

}  // namespace coach

#endif  // COACH_SERVER_CORE_ERRORS_H_
