#include "server/core/credits.h"

#include "base/log.h"

namespace coach {

CreditPolicy::CreditPolicy(const PlanCredits& plans) {
  // PREMIUM has no allowance: it is unlimited.
  terms_.allowance = {{Plan::kFree, plans.free_monthly_credits},
                      {Plan::kBasic, plans.basic_monthly_credits}};
  terms_.new_user_plan = Plan::kFree;
}

std::string CreditPolicy::PeriodAt(absl::Time now) {
  return absl::FormatTime("%Y-%m", now, absl::UTCTimeZone());
}

CreditTerms CreditPolicy::TermsAt(absl::Time now) const {
  CreditTerms terms = terms_;
  terms.period = PeriodAt(now);
  return terms;
}

std::optional<int32_t> CreditPolicy::RemainingCredits(const UserRecord& user,
                                                      absl::Time now) const {
  // terms_ is TermsAt(now) but for the period, formatted only when compared
  // (a stats request is served in microseconds: formatting counts).
  const std::optional<int32_t> allowance = terms_.AllowanceOf(user.plan);
  if (!allowance.has_value()) return std::nullopt;  // unlimited
  if (user.credit_period.empty() || user.credit_period != PeriodAt(now)) {
    return allowance;
  }
  return user.credits;
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
