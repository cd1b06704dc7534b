// How both engines write the records' enums and credit rules into columns:
// one spelling, so that a database reads the same whichever engine wrote it.
#ifndef COACH_STORAGE_RECORD_COLUMNS_H_
#define COACH_STORAGE_RECORD_COLUMNS_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "storage/records.h"

namespace coach {

inline const char* PlanName(Plan plan) {
  switch (plan) {
    case Plan::kFree: return "FREE";
    case Plan::kBasic: return "BASIC";
    case Plan::kPremium: return "PREMIUM";
  }
  return "FREE";
}

inline Plan PlanFromName(absl::string_view name) {
  if (name == "BASIC") return Plan::kBasic;
  if (name == "PREMIUM") return Plan::kPremium;
  return Plan::kFree;
}

inline const char* RoleName(Role role) {
  return role == Role::kAssistant ? "ASSISTANT" : "USER";
}

inline Role RoleFromName(absl::string_view name) {
  return name == "ASSISTANT" ? Role::kAssistant : Role::kUser;
}

// The credits column of a user on `plan` after a refill: its allowance, 0 on
// an unlimited plan (where the column means nothing).
inline int32_t RefilledCredits(const CreditTerms& terms, Plan plan) {
  return terms.AllowanceOf(plan).value_or(0);
}

}  // namespace coach

#endif  // COACH_STORAGE_RECORD_COLUMNS_H_
