#include "server/core/identity.h"

#include "server/core/errors.h"

namespace coach {

absl::StatusOr<std::string> ActingUser(const Principal& principal,
                                       absl::string_view requested) {
  if (!principal.user_id.has_value()) return std::string(requested);
  if (!requested.empty() && requested != *principal.user_id) {
    return UserForbiddenError();
  }
  return *principal.user_id;
}

}  // namespace coach
