#include "server/core/credits.h"

#include "base/log.h"

namespace coach {

CreditPolicy::CreditPolicy(const PlanCredits& plans) {
  // PREMIUM has no allowance: it is unlimited.
  terms_.allowance = {{Plan::kFree, plans.free_monthly_credits},
                      {Plan::kBasic, plans.basic_monthly_credits}};
  terms_.new_user_plan = Plan::kFree;
}

CreditTerms CreditPolicy::TermsAt(absl::Time now) const {
  CreditTerms terms = terms_;
  terms.period = absl::FormatTime("%Y-%m", now, absl::UTCTimeZone());
  return terms;
}

std::optional<int32_t> CreditPolicy::RemainingCredits(
    const std::optional<UserRecord>& user, absl::Time now) const {
  const CreditTerms terms = TermsAt(now);
  const Plan plan = user.has_value() ? user->plan : terms.new_user_plan;
  const std::optional<int32_t> allowance = terms.AllowanceOf(plan);
  if (!allowance.has_value()) return std::nullopt;  // unlimited
  if (!user.has_value() || user->credit_period != terms.period) {
    return allowance;
  }
  return user->credits;
}

CreditHold::CreditHold(CreditHold&& other) noexcept
    : store_(other.store_),
      live_(other.live_),
      reservation_(std::move(other.reservation_)) {
  other.reservation_.reset();
}

CreditHold& CreditHold::operator=(CreditHold&& other) noexcept {
  if (this != &other) {
    Release();
    store_ = other.store_;
    live_ = other.live_;
    reservation_ = std::move(other.reservation_);
    other.reservation_.reset();
  }
  return *this;
}

void CreditHold::Forget() {
  if (!reservation_.has_value()) return;
  reservation_.reset();
  if (live_ != nullptr) live_->Add(-1);
}

void CreditHold::Release() {
  if (!reservation_.has_value()) return;
  const CreditReservation reservation = *std::move(reservation_);
  Forget();
  if (absl::Status released = store_->ReleaseCredit(reservation);
      !released.ok()) {
    LogWarning("release credit %d failed (it will expire): %s", reservation.id,
               released.ToString());
  }
}

}  // namespace coach
