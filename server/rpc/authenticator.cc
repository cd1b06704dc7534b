#include "server/rpc/authenticator.h"

#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "base/log.h"
#include "server/core/errors.h"

namespace coach {

std::optional<absl::string_view> BearerTokenOf(
    const grpc::ServerContextBase& context) {
  static constexpr absl::string_view kScheme = "bearer ";
  const auto& metadata = context.client_metadata();
  const auto [it, end] = metadata.equal_range("authorization");
  if (it == end || std::next(it) != end) return std::nullopt;
  const absl::string_view value(it->second.data(), it->second.size());
  if (!absl::StartsWithIgnoreCase(value, kScheme)) return std::nullopt;
  return absl::StripAsciiWhitespace(value.substr(kScheme.size()));
}

absl::StatusOr<Principal> Authenticator::Authenticate(
    const grpc::ServerContextBase& context) const {
  if (verifier_ == nullptr) return Principal{};
  const size_t credentials = context.client_metadata().count("authorization");
  if (credentials > 1) {
    LogInfo("refused call: %d authorization entries (one is expected)",
            static_cast<int>(credentials));
    return UnauthenticatedError(/*token_given=*/true);
  }
  const bool any_credentials = credentials > 0;
  const std::optional<absl::string_view> token = BearerTokenOf(context);
  if (!token.has_value() || token->empty()) {
    return UnauthenticatedError(/*token_given=*/any_credentials);
  }
  absl::StatusOr<VerifiedToken> verified =
      verifier_->Verify(*token, clock_.Now());
  if (!verified.ok()) {
    LogInfo("refused token: %s", verified.status().message());
    return UnauthenticatedError(/*token_given=*/true);
  }
  return Principal{.user_id = std::move(verified->user_id)};
}

absl::StatusOr<std::string> Authenticator::ActingUser(
    const grpc::ServerContextBase& context,
    absl::string_view requested_user_id) const {
  absl::StatusOr<Principal> principal = Authenticate(context);
  if (!principal.ok()) return principal.status();
  return coach::ActingUser(*principal, requested_user_id);
}

}  // namespace coach
