// CreditPolicy: what each plan may spend and when credits come back.
// FREE and BASIC get a monthly allowance, refilled lazily at the first use in
// each calendar month (UTC); PREMIUM is unlimited.
#ifndef COACH_SERVER_CORE_CREDITS_H_
#define COACH_SERVER_CORE_CREDITS_H_

#include <optional>

#include "absl/time/time.h"
#include "server/core/config.h"
#include "storage/records.h"

namespace coach {

class CreditPolicy {
 public:
  explicit CreditPolicy(const PlanCredits& plans) : plans_(plans) {}

  bool IsUnlimited(Plan plan) const { return plan == Plan::kPremium; }

  // The terms the store applies at `now`: the period ("2026-11") and each
  // limited plan's allowance; new users start on FREE.
  CreditTerms TermsAt(absl::Time now) const;

  // What `user` may still spend at `now`, the refill applied: nullopt when
  // unlimited. A user never seen (nullopt) is a new FREE user.
  std::optional<int32_t> RemainingCredits(const std::optional<UserRecord>& user,
                                          absl::Time now) const;

 private:
  PlanCredits plans_;
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_CREDITS_H_
