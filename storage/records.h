// The values the domain stores and reads back. Plain data, no behaviour:
// the rules that produce them live in server/core.
#ifndef COACH_STORAGE_RECORDS_H_
#define COACH_STORAGE_RECORDS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/time/time.h"

namespace coach {

enum class Plan { kFree, kBasic, kPremium };
enum class UserStatus { kActive };
enum class Role { kUser, kAssistant };

struct UserRecord {
  std::string id;
  Plan plan = Plan::kFree;
  UserStatus status = UserStatus::kActive;
  // Credits left in `credit_period`; meaningless on an unlimited plan.
  int32_t credits = 0;
  // The month the credits belong to, "YYYY-MM" (UTC).
  std::string credit_period;
  absl::Time created_at;
};

struct SessionRecord {
  std::string id;
  std::string user_id;
  std::string title;
  // The last message, already shortened for display.
  std::string last_message;
  int32_t message_count = 0;
  absl::Time created_at;
  absl::Time updated_at;
};

// What producing a reply cost, as the AI provider billed it.
struct TokenUsage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
};

struct MessageRecord {
  std::string id;
  std::string session_id;
  Role role = Role::kUser;
  std::string content;
  absl::Time created_at;
  // Assistant messages from a provider that reports them: the model that
  // wrote the reply and its token usage (what a real bill is made of).
  std::string model;
  std::optional<TokenUsage> usage;
};

// A user's totals over all of their sessions.
struct UserTotals {
  int32_t sessions = 0;
  int32_t messages = 0;
};

// The credit terms in force now, decided by the domain and applied by the
// store inside its transactions: a user row whose `credit_period` is not
// `period` is refilled to the allowance of its plan before anything else, and
// a user row created by a write starts on `new_user_plan` with its allowance.
struct CreditTerms {
  std::string period;
  // The monthly credits of each limited plan. A plan the domain leaves out
  // is unlimited: read it through AllowanceOf, the one place that says so.
  std::map<Plan, int32_t> allowance;
  Plan new_user_plan = Plan::kFree;

  // The monthly credits of `plan`; nullopt when it is unlimited.
  std::optional<int32_t> AllowanceOf(Plan plan) const {
    const auto it = allowance.find(plan);
    if (it == allowance.end()) return std::nullopt;
    return it->second;
  }
};

// Whose holds a store makes: a server instance (a stable name: the same
// after a restart) and its current run (new at every start).
struct HoldOwner {
  std::string instance;
  std::string run;
};

// One credit held for a send while the coach writes its reply.
struct CreditReservation {
  int64_t id = 0;
  std::string user_id;
};

// Everything one successful send stores, atomically.
struct Exchange {
  // Set when the send starts a new session (created in the same transaction).
  std::optional<SessionRecord> new_session;
  // With new_session: the sessions its user may own at most (> 0), checked
  // in the commit's transaction; 0: no maximum.
  int max_user_sessions = 0;
  std::string session_id;
  MessageRecord user_message;
  MessageRecord assistant_message;
  // The session's new `last_message`, already shortened.
  std::string last_message;
  // Absent on an unlimited plan: nothing is charged.
  std::optional<CreditReservation> reservation;
  CreditTerms terms;
  absl::Time now;
};

struct ExchangeResult {
  // Credits left after the charge; absent when nothing was charged.
  std::optional<int32_t> remaining_credits;
};

}  // namespace coach

#endif  // COACH_STORAGE_RECORDS_H_
