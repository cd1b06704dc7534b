// The values the domain stores and reads back. Plain data, no behaviour:
// the rules that produce them live in server/core.
#ifndef COACH_STORAGE_RECORDS_H_
#define COACH_STORAGE_RECORDS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

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

// A user's row (nullopt: never written) and totals, read together.
struct UserActivity {
  std::optional<UserRecord> user;
  UserTotals totals;
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

// One send in flight, reserved while the coach writes its reply: it counts
// in the user's concurrent sends and, on a limited plan, holds one credit.
struct CreditReservation {
  int64_t id = 0;
  std::string user_id;
};

// A send's claim on an idempotency key (Store::ClaimIdempotencyKey): the
// key, scoped to its user, and the request it names.
struct IdempotencyClaim {
  std::string user_id;
  std::string key;
  // A fingerprint of the request (the same request, the same hash).
  std::string request_hash;
  // This claim's own random id: only the send holding it completes or
  // releases the key.
  std::string claim_id;
  absl::Time now;
  // An unfinished claim (the send crashed, or hung) frees the key after
  // this, as a credit hold expires.
  absl::Time claim_expires_at;
  // The key, and the response stored with it, are forgotten after this.
  absl::Time expires_at;
};

// The response stored with a key once its send ended: opaque to the store
// (the domain encodes it), plus the credits left after the charge, which
// only the exchange's transaction knows.
struct StoredResponse {
  std::string response;
  std::optional<int32_t> remaining_credits;
};

// What claiming a key found.
struct ClaimOutcome {
  enum class State {
    // The key is this claim's: the send runs.
    kClaimed,
    // Another send with this key and this request is running.
    kInProgress,
    // The key was used for another request (another hash).
    kReused,
    // A send with this key and this request ended: `stored` is its
    // response.
    kCompleted,
  };
  State state = State::kClaimed;
  std::optional<StoredResponse> stored;
};

// The key an exchange completes (with the response) in its transaction.
struct IdempotencyCompletion {
  std::string user_id;
  std::string key;
  std::string claim_id;
  // The response, without remaining credits (the commit adds them).
  std::string response;
};

// A user's per-user rate limits, as the store keeps them on the user's row:
// for each limit, the generic cell rate algorithm's (GCRA) "theoretical
// arrival time". The domain gives them their meaning (server/core/
// user_limits.h); the store only reads and writes them under the user's row
// lock. The Unix epoch (a new user's) is a limit never used.
struct RateState {
  absl::Time send_tat = absl::UnixEpoch();
  absl::Time session_tat = absl::UnixEpoch();
};

// What the store reads for an admission (Store::AdmitSend and
// Store::CreateSession), under the user's row lock, so that no other
// admission of the same user, on any server, can change it before the
// domain's answer is written.
struct AdmissionState {
  // Created on `CreditTerms::new_user_plan` if unknown, refilled to the
  // terms' period.
  UserRecord user;
  RateState rates;
  // The user's live send reservations: unexpired, whichever server run took
  // them (the runs ended are dropped by BeginRun).
  int live_sends = 0;
  // The sessions the user owns.
  int sessions = 0;
  // AdmitSend into an existing session: that session if it exists (whoever
  // owns it); nullopt otherwise.
  std::optional<SessionRecord> session;
};

// The domain's answer to an AdmissionState.
struct Admission {
  // Written back whatever the outcome (a refused attempt may count).
  RateState rates;
  // AdmitSend: take a send reservation; CreateSession: insert the session.
  bool admitted = false;
  // AdmitSend with a key, refused: the response stored with the key (an
  // outcome its retries get again); nullopt: the key is freed, a retry runs.
  std::optional<std::string> key_response;
};

// A send's first transaction (Store::AdmitSend).
struct SendAdmissionRequest {
  std::string user_id;
  // Empty: the send will create its session (no session is read).
  std::string session_id;
  CreditTerms terms;
  absl::Time now;
  // When the reservation expires if its send never ends (a crashed server
  // that is not restarted).
  absl::Time expires_at;
  // The send's Idempotency-Key, claimed first.
  std::optional<IdempotencyClaim> claim;
};

struct SendAdmissionResult {
  // kClaimed (also without a key): the domain was asked. Otherwise what
  // holds the key, and nothing else was read or written.
  ClaimOutcome claim;
  // Set when the domain admitted the send: its reservation, which the
  // exchange's commit settles (CommitExchange) or ReleaseCredit gives back.
  std::optional<CreditReservation> reservation;
};

// What one model's replies cost a user in a month.
struct ModelUsageRecord {
  // As the provider named it; empty when it named none.
  std::string model;
  int32_t replies = 0;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// A user's consumption in a month, as the exchanges' commits counted it
// (the usage ledger): kept when sessions or the user's data are deleted.
struct UsageRecord {
  // "YYYY-MM" (UTC), the credit period the replies were stored in.
  std::string month;
  int32_t replies = 0;
  int32_t credits_charged = 0;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  // Most replies first, ties by model.
  std::vector<ModelUsageRecord> by_model;
};

struct UserUsageRecord {
  std::string user_id;
  UsageRecord usage;
};

// One page of a month's usage, by user_id.
struct UsagePage {
  std::vector<UserUsageRecord> users;
  // The last user_id returned, set when more follow.
  std::optional<std::string> next;
};

// What erasing a user's data removed.
struct ErasedData {
  int32_t sessions = 0;
  int32_t messages = 0;
};

// Everything one successful send stores, atomically.
struct Exchange {
  // The user the reply is counted for in the usage ledger.
  std::string user_id;
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
  // The send's reservation (AdmitSend), settled here; charged unless its
  // user's plan is unlimited. Absent: nothing is settled or charged.
  std::optional<CreditReservation> reservation;
  CreditTerms terms;
  absl::Time now;
  // A send with an idempotency key: the key's claim is completed with the
  // response in the same transaction (ABORTED, nothing stored, if the claim
  // is no longer this send's).
  std::optional<IdempotencyCompletion> idempotency;
};

struct ExchangeResult {
  // Credits left after the charge; absent when nothing was charged.
  std::optional<int32_t> remaining_credits;
};

}  // namespace coach

#endif  // COACH_STORAGE_RECORDS_H_
