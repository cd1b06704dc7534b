// How an AI provider's failure is told apart from a refusal of the request
// itself, between the provider clients (OpenAiCoach) and FallbackCoach.
//
// A refusal (an HTTP 4xx other than 408, 409 and 429: a malformed request,
// a context too long, a key refused) would be met again from another
// provider: it is not fallen over, and it says nothing of the provider's
// health. The mark is a payload on the status; its code is unchanged
// (UNAVAILABLE: the rules still answer AI_UNAVAILABLE). Pure functions.
#ifndef COACH_SERVER_COACH_PROVIDER_ERROR_H_
#define COACH_SERVER_COACH_PROVIDER_ERROR_H_

#include "absl/status/status.h"

namespace coach {

// Whether an HTTP status from a provider refuses the request itself.
bool RefusesTheRequest(int http_status);

absl::Status MarkRequestRefused(absl::Status status);
bool IsRequestRefused(const absl::Status& status);

}  // namespace coach

#endif  // COACH_SERVER_COACH_PROVIDER_ERROR_H_
