// UserServiceImpl: coach.v1.UserService over gRPC. A thin adapter over
// core/Accounts; the admin RPCs check the admin token first.
#ifndef COACH_SERVER_RPC_USER_SERVICE_H_
#define COACH_SERVER_RPC_USER_SERVICE_H_

#include <string>

#include "coach/v1/user.grpc.pb.h"
#include "server/core/accounts.h"
#include "server/rpc/admin_auth.h"
#include "server/rpc/authenticator.h"
#include "server/rpc/callback.h"

namespace coach {

// Every RPC here is quick: each runs where `runner` says (callback.h):
// inline on gRPC's callback path with SQLite, on a pool with PostgreSQL.
class UserServiceImpl final : public v1::UserService::CallbackService {
 public:
  // `accounts` and `auth` (and what `admin` points to) must outlive this.
  UserServiceImpl(Accounts& accounts, const Authenticator& auth,
                  AdminAccess admin, CallRunner runner = CallRunner())
      : accounts_(accounts),
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

 private:
  grpc::Status DoSetPlan(const grpc::ServerContextBase& context,
                         const v1::SetPlanRequest& request,
                         v1::SetPlanResponse& response);
  grpc::Status DoGrantCredits(const grpc::ServerContextBase& context,
                              const v1::GrantCreditsRequest& request,
                              v1::GrantCreditsResponse& response);

  Accounts& accounts_;
  const Authenticator& auth_;
  const AdminAccess admin_;
  const CallRunner runner_;
};

}  // namespace coach

#endif  // COACH_SERVER_RPC_USER_SERVICE_H_
