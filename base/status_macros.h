// Early-return helpers for absl::Status, as Abseil uses internally (its
// public headers do not export them).
#ifndef COACH_BASE_STATUS_MACROS_H_
#define COACH_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"

// Returns from the enclosing function if `expr` (an absl::Status) is an error.
#define COACH_RETURN_IF_ERROR(expr)                                   \
  do {                                                                \
    if (::absl::Status coach_status_ = (expr); !coach_status_.ok()) { \
      return coach_status_;                                           \
    }                                                                 \
  } while (false)

#define COACH_STATUS_MACROS_CONCAT_INNER(a, b) a##b
#define COACH_STATUS_MACROS_CONCAT(a, b) COACH_STATUS_MACROS_CONCAT_INNER(a, b)

// `COACH_ASSIGN_OR_RETURN(auto x, StatusOrExpr());` declares `x` from the
// value, or returns the error from the enclosing function.
#define COACH_ASSIGN_OR_RETURN(lhs, expr) \
  COACH_ASSIGN_OR_RETURN_IMPL(            \
      COACH_STATUS_MACROS_CONCAT(coach_statusor_, __LINE__), lhs, expr)
#define COACH_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return statusor.status();          \
  lhs = *std::move(statusor)

#endif  // COACH_BASE_STATUS_MACROS_H_
