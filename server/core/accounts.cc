#include "server/core/accounts.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/core/errors.h"
#include "server/core/validation.h"

namespace coach {

Accounts::Accounts(const CoreConfig& config, Store& store, const Clock& clock)
    : config_(config), store_(store), clock_(clock), credits_(config.plans) {}

absl::StatusOr<UserStats> Accounts::StatsOf(const UserRecord& user,
                                            absl::Time now) {
  auto totals = store_.CountUserActivity(user.id);
  if (!totals.ok()) return ToPublicError(totals.status(), "count activity");
  return StatsFrom(user, *totals, now);
}

UserStats Accounts::StatsFrom(const UserRecord& user, const UserTotals& totals,
                              absl::Time now) const {
  return UserStats{.totals = totals,
                   .remaining_credits = credits_.RemainingCredits(user, now),
                   .plan = user.plan,
                   .status = user.status};
}

absl::StatusOr<UserStats> Accounts::GetUserStats(absl::string_view user_id) {
  COACH_RETURN_IF_ERROR(ValidateUserId(user_id, config_.limits));
  const absl::Time now = clock_.Now();
  // The row and the totals in one read (this is the hot read of the API).
  auto found = store_.FindUserActivity(user_id);
  if (!found.ok()) return ToPublicError(found.status(), "find user");
  if (found->user.has_value()) {
    return StatsFrom(*found->user, found->totals, now);
  }
  // Never seen: a new FREE, ACTIVE user with a full allowance (no period:
  // a full refill). Nothing is written: reads create no rows.
  UserRecord fresh{.id = std::string(user_id),
                   .plan = credits_.NewUserPlan(),
                   .status = UserStatus::kActive,
                   .credits = 0,
                   .credit_period = "",
                   .created_at = now};
  return StatsFrom(fresh, found->totals, now);
}

absl::StatusOr<UserStats> Accounts::SetPlan(absl::string_view user_id,
                                            Plan plan) {
  COACH_RETURN_IF_ERROR(ValidateUserId(user_id, config_.limits));
  const absl::Time now = clock_.Now();
  auto user = store_.SetPlan(user_id, plan, credits_.TermsAt(now), now);
  if (!user.ok()) return ToPublicError(user.status(), "set plan");
  return StatsOf(*user, now);
}

absl::StatusOr<UserStats> Accounts::GrantCredits(absl::string_view user_id,
                                                 int32_t credits) {
  COACH_RETURN_IF_ERROR(ValidateUserId(user_id, config_.limits));
  if (credits <= 0 || credits > config_.limits.max_credit_grant) {
    return InvalidArgumentError(
        "credits", absl::StrCat("Le champ « credits » doit être un entier "
                                "entre 1 et ",
                                config_.limits.max_credit_grant, "."));
  }
  const absl::Time now = clock_.Now();
  auto existing = store_.FindUser(user_id);
  if (!existing.ok()) return ToPublicError(existing.status(), "find user");
  if (existing->has_value() && credits_.IsUnlimited((*existing)->plan)) {
    return InvalidArgumentError(
        "credits",
        "Ce compte a un abonnement illimité : il n'a pas besoin "
        "de crédits.");
  }
  auto user =
      store_.AddCredits(user_id, credits, config_.limits.max_credit_balance,
                        credits_.TermsAt(now), now);
  if (absl::IsOutOfRange(user.status())) {
    return InvalidArgumentError(
        "credits",
        absl::StrCat("Le champ « credits » porterait le solde au-delà de ",
                     config_.limits.max_credit_balance, " crédits."));
  }
  if (!user.ok()) return ToPublicError(user.status(), "grant credits");
  return StatsOf(*user, now);
}

}  // namespace coach
