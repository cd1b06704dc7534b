// Authenticator: who calls a public RPC, from its `authorization` metadata,
// and which user the call acts for (core's ActingUser rule).
//
// Without a verifier (COACH_AUTH=none) nothing is proven: the request's
// userId is taken on trust, as before authentication existed. With one
// (COACH_AUTH=jwt), exactly one `authorization: Bearer <JWT>` entry is
// required and verified; anything else, two `authorization` entries
// included, is UNAUTHENTICATED, and the refusal's detail (never the token)
// goes to the log.
//
// Thread-safe.
#ifndef COACH_SERVER_RPC_AUTHENTICATOR_H_
#define COACH_SERVER_RPC_AUTHENTICATOR_H_

#include <grpcpp/server_context.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/jwt_verifier.h"
#include "server/core/clock.h"
#include "server/core/identity.h"

namespace coach {

// The credentials of `authorization: Bearer <credentials>` (the scheme in
// any case, RFC 6750); empty if blank. nullopt without such metadata, and
// when the call carries more than one `authorization` entry: which of them
// counts would depend on who reads them (the first, the last), so none does
// (RFC 6750 §3.1 makes a repeated credential an invalid request).
std::optional<absl::string_view> BearerTokenOf(
    const grpc::ServerContextBase& context);

class Authenticator {
 public:
  // `verifier` null: no authentication. Both must outlive this.
  Authenticator(JwtVerifier* verifier, const Clock& clock)
      : verifier_(verifier), clock_(clock) {}

  // The user a call acts for, from its metadata and the userId it names
  // (empty: none): UNAUTHENTICATED or USER_FORBIDDEN when it may not.
  absl::StatusOr<std::string> ActingUser(
      const grpc::ServerContextBase& context,
      absl::string_view requested_user_id) const;

 private:
  absl::StatusOr<Principal> Authenticate(
      const grpc::ServerContextBase& context) const;

  JwtVerifier* const verifier_;
  const Clock& clock_;
};

}  // namespace coach

#endif  // COACH_SERVER_RPC_AUTHENTICATOR_H_
