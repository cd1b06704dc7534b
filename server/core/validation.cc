#include "server/core/validation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/text.h"
#include "server/core/errors.h"

namespace coach {
namespace {

// The French name of a field in messages: « userId ».
std::string Quoted(absl::string_view field) {
  return absl::StrCat("« ", field, " »");
}

absl::Status Required(absl::string_view field) {
  return InvalidArgumentError(
      field, absl::StrCat("Le champ ", Quoted(field), " est requis."));
}

absl::Status NotUtf8(absl::string_view field) {
  return InvalidArgumentError(
      field, absl::StrCat("Le champ ", Quoted(field),
                          " contient des caractères invalides (UTF-8 "
                          "attendu)."));
}

absl::Status TooLong(absl::string_view field, int max) {
  return InvalidArgumentError(
      field, absl::StrCat("Le champ ", Quoted(field), " dépasse ", max,
                          " caractères."));
}

// Checks a text field: UTF-8, not blank, bounded. Returns it trimmed.
absl::StatusOr<std::string> ValidateText(absl::string_view field,
                                         absl::string_view value, int max) {
  if (!IsValidUtf8(value)) return NotUtf8(field);
  const absl::string_view trimmed = TrimSpaces(value);
  if (trimmed.empty()) {
    return value.empty() ? Required(field)
                         : InvalidArgumentError(
                               field, absl::StrCat("Le champ ", Quoted(field),
                                                   " ne peut pas être vide."));
  }
  if (CountCodePoints(trimmed) > static_cast<size_t>(max)) {
    return TooLong(field, max);
  }
  return std::string(trimmed);
}

// Checks text people write (a message, a title): as ValidateText, and no
// control character but tab and newline (a NUL, an escape sequence).
// Format characters stay: emoji sequences are joined by U+200D.
absl::StatusOr<std::string> ValidateProse(absl::string_view field,
                                          absl::string_view value, int max) {
  COACH_ASSIGN_OR_RETURN(std::string text, ValidateText(field, value, max));
  if (HasControlCharacter(text, "\t\n\r")) {
    return InvalidArgumentError(
        field, absl::StrCat("Le champ ", Quoted(field),
                            " contient un caractère de contrôle (seuls la "
                            "tabulation et le retour à la ligne sont "
                            "acceptés)."));
  }
  return text;
}

}  // namespace

absl::Status ValidateUserId(absl::string_view user_id, const Limits& limits) {
  COACH_RETURN_IF_ERROR(
      ValidateText("userId", user_id, limits.max_user_id_length).status());
  // An id is compared byte for byte: " u1" must not pass for "u1" (another
  // user with fresh credits), nor carry hidden characters into logs.
  if (TrimSpaces(user_id).size() != user_id.size()) {
    return InvalidArgumentError(
        "userId",
        "Le champ « userId » ne doit ni commencer ni finir par un "
        "espace.");
  }
  // Nor may two ids that look alike differ by an invisible character
  // ("alice" + a zero-width joiner) or by how an accent is encoded ("e" +
  // U+0301 against "é"): such an id is refused, not normalised, so that no
  // two stored ids can ever become one.
  if (HasInvisibleCharacter(user_id)) {
    return InvalidArgumentError(
        "userId",
        "Le champ « userId » contient un caractère de contrôle ou "
        "invisible.");
  }
  if (!IsNfc(user_id)) {
    return InvalidArgumentError(
        "userId",
        "Le champ « userId » doit être en forme normalisée "
        "Unicode NFC (accents composés).");
  }
  return absl::OkStatus();
}

absl::Status ValidateOptionalUserId(absl::string_view user_id,
                                    const Limits& limits) {
  if (user_id.empty()) return absl::OkStatus();
  return ValidateUserId(user_id, limits);
}

absl::Status ValidateSessionId(absl::string_view session_id,
                               const Limits& limits) {
  return ValidateText("sessionId", session_id, limits.max_session_id_length)
      .status();
}

absl::StatusOr<std::string> ValidateMessage(absl::string_view message,
                                            const Limits& limits) {
  return ValidateProse("message", message, limits.max_message_length);
}

absl::StatusOr<std::string> ValidateTitle(absl::string_view title,
                                          const Limits& limits) {
  return ValidateProse("title", title, limits.max_title_length);
}

absl::StatusOr<int> ValidateHistoryLimit(std::optional<int> limit,
                                         const Limits& limits) {
  if (!limit.has_value()) return limits.history_default_limit;
  if (*limit <= 0) {
    return InvalidArgumentError(
        "limit", "Le paramètre « limit » doit être un entier positif.");
  }
  return std::min(*limit, limits.history_max_limit);
}

absl::Status ValidateIdempotencyKey(absl::string_view key,
                                    const Limits& limits) {
  constexpr absl::string_view kField = "Idempotency-Key";
  const bool printable = std::all_of(
      key.begin(), key.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
  if (key.empty() ||
      key.size() > static_cast<size_t>(limits.max_idempotency_key_length) ||
      !printable) {
    return InvalidArgumentError(kField,
                                absl::StrCat("L'en-tête ", Quoted(kField),
                                             " doit compter de "
                                             "1 à ",
                                             limits.max_idempotency_key_length,
                                             " caractères ASCII imprimables."));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ValidatePageSize(int page_size, int default_size,
                                     const Limits& limits) {
  if (page_size < 0) {
    return InvalidArgumentError(
        "pageSize",
        "Le paramètre « pageSize » doit être un entier positif ou nul.");
  }
  return std::min(page_size == 0 ? default_size : page_size,
                  limits.max_page_size);
}

}  // namespace coach
