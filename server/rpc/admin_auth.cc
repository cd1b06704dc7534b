#include "server/rpc/admin_auth.h"

#include <openssl/crypto.h>

#include "absl/strings/match.h"
#include "server/core/errors.h"

namespace coach {
namespace {

constexpr absl::string_view kAuthorizationHeader = "authorization";
constexpr absl::string_view kBearerPrefix = "Bearer ";

// Constant time, so that response timing does not leak the token.
bool SameSecret(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

absl::Status AuthorizeAdmin(const grpc::ServerContextBase& context,
                            absl::string_view admin_token) {
  if (admin_token.empty()) return AdminDisabledError();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(std::string(kAuthorizationHeader));
  if (it == metadata.end()) return AdminUnauthenticatedError();
  const absl::string_view value(it->second.data(), it->second.size());
  if (!absl::StartsWith(value, kBearerPrefix) ||
      !SameSecret(value.substr(kBearerPrefix.size()), admin_token)) {
    return AdminUnauthenticatedError();
  }
  return absl::OkStatus();
}

}  // namespace coach
