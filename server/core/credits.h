// CreditPolicy: what each plan may spend and when credits come back.
// FREE and BASIC get a monthly allowance, refilled lazily at the first use in
// each calendar month (UTC); PREMIUM is unlimited.
//
// CreditHold: one credit held for a send while the coach writes, given back
// unless the exchange's commit consumes it.
#ifndef COACH_SERVER_CORE_CREDITS_H_
#define COACH_SERVER_CORE_CREDITS_H_

#include <optional>
#include <utility>

#include "absl/time/time.h"
#include "base/metrics.h"
#include "server/core/config.h"
#include "storage/records.h"
#include "storage/store.h"

namespace coach {

class CreditPolicy {
 public:
  explicit CreditPolicy(const PlanCredits& plans);

  // The one definition, used by the rules and (through CreditTerms) by the
  // store: a plan is unlimited when the terms give it no allowance.
  bool IsUnlimited(Plan plan) const {
    return !terms_.AllowanceOf(plan).has_value();
  }

  // The terms the store applies at `now`: the period ("2026-11") and each
  // limited plan's allowance; new users start on FREE.
  CreditTerms TermsAt(absl::Time now) const;

  // What `user` may still spend at `now`, the refill applied: nullopt when
  // unlimited. A user never seen is a record on NewUserPlan() with no
  // credit period (a full allowance).
  std::optional<int32_t> RemainingCredits(const UserRecord& user,
                                          absl::Time now) const;
  // The plan of a user never seen (TermsAt(now).new_user_plan, at any now).
  Plan NewUserPlan() const { return terms_.new_user_plan; }

 private:
  // TermsAt(now).period: "2026-11".
  static std::string PeriodAt(absl::Time now);

  // Every term but the period, decided once.
  CreditTerms terms_;
};

// One credit held for a send, as a value that cannot leak: move-only, and
// given back to the user (Store::ReleaseCredit) when destroyed unless
// Consume() said that the commit charged it. An empty hold (an unlimited
// plan) holds nothing and gives nothing back. A failed release is only
// logged: the hold row expires on its own (CoreConfig::
// credit_reservation_ttl). Not thread-safe: one send owns it at a time.
// While it holds a credit it counts one in `live` (CoreMetrics'
// coach_credit_holds), when given one.
class CreditHold {
 public:
  CreditHold() = default;
  // `store` and `live` (may be null) must outlive the hold.
  CreditHold(Store& store, CreditReservation reservation,
             metrics::Gauge* live = nullptr)
      : store_(&store), live_(live), reservation_(std::move(reservation)) {
    if (live_ != nullptr) live_->Add(1);
  }
  CreditHold(CreditHold&& other) noexcept;
  CreditHold& operator=(CreditHold&& other) noexcept;
  CreditHold(const CreditHold&) = delete;
  CreditHold& operator=(const CreditHold&) = delete;
  ~CreditHold() { Release(); }

  // What the commit charges; nullopt when nothing is held.
  const std::optional<CreditReservation>& reservation() const {
    return reservation_;
  }
  // The commit that charged the reservation succeeded (it removed the hold
  // in its transaction): nothing is left to give back.
  void Consume() { Forget(); }
  // Gives the credit back now, if one is still held.
  void Release();

 private:
  // Holds nothing any more.
  void Forget();

  Store* store_ = nullptr;
  metrics::Gauge* live_ = nullptr;
  std::optional<CreditReservation> reservation_;
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_CREDITS_H_
