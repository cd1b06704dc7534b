#include "server/rpc/admin_auth.h"

#include <openssl/crypto.h>

#include <algorithm>

#include "server/core/errors.h"
#include "server/rpc/authenticator.h"

namespace coach {
namespace {

// Constant time, so that response timing does not leak the token.
bool SameSecret(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() &&
         CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

absl::Status AuthorizeAdmin(const grpc::ServerContextBase& context,
                            const AdminAccess& access) {
  const bool by_scope = access.verifier != nullptr && !access.jwt_scope.empty();
  if (access.token.empty() && !by_scope) return AdminDisabledError();
  const std::optional<absl::string_view> token = BearerTokenOf(context);
  if (!token.has_value()) return AdminUnauthenticatedError();
  if (!access.token.empty() && SameSecret(*token, access.token)) {
    return absl::OkStatus();
  }
  if (by_scope) {
    absl::StatusOr<VerifiedToken> verified =
        access.verifier->Verify(*token, access.clock->Now());
    if (verified.ok() &&
        std::find(verified->scopes.begin(), verified->scopes.end(),
                  access.jwt_scope) != verified->scopes.end()) {
      return absl::OkStatus();
    }
  }
  return AdminUnauthenticatedError();
}

}  // namespace coach
