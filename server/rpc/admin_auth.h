// Admin RPCs are allowed only with the metadata
// `authorization: Bearer <token>` equal to the configured admin token.
// No configured token: every admin call is refused (ADMIN_DISABLED).
#ifndef COACH_SERVER_RPC_ADMIN_AUTH_H_
#define COACH_SERVER_RPC_ADMIN_AUTH_H_

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace coach {

// OK, PERMISSION_DENIED (ADMIN_DISABLED) or UNAUTHENTICATED.
absl::Status AuthorizeAdmin(const grpc::ServerContextBase& context,
                            absl::string_view admin_token);

}  // namespace coach

#endif  // COACH_SERVER_RPC_ADMIN_AUTH_H_
