#include "server/core/errors.h"

#include <algorithm>
#include <cstdint>
#include <optional>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"

namespace coach {
namespace {

constexpr absl::string_view kReasonPayload = "coach.v1/reason";
constexpr absl::string_view kFieldPayload = "coach.v1/field";
constexpr absl::string_view kRetryDelayPayload = "coach.v1/retry_delay_ns";
constexpr absl::string_view kReplayedPayload = "coach.v1/replayed";

absl::Status WithReason(absl::StatusCode code, ErrorReason reason,
                        absl::string_view message) {
  absl::Status status(code, message);
  // The enumerator's number: the payload never leaves the process.
  status.SetPayload(kReasonPayload,
                    absl::Cord(absl::StrCat(static_cast<int>(reason))));
  return status;
}

std::string PayloadOf(const absl::Status& status, absl::string_view key) {
  const auto payload = status.GetPayload(key);
  return payload.has_value() ? std::string(*payload) : std::string();
}

}  // namespace

absl::Status InvalidArgumentError(absl::string_view field,
                                  absl::string_view french_message) {
  absl::Status status =
      WithReason(absl::StatusCode::kInvalidArgument,
                 ErrorReason::kInvalidArgument, french_message);
  status.SetPayload(kFieldPayload, absl::Cord(field));
  return status;
}

absl::Status SessionNotFoundError() {
  return WithReason(absl::StatusCode::kNotFound, ErrorReason::kSessionNotFound,
                    "Session non trouvée.");
}

absl::Status SessionForbiddenError() {
  return WithReason(absl::StatusCode::kPermissionDenied,
                    ErrorReason::kSessionForbidden,
                    "Session non autorisée : elle appartient à un autre "
                    "utilisateur.");
}

absl::Status NoCreditsError() {
  // Word for word the documented message (api-chat.md, 402).
  return WithReason(absl::StatusCode::kResourceExhausted,
                    ErrorReason::kNoCredits,
                    "Vous avez épuisé vos crédits de chat. Passez à un "
                    "abonnement supérieur pour continuer.");
}

absl::Status AiUnavailableError() {
  return WithReason(absl::StatusCode::kUnavailable, ErrorReason::kAiUnavailable,
                    "Le coach IA est momentanément indisponible. Votre "
                    "message n'a pas été décompté : réessayez dans un "
                    "instant.");
}

absl::Status ContentFilteredError() {
  return WithReason(absl::StatusCode::kFailedPrecondition,
                    ErrorReason::kContentFiltered,
                    "Le coach ne peut pas répondre à ce message : il enfreint "
                    "les règles de contenu. Votre message n'a pas été "
                    "décompté ; reformulez-le avec respect.");
}

absl::Status CallerDeadlineError() {
  return WithReason(absl::StatusCode::kDeadlineExceeded,
                    ErrorReason::kDeadlineExceeded,
                    "Le coach n'a pas répondu à temps. Votre message n'a pas "
                    "été décompté : réessayez dans un instant.");
}

absl::Status CallerCancelledError() {
  return WithReason(absl::StatusCode::kCancelled, ErrorReason::kCancelled,
                    "Requête annulée ; votre message n'a pas été décompté.");
}

absl::Status AdminUnauthenticatedError() {
  return WithReason(absl::StatusCode::kUnauthenticated,
                    ErrorReason::kUnauthenticated,
                    "Jeton d'administration manquant ou invalide "
                    "(en-tête « authorization: Bearer <jeton> »).");
}

absl::Status UnauthenticatedError(bool token_given) {
  return WithReason(
      absl::StatusCode::kUnauthenticated, ErrorReason::kUnauthenticated,
      token_given ? "Jeton d'accès invalide ou expiré : reconnectez-vous."
                  : "Jeton d'accès requis (en-tête « Authorization: "
                    "Bearer <jeton> »).");
}

absl::Status UserForbiddenError() {
  return WithReason(absl::StatusCode::kPermissionDenied,
                    ErrorReason::kUserForbidden,
                    "Ce « userId » n'est pas le vôtre : vous ne pouvez agir "
                    "que pour votre propre compte.");
}

absl::Status AdminDisabledError() {
  return WithReason(absl::StatusCode::kPermissionDenied,
                    ErrorReason::kAdminDisabled,
                    "Les opérations d'administration sont désactivées : "
                    "aucun jeton d'administration n'est configuré.");
}

absl::Status InternalError() {
  return WithReason(absl::StatusCode::kInternal, ErrorReason::kInternal,
                    "Erreur serveur. Réessayez plus tard.");
}

absl::Status UnavailableError() {
  return WithReason(absl::StatusCode::kUnavailable, ErrorReason::kUnavailable,
                    "Service momentanément indisponible. Réessayez dans un "
                    "instant.");
}

absl::Status RateLimitedError(absl::Duration retry_after) {
  // Whole seconds, at least one, as the REST Retry-After header says it.
  const int64_t seconds = std::max<int64_t>(
      1, absl::ToInt64Seconds(absl::Ceil(retry_after, absl::Seconds(1))));
  absl::Status status = WithReason(
      absl::StatusCode::kResourceExhausted, ErrorReason::kRateLimited,
      absl::StrCat("Trop de requêtes en peu de temps. Réessayez dans ", seconds,
                   " s."));
  status.SetPayload(
      kRetryDelayPayload,
      absl::Cord(absl::StrCat(absl::ToInt64Nanoseconds(retry_after))));
  return status;
}

absl::Status SessionLimitReachedError(int max_sessions) {
  return WithReason(
      absl::StatusCode::kFailedPrecondition, ErrorReason::kSessionLimitReached,
      absl::StrCat("Nombre maximal de conversations atteint (", max_sessions,
                   ") : supprimez-en une pour en commencer une nouvelle."));
}

absl::Status IdempotencyInProgressError() {
  return WithReason(absl::StatusCode::kAborted,
                    ErrorReason::kIdempotencyInProgress,
                    "Une requête avec cette clé d'idempotence est encore en "
                    "cours : réessayez dans un instant pour obtenir sa "
                    "réponse.");
}

absl::Status IdempotencyKeyReusedError() {
  return WithReason(absl::StatusCode::kFailedPrecondition,
                    ErrorReason::kIdempotencyKeyReused,
                    "Cette clé d'idempotence a déjà servi pour une autre "
                    "requête : utilisez une nouvelle clé pour un nouveau "
                    "message.");
}

absl::Status MarkReplayed(absl::Status status) {
  if (!status.ok()) status.SetPayload(kReplayedPayload, absl::Cord("1"));
  return status;
}

bool IsReplayed(const absl::Status& status) {
  return status.GetPayload(kReplayedPayload).has_value();
}

std::optional<ErrorReason> ReasonOf(const absl::Status& status) {
  int number = 0;
  if (!absl::SimpleAtoi(PayloadOf(status, kReasonPayload), &number)) {
    return std::nullopt;
  }
  return static_cast<ErrorReason>(number);
}

std::string FieldOf(const absl::Status& status) {
  return PayloadOf(status, kFieldPayload);
}

std::optional<absl::Duration> RetryDelayOf(const absl::Status& status) {
  int64_t nanoseconds = 0;
  if (!absl::SimpleAtoi(PayloadOf(status, kRetryDelayPayload), &nanoseconds)) {
    return std::nullopt;
  }
  return absl::Nanoseconds(nanoseconds);
}

absl::Status ToPublicError(const absl::Status& status,
                           absl::string_view operation) {
  if (status.ok() || ReasonOf(status).has_value()) return status;
  LogError("%s failed: %s", operation, status.ToString());
  return status.code() == absl::StatusCode::kUnavailable ? UnavailableError()
                                                         : InternalError();
}

}  // namespace coach
