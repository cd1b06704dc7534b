// UserServiceImpl: coach.v1.UserService over gRPC. A thin adapter over
// core/Accounts; the admin RPCs check the admin token first.
#ifndef COACH_SERVER_RPC_USER_SERVICE_H_
#define COACH_SERVER_RPC_USER_SERVICE_H_

#include <string>

#include "coach/v1/user.grpc.pb.h"
#include "server/core/accounts.h"

namespace coach {

class UserServiceImpl final : public v1::UserService::Service {
 public:
  // `admin_token` empty: the admin RPCs are refused.
  UserServiceImpl(Accounts& accounts, std::string admin_token)
      : accounts_(accounts), admin_token_(std::move(admin_token)) {}

  grpc::Status GetUserStats(grpc::ServerContext* context,
                            const v1::GetUserStatsRequest* request,
                            v1::GetUserStatsResponse* response) override;
  grpc::Status SetPlan(grpc::ServerContext* context,
                       const v1::SetPlanRequest* request,
                       v1::SetPlanResponse* response) override;
  grpc::Status GrantCredits(grpc::ServerContext* context,
                            const v1::GrantCreditsRequest* request,
                            v1::GrantCreditsResponse* response) override;

 private:
  Accounts& accounts_;
  const std::string admin_token_;
};

}  // namespace coach

#endif  // COACH_SERVER_RPC_USER_SERVICE_H_
