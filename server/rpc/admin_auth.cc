#include "server/rpc/admin_auth.h"

#include <openssl/crypto.h>

#include "server/core/errors.h"
#include "server/rpc/authenticator.h"

namespace coach {
namespace {

// Constant time, so that response timing does not leak the token.
bool SameSecret(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

absl::Status AuthorizeAdmin(const grpc::ServerContextBase& context,
                            absl::string_view admin_token) {
  if (admin_token.empty()) return AdminDisabledError();
  const std::optional<absl::string_view> token = BearerTokenOf(context);
  if (!token.has_value() || !SameSecret(*token, admin_token)) {
    return AdminUnauthenticatedError();
  }
  return absl::OkStatus();
}

}  // namespace coach
