#include "server/core/errors.h"

#include <optional>

#include "absl/strings/cord.h"
#include "base/log.h"

namespace coach {
namespace {

constexpr absl::string_view kReasonPayload = "coach.v1/reason";
constexpr absl::string_view kFieldPayload = "coach.v1/field";

absl::Status WithReason(absl::StatusCode code, absl::string_view reason,
                        absl::string_view message) {
  absl::Status status(code, message);
  status.SetPayload(kReasonPayload, absl::Cord(reason));
  return status;
}

std::string PayloadOf(const absl::Status& status, absl::string_view key) {
  const auto payload = status.GetPayload(key);
  return payload.has_value() ? std::string(*payload) : std::string();
}

}  // namespace

absl::Status InvalidArgumentError(absl::string_view field,
                                  absl::string_view french_message) {
  absl::Status status = WithReason(absl::StatusCode::kInvalidArgument,
                                   reason::kInvalidArgument, french_message);
  status.SetPayload(kFieldPayload, absl::Cord(field));
  return status;
}

absl::Status SessionNotFoundError() {
  return WithReason(absl::StatusCode::kNotFound, reason::kSessionNotFound,
                    "Session non trouvée.");
}

absl::Status SessionForbiddenError() {
  return WithReason(absl::StatusCode::kPermissionDenied,
                    reason::kSessionForbidden,
                    "Session non autorisée : elle appartient à un autre "
                    "utilisateur.");
}

absl::Status NoCreditsError() {
  // Word for word the documented message (api-chat.md, 402).
  return WithReason(absl::StatusCode::kResourceExhausted, reason::kNoCredits,
                    "Vous avez épuisé vos crédits de chat. Passez à un "
                    "abonnement supérieur pour continuer.");
}

absl::Status AiUnavailableError() {
  return WithReason(absl::StatusCode::kUnavailable, reason::kAiUnavailable,
                    "Le coach IA est momentanément indisponible. Votre "
                    "message n'a pas été décompté : réessayez dans un "
                    "instant.");
}

absl::Status ContentFilteredError() {
  return WithReason(absl::StatusCode::kFailedPrecondition,
                    reason::kContentFiltered,
                    "Le coach ne peut pas répondre à ce message : il enfreint "
                    "les règles de contenu. Votre message n'a pas été "
                    "décompté ; reformulez-le avec respect.");
}

absl::Status CallerDeadlineError() {
  return WithReason(absl::StatusCode::kDeadlineExceeded,
                    reason::kDeadlineExceeded,
                    "Le coach n'a pas répondu à temps. Votre message n'a pas "
                    "été décompté : réessayez dans un instant.");
}

absl::Status CallerCancelledError() {
  return WithReason(absl::StatusCode::kCancelled, reason::kCancelled,
                    "Requête annulée ; votre message n'a pas été décompté.");
}

absl::Status AdminUnauthenticatedError() {
  return WithReason(absl::StatusCode::kUnauthenticated,
                    reason::kUnauthenticated,
                    "Jeton d'administration manquant ou invalide "
                    "(en-tête « authorization: Bearer <jeton> »).");
}

absl::Status AdminDisabledError() {
  return WithReason(absl::StatusCode::kPermissionDenied,
                    reason::kAdminDisabled,
                    "Les opérations d'administration sont désactivées : "
                    "aucun jeton d'administration n'est configuré.");
}

absl::Status InternalError() {
  return WithReason(absl::StatusCode::kInternal, reason::kInternal,
                    "Erreur serveur. Réessayez plus tard.");
}

absl::Status UnavailableError() {
  return WithReason(absl::StatusCode::kUnavailable, reason::kUnavailable,
                    "Service momentanément indisponible. Réessayez dans un "
                    "instant.");
}

std::string ReasonOf(const absl::Status& status) {
  return PayloadOf(status, kReasonPayload);
}

std::string FieldOf(const absl::Status& status) {
  return PayloadOf(status, kFieldPayload);
}

absl::Status ToPublicError(const absl::Status& status,
                           absl::string_view operation) {
  if (status.ok() || !ReasonOf(status).empty()) return status;
  LogError("%s failed: %s", operation, status.ToString());
  return status.code() == absl::StatusCode::kUnavailable ? UnavailableError()
                                                         : InternalError();
}

}  // namespace coach
