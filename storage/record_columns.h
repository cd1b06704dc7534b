// How both engines write the records' enums and credit rules into columns:
// one spelling, so that a database reads the same whichever engine wrote it.
#ifndef COACH_STORAGE_RECORD_COLUMNS_H_
#define COACH_STORAGE_RECORD_COLUMNS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "storage/records.h"

namespace coach {

inline const char* PlanName(Plan plan) {
  switch (plan) {
    case Plan::kFree: return "FREE";
    case Plan::kBasic: return "BASIC";
    case Plan::kPremium: return "PREMIUM";
  }
  return "FREE";
}

inline Plan PlanFromName(absl::string_view name) {
  if (name == "BASIC") return Plan::kBasic;
  if (name == "PREMIUM") return Plan::kPremium;
  return Plan::kFree;
}

inline const char* RoleName(Role role) {
  return role == Role::kAssistant ? "ASSISTANT" : "USER";
}

inline Role RoleFromName(absl::string_view name) {
  return name == "ASSISTANT" ? Role::kAssistant : Role::kUser;
}

// The credits column of a user on `plan` after a refill: its allowance, 0 on
// an unlimited plan (where the column means nothing).
inline int32_t RefilledCredits(const CreditTerms& terms, Plan plan) {
  return terms.AllowanceOf(plan).value_or(0);
}

// A new session as an exchange leaves it (its two messages, the reply's
// preview, the exchange's time): how the exchange's commit inserts it.
inline SessionRecord WithExchange(SessionRecord session,
                                  const Exchange& exchange) {
  session.last_message = exchange.last_message;
  session.message_count += 2;
  session.updated_at = exchange.now;
  return session;
}

// An idempotency key's row as both engines read it (claim NULL: its send
// ended and `response` is stored).
struct IdempotencyKeyRow {
  std::string request_hash;
  std::optional<std::string> claim;
  absl::Time claim_expires_at;
  absl::Time expires_at;
  std::optional<std::string> response;
  std::optional<int32_t> remaining_credits;
};

// What an existing key's row means to `claim`, the one rule both engines
// apply under their lock on the row: nullopt when the key is free for it
// (expired, or held by an unfinished claim past its claim_expires_at), else
// the outcome to return (checked in this order: another request, still
// running, ended).
inline std::optional<ClaimOutcome> HeldKeyOutcome(
    const IdempotencyKeyRow& row, const IdempotencyClaim& claim) {
  if (row.expires_at <= claim.now ||
      (row.claim.has_value() && row.claim_expires_at <= claim.now)) {
    return std::nullopt;
  }
  if (row.request_hash != claim.request_hash) {
    return ClaimOutcome{.state = ClaimOutcome::State::kReused,
                        .stored = std::nullopt};
  }
  if (row.claim.has_value() || !row.response.has_value()) {
    return ClaimOutcome{.state = ClaimOutcome::State::kInProgress,
                        .stored = std::nullopt};
  }
  return ClaimOutcome{
      .state = ClaimOutcome::State::kCompleted,
      .stored = StoredResponse{.response = *row.response,
                               .remaining_credits = row.remaining_credits}};
}

}  // namespace coach

#endif  // COACH_STORAGE_RECORD_COLUMNS_H_
