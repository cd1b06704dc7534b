// The store's admission calls (Store::AdmitSend, Store::CreateSession) as
// tests of the store make them without a Chat: the simplest rules stand in
// for the domain's (server/core/chat.cc decides the real ones), and leave
// the rate state as it is.
#ifndef COACH_TESTS_SUPPORT_STORE_CALLS_H_
#define COACH_TESTS_SUPPORT_STORE_CALLS_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/store.h"

namespace coach::testing {

// Admits every send.
inline Admission AdmitAll(const AdmissionState& state) {
  return Admission{
      .rates = state.rates, .admitted = true, .key_response = std::nullopt};
}

// A send's reservation, taken while the user has a credit beyond its live
// reservations (on a limited plan; always on an unlimited one); nullopt
// when none is left.
inline absl::StatusOr<std::optional<CreditReservation>> ReserveCredit(
    Store& store, const std::string& user_id, const CreditTerms& terms,
    absl::Time now, absl::Time expires_at) {
  absl::StatusOr<SendAdmissionResult> admitted =
      store.AdmitSend(SendAdmissionRequest{.user_id = user_id,
                                           .session_id = "",
                                           .terms = terms,
                                           .now = now,
                                           .expires_at = expires_at,
                                           .claim = std::nullopt},
                      [&](const AdmissionState& state) {
                        const std::optional<int32_t> allowance =
                            terms.AllowanceOf(state.user.plan);
                        Admission answer = AdmitAll(state);
                        answer.admitted = !allowance.has_value() ||
                                          state.user.credits > state.live_sends;
                        return answer;
                      });
  if (!admitted.ok()) return admitted.status();
  return admitted->reservation;
}

// Claims `claim`'s key as a send does, and keeps only the claim: the send's
// reservation is given back at once.
inline absl::StatusOr<ClaimOutcome> ClaimKey(Store& store,
                                             const IdempotencyClaim& claim,
                                             const CreditTerms& terms) {
  absl::StatusOr<SendAdmissionResult> admitted =
      store.AdmitSend(SendAdmissionRequest{.user_id = claim.user_id,
                                           .session_id = "",
                                           .terms = terms,
                                           .now = claim.now,
                                           .expires_at = claim.claim_expires_at,
                                           .claim = claim},
                      &AdmitAll);
  if (!admitted.ok()) return admitted.status();
  if (admitted->reservation.has_value()) {
    if (absl::Status released = store.ReleaseCredit(*admitted->reservation);
        !released.ok()) {
      return released;
    }
  }
  return admitted->claim;
}

// Creates `session` unless its user owns `max_sessions` (> 0; 0: no
// maximum): FAILED_PRECONDITION then.
inline absl::Status CreateSessionAtMost(Store& store,
                                        const SessionRecord& session,
                                        int max_sessions,
                                        const CreditTerms& terms,
                                        absl::Time now) {
  absl::StatusOr<bool> created = store.CreateSession(
      session, terms, now, [&](const AdmissionState& state) {
        Admission answer = AdmitAll(state);
        answer.admitted = max_sessions <= 0 || state.sessions < max_sessions;
        return answer;
      });
  if (!created.ok()) return created.status();
  if (!*created) return absl::FailedPreconditionError("session limit reached");
  return absl::OkStatus();
}

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_STORE_CALLS_H_
