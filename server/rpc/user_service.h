// UserServiceImpl: coach.v1.UserService over gRPC. A thin adapter over
// core/Accounts and core/UserData; the admin RPCs check the admin token
// first. A user's usage, export and erasure are the caller's own (as for
// stats: Authenticator::ActingUser), or any user's with the admin token.
#ifndef COACH_SERVER_RPC_USER_SERVICE_H_
#define COACH_SERVER_RPC_USER_SERVICE_H_

#include <string>

#include "coach/v1/user.grpc.pb.h"
#include "google/api/httpbody.pb.h"
#include "server/core/accounts.h"
#include "server/core/user_data.h"
#include "server/rpc/admin_auth.h"
#include "server/rpc/authenticator.h"
#include "server/rpc/callback.h"

namespace coach {

// Every RPC here is quick: each runs where `runner` says (callback.h):
// inline on gRPC's callback path with SQLite, on a pool with PostgreSQL.
class UserServiceImpl final : public v1::UserService::CallbackService {
 public:
  // `accounts`, `user_data` and `auth` (and what `admin` points to) must
  // outlive this.
  UserServiceImpl(Accounts& accounts, UserData& user_data,
                  const Authenticator& auth, AdminAccess admin,
                  CallRunner runner = CallRunner())
      : accounts_(accounts),
        user_data_(user_data),
        auth_(auth),
        admin_(std::move(admin)),
        runner_(runner) {}

  grpc::ServerUnaryReactor* GetUserStats(
      grpc::CallbackServerContext* context,
      const v1::GetUserStatsRequest* request,
      v1::GetUserStatsResponse* response) override;
  grpc::ServerUnaryReactor* SetPlan(grpc::CallbackServerContext* context,
                                    const v1::SetPlanRequest* request,
                                    v1::SetPlanResponse* response) override;
  grpc::ServerUnaryReactor* GrantCredits(
      grpc::CallbackServerContext* context,
      const v1::GrantCreditsRequest* request,
      v1::GrantCreditsResponse* response) override;
  grpc::ServerUnaryReactor* GetUsage(grpc::CallbackServerContext* context,
                                     const v1::GetUsageRequest* request,
                                     v1::GetUsageResponse* response) override;
  grpc::ServerUnaryReactor* ListUsage(grpc::CallbackServerContext* context,
                                      const v1::ListUsageRequest* request,
                                      v1::ListUsageResponse* response) override;
  // Streams the export's pieces, one write at a time: the next piece is read
  // (on the runner) only once the previous one is sent.
  grpc::ServerWriteReactor<google::api::HttpBody>* ExportUserData(
      grpc::CallbackServerContext* context,
      const v1::ExportUserDataRequest* request) override;
  grpc::ServerUnaryReactor* DeleteUser(
      grpc::CallbackServerContext* context,
      const v1::DeleteUserRequest* request,
      v1::DeleteUserResponse* response) override;

 private:
  // The user a call about `requested` acts for: any with the admin token,
  // otherwise as Authenticator::ActingUser.
  absl::StatusOr<std::string> OwnOrAdmin(const grpc::ServerContextBase& context,
                                         absl::string_view requested) const;

  grpc::Status DoSetPlan(const grpc::ServerContextBase& context,
                         const v1::SetPlanRequest& request,
                         v1::SetPlanResponse& response);
  grpc::Status DoGrantCredits(const grpc::ServerContextBase& context,
                              const v1::GrantCreditsRequest& request,
                              v1::GrantCreditsResponse& response);

  Accounts& accounts_;
  UserData& user_data_;
  const Authenticator& auth_;
  const AdminAccess admin_;
  const CallRunner runner_;
};

}  // namespace coach

#endif  // COACH_SERVER_RPC_USER_SERVICE_H_
