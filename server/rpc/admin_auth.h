// Admin RPCs are allowed with the metadata `authorization: Bearer <token>`
// (one such entry: a call carrying two is refused, see BearerTokenOf) when
// <token> is the configured admin token, or (COACH_AUTH=jwt with
// COACH_JWT_ADMIN_SCOPE set) a valid JWT carrying that scope. Neither
// configured: every admin call is refused (ADMIN_DISABLED).
#ifndef COACH_SERVER_RPC_ADMIN_AUTH_H_
#define COACH_SERVER_RPC_ADMIN_AUTH_H_

#include <grpcpp/server_context.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/auth/jwt_verifier.h"
#include "server/core/clock.h"

namespace coach {

struct AdminAccess {
  // Empty: no admin token.
  std::string token;
  // With `verifier`: a JWT carrying this scope is an admin; empty: none is.
  std::string jwt_scope;
  JwtVerifier* verifier = nullptr;  // null: COACH_AUTH=none
  const Clock* clock = nullptr;     // set with `verifier`
};

// OK, PERMISSION_DENIED (ADMIN_DISABLED) or UNAUTHENTICATED.
absl::Status AuthorizeAdmin(const grpc::ServerContextBase& context,
                            const AdminAccess& access);

}  // namespace coach

#endif  // COACH_SERVER_RPC_ADMIN_AUTH_H_
