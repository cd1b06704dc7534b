// Input validation, the first rule of every call: each check returns
// INVALID_ARGUMENT with a French message naming the field by its JSON name.
#ifndef COACH_SERVER_CORE_VALIDATION_H_
#define COACH_SERVER_CORE_VALIDATION_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/config.h"

namespace coach {

// userId: required, not blank, valid UTF-8, at most max_user_id_length,
// no surrounding whitespace, no control characters.
absl::Status ValidateUserId(absl::string_view user_id, const Limits& limits);

// The same, for the optional userId of session calls: empty is allowed.
absl::Status ValidateOptionalUserId(absl::string_view user_id,
                                    const Limits& limits);

// sessionId: required, at most max_session_id_length.
absl::Status ValidateSessionId(absl::string_view session_id,
                               const Limits& limits);

// message: required, not blank, at most max_message_length characters.
// Returns the message trimmed of surrounding whitespace.
absl::StatusOr<std::string> ValidateMessage(absl::string_view message,
                                            const Limits& limits);

// title: not blank, at most max_title_length characters. Returns it trimmed.
absl::StatusOr<std::string> ValidateTitle(absl::string_view title,
                                          const Limits& limits);

// Idempotency-Key (a header, named so): 1 to max_idempotency_key_length
// printable ASCII characters (space to tilde).
absl::Status ValidateIdempotencyKey(absl::string_view key,
                                    const Limits& limits);

// limit: when present, positive. Returns the effective limit (default when
// absent, capped at history_max_limit).
absl::StatusOr<int> ValidateHistoryLimit(std::optional<int> limit,
                                         const Limits& limits);

// pageSize (AIP-158): negative is INVALID_ARGUMENT; 0 (absent) gives
// `default_size`; the result is capped at max_page_size.
absl::StatusOr<int> ValidatePageSize(int page_size, int default_size,
                                     const Limits& limits);

}  // namespace coach

#endif  // COACH_SERVER_CORE_VALIDATION_H_
