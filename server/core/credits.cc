#include "server/core/credits.h"

namespace coach {

CreditTerms CreditPolicy::TermsAt(absl::Time now) const {
  CreditTerms terms;
  terms.period = absl::FormatTime("%Y-%m", now, absl::UTCTimeZone());
  terms.allowance = {{Plan::kFree, plans_.free_monthly_credits},
                     {Plan::kBasic, plans_.basic_monthly_credits}};
  terms.new_user_plan = Plan::kFree;
  return terms;
}

std::optional<int32_t> CreditPolicy::RemainingCredits(
    const std::optional<UserRecord>& user, absl::Time now) const {
  const CreditTerms terms = TermsAt(now);
  const Plan plan = user.has_value() ? user->plan : terms.new_user_plan;
  if (IsUnlimited(plan)) return std::nullopt;
  if (!user.has_value() || user->credit_period != terms.period) {
    return terms.allowance.at(plan);
  }
  return user->credits;
}

}  // namespace coach
