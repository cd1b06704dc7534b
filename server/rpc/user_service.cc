#include "server/rpc/user_service.h"

#include "server/core/errors.h"
#include "server/rpc/admin_auth.h"
#include "server/rpc/callback.h"
#include "server/rpc/grpc_status.h"
#include "server/rpc/proto_convert.h"

namespace coach {

grpc::ServerUnaryReactor* UserServiceImpl::GetUserStats(
    grpc::CallbackServerContext* context,
    const v1::GetUserStatsRequest* request,
    v1::GetUserStatsResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    auto user = auth_.ActingUser(*context, request->user_id());
    if (!user.ok()) return ToGrpcStatus(user.status());
    auto stats = accounts_.GetUserStats(*user);
    if (!stats.ok()) return ToGrpcStatus(stats.status());
    ToProto(*stats, response->mutable_stats());
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* UserServiceImpl::SetPlan(
    grpc::CallbackServerContext* context, const v1::SetPlanRequest* request,
    v1::SetPlanResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    return DoSetPlan(*context, *request, *response);
  });
}

grpc::Status UserServiceImpl::DoSetPlan(const grpc::ServerContextBase& context,
                                        const v1::SetPlanRequest& request,
                                        v1::SetPlanResponse& response) {
  if (absl::Status auth = AuthorizeAdmin(context, admin_); !auth.ok()) {
    return ToGrpcStatus(auth);
  }
  std::optional<Plan> plan = FromProto(request.plan());
  if (!plan.has_value()) {
    return ToGrpcStatus(InvalidArgumentError(
        "plan", "Le champ « plan » doit valoir FREE, BASIC ou PREMIUM."));
  }
  auto stats = accounts_.SetPlan(request.user_id(), *plan);
  if (!stats.ok()) return ToGrpcStatus(stats.status());
  ToProto(*stats, response.mutable_stats());
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* UserServiceImpl::GrantCredits(
    grpc::CallbackServerContext* context,
    const v1::GrantCreditsRequest* request,
    v1::GrantCreditsResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    return DoGrantCredits(*context, *request, *response);
  });
}

grpc::Status UserServiceImpl::DoGrantCredits(
    const grpc::ServerContextBase& context,
    const v1::GrantCreditsRequest& request,
    v1::GrantCreditsResponse& response) {
  if (absl::Status auth = AuthorizeAdmin(context, admin_); !auth.ok()) {
    return ToGrpcStatus(auth);
  }
  auto stats = accounts_.GrantCredits(request.user_id(), request.credits());
  if (!stats.ok()) return ToGrpcStatus(stats.status());
  ToProto(*stats, response.mutable_stats());
  return grpc::Status::OK;
}

}  // namespace coach
