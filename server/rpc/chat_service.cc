#include "server/rpc/chat_service.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/rpc/callback.h"
#include "server/rpc/grpc_status.h"
#include "server/rpc/proto_convert.h"

namespace coach {
namespace {

// The send's retry key, as the client's metadata carries it (coach-proxy
// forwards REST's Idempotency-Key header there); absent: none.
constexpr char kIdempotencyKeyMetadata[] = "idempotency-key";
// Said of a send answered with an idempotency key's stored response.
constexpr char kReplayedMetadata[] = "idempotent-replayed";

std::optional<std::string> IdempotencyKeyOf(
    const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find(kIdempotencyKeyMetadata);
  if (found == metadata.end()) return std::nullopt;
  return std::string(found->second.data(), found->second.size());
}

// Before the answer's first byte: tells a replayed send's caller so, in the
// initial metadata and (for an error without initial metadata of its own)
// the trailing.
void MarkIfReplayed(const absl::StatusOr<SendResult>& sent,
                    grpc::CallbackServerContext& context) {
  if (sent.ok() ? !sent->replayed : !IsReplayed(sent.status())) return;
  context.AddInitialMetadata(kReplayedMetadata, "true");
  context.AddTrailingMetadata(kReplayedMetadata, "true");
}

template <typename Request>
PageRequest PageOf(const Request& request) {
  return PageRequest{.page_size = request.page_size(),
                     .page_token = request.page_token()};
}

void FillResponse(const SendResult& sent, v1::SendMessageResponse& response) {
  response.set_session_id(sent.session_id);
  ToProto(sent.user_message, response.mutable_user_message());
  ToProto(sent.assistant_message, response.mutable_assistant_message());
  if (sent.remaining_credits.has_value()) {
    response.set_remaining_credits(*sent.remaining_credits);
  }
}

grpc::Status ToSendMessageResponse(const absl::StatusOr<SendResult>& sent,
                                   v1::SendMessageResponse& response) {
  if (!sent.ok()) return ToGrpcStatus(sent.status());
  FillResponse(*sent, response);
  return grpc::Status::OK;
}

// A send's reactor: finished by the domain's callback, and passing the
// client's cancel (or lost connection) on to the domain, which stops the
// coach rather than wait for a reply nobody will read.
class SendReactor final : public grpc::ServerUnaryReactor {
 public:
  const std::shared_ptr<Cancellation>& cancellation() const {
    return cancellation_;
  }
  void OnCancel() override { cancellation_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  const std::shared_ptr<Cancellation> cancellation_ =
      std::make_shared<Cancellation>();
};

// A stream's reactor. The domain gives pieces (any thread, the coach's event
// loop included) and then the outcome; this writes them in order, one write
// in flight at a time (gRPC's rule for a reactor), joining the pieces that
// wait into one `delta`, and finishes once the last write is done.
//
// The lock only decides; the gRPC calls are made after it is released (a
// reaction that gRPC ran inline would otherwise take it again), and Finish is
// the last thing a thread does here: OnDone may delete the reactor at once.
class StreamReactor final
    : public grpc::ServerWriteReactor<v1::StreamMessageResponse> {
 public:
  const std::shared_ptr<Cancellation>& cancellation() const {
    return cancellation_;
  }

  // A piece of the reply: written now, or joined to the next write.
  void Piece(absl::string_view piece) {
    mu_.Lock();
    pending_.append(piece.data(), piece.size());
    Next();
  }

  // The domain's outcome: written after the pieces that wait.
  void Done(absl::StatusOr<SendResult> sent) {
    mu_.Lock();
    outcome_ = std::move(sent);
    Next();
  }

  void OnWriteDone(bool ok) override {
    mu_.Lock();
    writing_ = false;
    if (!ok) {
      // The stream is broken (the client left): nothing more is written, and
      // the coach stops (OnCancel does the same; whichever comes first).
      broken_ = true;
      cancellation_->Cancel();
    }
    Next();
  }
  void OnCancel() override { cancellation_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  // Called with mu_ held; releases it, then starts what is due, if anything.
  void Next() ABSL_UNLOCK_FUNCTION(mu_) {
    if (writing_ || finished_) {
      mu_.Unlock();
      return;
    }
    if (!pending_.empty() && !broken_) {
      message_.Clear();
      message_.set_delta(std::move(pending_));
      pending_.clear();
      writing_ = true;  // nothing else is started until OnWriteDone
      mu_.Unlock();
      StartWrite(&message_);
      return;
    }
    if (!outcome_.has_value()) {  // more pieces to come
      mu_.Unlock();
      return;
    }
    finished_ = true;
    if (outcome_->ok() && !broken_) {
      message_.Clear();
      FillResponse(**outcome_, *message_.mutable_reply());
      mu_.Unlock();
      StartWriteAndFinish(&message_, grpc::WriteOptions(), grpc::Status::OK);
      return;
    }
    const grpc::Status status =
        outcome_->ok()
            ? grpc::Status(grpc::StatusCode::CANCELLED, "stream broken")
            : ToGrpcStatus(outcome_->status());
    mu_.Unlock();
    Finish(status);
  }

  const std::shared_ptr<Cancellation> cancellation_ =
      std::make_shared<Cancellation>();
  absl::Mutex mu_;
  // Pieces given and not yet written.
  std::string pending_ ABSL_GUARDED_BY(mu_);
  // The message being written, which gRPC reads until OnWriteDone: written
  // only while writing_ is false.
  v1::StreamMessageResponse message_;
  std::optional<absl::StatusOr<SendResult>> outcome_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* ChatServiceImpl::ListSessions(
    grpc::CallbackServerContext* context,
    const v1::ListSessionsRequest* request,
    v1::ListSessionsResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    return DoListSessions(*context, *request, *response);
  });
}

grpc::Status ChatServiceImpl::DoListSessions(
    const grpc::ServerContextBase& context,
    const v1::ListSessionsRequest& request,
    v1::ListSessionsResponse& response) {
  auto user = auth_.ActingUser(context, request.user_id());
  if (!user.ok()) return ToGrpcStatus(user.status());
  auto sessions = chat_.ListSessions(*user, PageOf(request));
  if (!sessions.ok()) return ToGrpcStatus(sessions.status());
  for (const SessionRecord& session : sessions->sessions) {
    ToProto(session, response.add_sessions());
  }
  if (!sessions->next_page_token.empty()) {
    response.set_next_page_token(sessions->next_page_token);
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ChatServiceImpl::CreateSession(
    grpc::CallbackServerContext* context,
    const v1::CreateSessionRequest* request,
    v1::CreateSessionResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    return DoCreateSession(*context, *request, *response);
  });
}

grpc::Status ChatServiceImpl::DoCreateSession(
    const grpc::ServerContextBase& context,
    const v1::CreateSessionRequest& request,
    v1::CreateSessionResponse& response) {
  auto user = auth_.ActingUser(context, request.user_id());
  if (!user.ok()) return ToGrpcStatus(user.status());
  std::optional<std::string> title;
  if (request.has_title()) title = request.title();
  auto session = chat_.CreateSession(*user, title);
  if (!session.ok()) return ToGrpcStatus(session.status());
  ToProto(*session, response.mutable_session());
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ChatServiceImpl::GetSession(
    grpc::CallbackServerContext* context, const v1::GetSessionRequest* request,
    v1::GetSessionResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    return DoGetSession(*context, *request, *response);
  });
}

grpc::Status ChatServiceImpl::DoGetSession(
    const grpc::ServerContextBase& context,
    const v1::GetSessionRequest& request, v1::GetSessionResponse& response) {
  auto user = auth_.ActingUser(context, request.user_id());
  if (!user.ok()) return ToGrpcStatus(user.status());
  auto found = chat_.GetSession(request.session_id(), *user, PageOf(request));
  if (!found.ok()) return ToGrpcStatus(found.status());
  v1::Session* session = response.mutable_session();
  ToProto(found->session, session);
  for (const MessageRecord& message : found->messages) {
    ToProto(message, session->add_messages());
  }
  if (!found->next_page_token.empty()) {
    response.set_next_page_token(found->next_page_token);
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ChatServiceImpl::UpdateSession(
    grpc::CallbackServerContext* context,
    const v1::UpdateSessionRequest* request,
    v1::UpdateSessionResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    return DoUpdateSession(*context, *request, *response);
  });
}

grpc::Status ChatServiceImpl::DoUpdateSession(
    const grpc::ServerContextBase& context,
    const v1::UpdateSessionRequest& request,
    v1::UpdateSessionResponse& response) {
  auto user = auth_.ActingUser(context, request.user_id());
  if (!user.ok()) return ToGrpcStatus(user.status());
  auto renamed =
      chat_.RenameSession(request.session_id(), *user, request.title());
  if (!renamed.ok()) return ToGrpcStatus(renamed.status());
  v1::Session* session = response.mutable_session();
  ToProto(renamed->session, session);
  for (const MessageRecord& message : renamed->messages) {
    ToProto(message, session->add_messages());
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ChatServiceImpl::DeleteSession(
    grpc::CallbackServerContext* context,
    const v1::DeleteSessionRequest* request,
    v1::DeleteSessionResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    return DoDeleteSession(*context, *request, *response);
  });
}

grpc::Status ChatServiceImpl::DoDeleteSession(
    const grpc::ServerContextBase& context,
    const v1::DeleteSessionRequest& request,
    v1::DeleteSessionResponse& response) {
  auto user = auth_.ActingUser(context, request.user_id());
  if (!user.ok()) return ToGrpcStatus(user.status());
  absl::Status deleted = chat_.DeleteSession(request.session_id(), *user);
  if (!deleted.ok()) return ToGrpcStatus(deleted);
  response.set_success(true);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ChatServiceImpl::SendMessage(
    grpc::CallbackServerContext* context, const v1::SendMessageRequest* request,
    v1::SendMessageResponse* response) {
  // gRPC keeps the context, request and response alive until the reactor's
  // OnDone, after Finish, which the domain's callback calls: at once, or
  // when the coach's reply is stored.
  auto* reactor = new SendReactor();
  runner_.Run([this, context, request, response, reactor] {
    auto user = auth_.ActingUser(*context, request->user_id());
    if (!user.ok()) {
      reactor->Finish(ToGrpcStatus(user.status()));
      return;
    }
    // The domain checks that the caller still waits before charging.
    Caller caller{.deadline = absl::FromChrono(context->deadline()),
                  .cancellation = reactor->cancellation(),
                  .idempotency_key = IdempotencyKeyOf(*context)};
    chat_.SendMessage(
        *user, request->session_id(), request->message(), std::move(caller),
        [reactor, context, response](absl::StatusOr<SendResult> sent) {
          MarkIfReplayed(sent, *context);
          reactor->Finish(ToSendMessageResponse(sent, *response));
        });
  });
  return reactor;
}

grpc::ServerWriteReactor<v1::StreamMessageResponse>*
ChatServiceImpl::StreamMessage(grpc::CallbackServerContext* context,
                               const v1::SendMessageRequest* request) {
  // Deleted in its OnDone, after the finish that the domain's callback
  // triggers (at once for a send refused early: a plain error status, no
  // message written). gRPC keeps the request alive until then.
  auto* reactor = new StreamReactor();
  runner_.Run([this, context, request, reactor] {
    auto user = auth_.ActingUser(*context, request->user_id());
    if (!user.ok()) {
      reactor->Done(user.status());
      return;
    }
    Caller caller{.deadline = absl::FromChrono(context->deadline()),
                  .cancellation = reactor->cancellation(),
                  .idempotency_key = IdempotencyKeyOf(*context)};
    chat_.StreamMessage(
        *user, request->session_id(), request->message(), std::move(caller),
        [reactor](absl::string_view piece) { reactor->Piece(piece); },
        [reactor, context](absl::StatusOr<SendResult> sent) {
          // A replay has no delta: nothing was written before this.
          MarkIfReplayed(sent, *context);
          reactor->Done(std::move(sent));
        });
  });
  return reactor;
}

grpc::ServerUnaryReactor* ChatServiceImpl::GetHistory(
    grpc::CallbackServerContext* context, const v1::GetHistoryRequest* request,
    v1::GetHistoryResponse* response) {
  return runner_.Answer(context, [this, context, request, response] {
    return DoGetHistory(*context, *request, *response);
  });
}

grpc::Status ChatServiceImpl::DoGetHistory(
    const grpc::ServerContextBase& context,
    const v1::GetHistoryRequest& request, v1::GetHistoryResponse& response) {
  auto user = auth_.ActingUser(context, request.user_id());
  if (!user.ok()) return ToGrpcStatus(user.status());
  std::optional<int> limit;
  if (request.has_limit()) limit = request.limit();
  auto history = chat_.GetHistory(*user, limit, PageOf(request));
  if (!history.ok()) return ToGrpcStatus(history.status());
  if (!history->next_page_token.empty()) {
    response.set_next_page_token(history->next_page_token);
  }
  for (const SessionRecord& session : history->sessions) {
    ToProto(session, response.add_history());
  }
  v1::HistoryStats* stats = response.mutable_stats();
  stats->set_total_sessions(history->totals.sessions);
  stats->set_total_messages(history->totals.messages);
  return grpc::Status::OK;
}

}  // namespace coach
