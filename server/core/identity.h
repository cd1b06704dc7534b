// Who a request comes from, and which user it may act for: the one rule of
// identity, applied by the adapters to every public call before the rules
// of chat.h and accounts.h run.
#ifndef COACH_SERVER_CORE_IDENTITY_H_
#define COACH_SERVER_CORE_IDENTITY_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace coach {

// What authentication proved about the caller.
struct Principal {
  // The user a verified token names; nullopt when authentication is off
  // (COACH_AUTH=none), where a request's own userId is taken on trust.
  std::optional<std::string> user_id;
};

// The user a request acts for: its `requested` userId (empty: none given).
// With a proven user, an empty userId means that user, and any other
// userId is USER_FORBIDDEN: so every owned object is checked against the
// token's user. Without one, `requested` is returned as given (today's
// behaviour: the session RPCs then accept no userId at all).
absl::StatusOr<std::string> ActingUser(const Principal& principal,
                                       absl::string_view requested);

}  // namespace coach

#endif  // COACH_SERVER_CORE_IDENTITY_H_
