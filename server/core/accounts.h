// Accounts: a user's plan, credits and usage. An unknown user id is a new
// FREE, ACTIVE user: reading its stats creates nothing, and the first write
// that names it creates it.
//
// The admin operations (SetPlan, GrantCredits) do not check who calls them:
// the RPC layer does (server/rpc/admin_auth.h).
#ifndef COACH_SERVER_CORE_ACCOUNTS_H_
#define COACH_SERVER_CORE_ACCOUNTS_H_

#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/clock.h"
#include "server/core/config.h"
#include "server/core/credits.h"
#include "storage/store.h"

namespace coach {

struct UserStats {
  UserTotals totals;
  // Credits left this month; absent on an unlimited plan.
  std::optional<int32_t> remaining_credits;
  Plan plan = Plan::kFree;
  UserStatus status = UserStatus::kActive;
};

class Accounts {
 public:
  // All references must outlive the Accounts.
  Accounts(const CoreConfig& config, Store& store, const Clock& clock);

  absl::StatusOr<UserStats> GetUserStats(absl::string_view user_id);

  // Moves the user to `plan`, with the plan's full monthly allowance.
  absl::StatusOr<UserStats> SetPlan(absl::string_view user_id, Plan plan);

  // Adds `credits` (positive, bounded by Limits::max_credit_grant) to this
  // month's balance. INVALID_ARGUMENT on an unlimited plan, where it would
  // mean nothing.
  absl::StatusOr<UserStats> GrantCredits(absl::string_view user_id,
                                         int32_t credits);

 private:
  absl::StatusOr<UserStats> StatsOf(const UserRecord& user, absl::Time now);
  UserStats StatsFrom(const UserRecord& user, const UserTotals& totals,
                      absl::Time now) const;

  const CoreConfig& config_;
  Store& store_;
  const Clock& clock_;
  CreditPolicy credits_;
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_ACCOUNTS_H_
