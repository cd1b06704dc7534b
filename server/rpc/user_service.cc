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

absl::StatusOr<std::string> UserServiceImpl::OwnOrAdmin(
    const grpc::ServerContextBase& context, absl::string_view requested) const {
  if (AuthorizeAdmin(context, admin_).ok()) return std::string(requested);
  return auth_.ActingUser(context, requested);
}

grpc::ServerUnaryReactor* UserServiceImpl::GetUsage(
    grpc::CallbackServerContext* context, const v1::GetUsageRequest* request,
    v1::GetUsageResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    auto user = OwnOrAdmin(*context, request->user_id());
    if (!user.ok()) return ToGrpcStatus(user.status());
    auto usage = user_data_.GetUsage(*user, request->month());
    if (!usage.ok()) return ToGrpcStatus(usage.status());
    ToProto(*usage, response->mutable_usage());
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* UserServiceImpl::ListUsage(
    grpc::CallbackServerContext* context, const v1::ListUsageRequest* request,
    v1::ListUsageResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    if (absl::Status auth = AuthorizeAdmin(*context, admin_); !auth.ok()) {
      return ToGrpcStatus(auth);
    }
    auto list = user_data_.ListUsage(
        request->month(), PageRequest{.page_size = request->page_size(),
                                      .page_token = request->page_token()});
    if (!list.ok()) return ToGrpcStatus(list.status());
    for (const UserUsageRecord& user : list->users) {
      v1::UserUsage* out = response->add_users();
      out->set_user_id(user.user_id);
      ToProto(user.usage, out->mutable_usage());
    }
    response->set_next_page_token(list->next_page_token);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* UserServiceImpl::DeleteUser(
    grpc::CallbackServerContext* context, const v1::DeleteUserRequest* request,
    v1::DeleteUserResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    auto user = OwnOrAdmin(*context, request->user_id());
    if (!user.ok()) return ToGrpcStatus(user.status());
    auto erased = user_data_.Erase(*user);
    if (!erased.ok()) return ToGrpcStatus(erased.status());
    response->set_deleted_sessions(erased->sessions);
    response->set_deleted_messages(erased->messages);
    return grpc::Status::OK;
  });
}

namespace {

// One export: reads a piece (on the runner), writes it, and reads the next
// only when the write is done, so a call holds one piece at a time however
// long the user's history. Deletes itself when gRPC is done with it.
class ExportReactor final
    : public grpc::ServerWriteReactor<google::api::HttpBody> {
 public:
  ExportReactor(
      const CallRunner& runner,
      absl::AnyInvocable<absl::StatusOr<std::unique_ptr<UserExport>>()> open)
      : runner_(runner) {
    runner_.Run([this, open = std::move(open)]() mutable {
      absl::StatusOr<std::unique_ptr<UserExport>> opened = open();
      if (!opened.ok()) return Finish(ToGrpcStatus(opened.status()));
      export_ = *std::move(opened);
      WriteNext();
    });
  }

  void OnWriteDone(bool ok) override {
    // Not ok: the call is over (cancelled, the client left).
    if (!ok) return Finish(grpc::Status::CANCELLED);
    runner_.Run([this] { WriteNext(); });
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    absl::StatusOr<std::optional<std::string>> piece = export_->Next();
    if (!piece.ok()) return Finish(ToGrpcStatus(piece.status()));
    if (!piece->has_value()) return Finish(grpc::Status::OK);
    body_.set_content_type("application/json");
    body_.set_data(**std::move(piece));
    StartWrite(&body_);
  }

  const CallRunner runner_;
  std::unique_ptr<UserExport> export_;
  google::api::HttpBody body_;
};

}  // namespace

grpc::ServerWriteReactor<google::api::HttpBody>*
UserServiceImpl::ExportUserData(grpc::CallbackServerContext* context,
                                const v1::ExportUserDataRequest* request) {
  return new ExportReactor(
      runner_,
      [this, context,
       request]() -> absl::StatusOr<std::unique_ptr<UserExport>> {
        auto user = OwnOrAdmin(*context, request->user_id());
        if (!user.ok()) return user.status();
        return user_data_.Export(*user);
      });
}

}  // namespace coach
