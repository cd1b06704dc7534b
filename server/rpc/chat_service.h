// ChatServiceImpl: coach.v1.ChatService over gRPC. A thin adapter: unpacks
// the request, calls core/Chat, packs the reply or the error.
//
// Threading: the quick RPCs (reads, renames, deletes) run where `runner`
// says (callback.h). With SQLite, on gRPC's callback path, inline where the
// request was read — measured 30 % more GetUserStats per second than the
// sync server's thread hand-off; with PostgreSQL, on a pool, so that database
// round trips do not hold gRPC's few threads.
// SendMessage starts the same way and finishes when the domain calls back:
// at once with the offline coach, when the reply is stored with the AI (whose
// client is asynchronous: a waiting send holds no thread). Where the storage
// calls of each step run is chat.h's rule.
//
// StreamMessage is SendMessage with a ServerWriteReactor: the pieces the
// domain gives (Chat::StreamMessage) are written as `delta` events, one
// write in flight at a time; pieces that come meanwhile are joined into the
// next write, so a slow reader costs at most the reply's text in memory, and
// the coach never waits for the network. Then the `reply` event and OK, or
// the error status (with its ErrorInfo, as SendMessage's). The client's
// cancel (or lost connection) stops the coach at once.
//
// Both sends read the `idempotency-key` metadata (Caller::idempotency_key,
// chat.h) and answer a replay with `idempotent-replayed: true` in the
// initial and trailing metadata.
#ifndef COACH_SERVER_RPC_CHAT_SERVICE_H_
#define COACH_SERVER_RPC_CHAT_SERVICE_H_

#include "coach/v1/chat.grpc.pb.h"
#include "server/core/chat.h"
#include "server/rpc/authenticator.h"
#include "server/rpc/callback.h"

namespace coach {

class ChatServiceImpl final
    : public v1::ChatService::WithCallbackMethod_ListSessions<
          v1::ChatService::WithCallbackMethod_CreateSession<
              v1::ChatService::WithCallbackMethod_GetSession<
                  v1::ChatService::WithCallbackMethod_UpdateSession<
                      v1::ChatService::WithCallbackMethod_DeleteSession<
                          v1::ChatService::WithCallbackMethod_GetHistory<
                              v1::ChatService::WithCallbackMethod_SendMessage<
                                  v1::ChatService::
                                      WithCallbackMethod_StreamMessage<
                                          v1::ChatService::Service>>>>>>>> {
 public:
  // Both must outlive this.
  ChatServiceImpl(Chat& chat, const Authenticator& auth,
                  CallRunner runner = CallRunner())
      : chat_(chat), auth_(auth), runner_(runner) {}

  grpc::ServerUnaryReactor* ListSessions(
      grpc::CallbackServerContext* context,
      const v1::ListSessionsRequest* request,
      v1::ListSessionsResponse* response) override;
  grpc::ServerUnaryReactor* CreateSession(
      grpc::CallbackServerContext* context,
      const v1::CreateSessionRequest* request,
      v1::CreateSessionResponse* response) override;
  grpc::ServerUnaryReactor* GetSession(
      grpc::CallbackServerContext* context,
      const v1::GetSessionRequest* request,
      v1::GetSessionResponse* response) override;
  grpc::ServerUnaryReactor* UpdateSession(
      grpc::CallbackServerContext* context,
      const v1::UpdateSessionRequest* request,
      v1::UpdateSessionResponse* response) override;
  grpc::ServerUnaryReactor* DeleteSession(
      grpc::CallbackServerContext* context,
      const v1::DeleteSessionRequest* request,
      v1::DeleteSessionResponse* response) override;
  grpc::ServerUnaryReactor* SendMessage(
      grpc::CallbackServerContext* context,
      const v1::SendMessageRequest* request,
      v1::SendMessageResponse* response) override;
  grpc::ServerUnaryReactor* GetHistory(
      grpc::CallbackServerContext* context,
      const v1::GetHistoryRequest* request,
      v1::GetHistoryResponse* response) override;
  grpc::ServerWriteReactor<v1::StreamMessageResponse>* StreamMessage(
      grpc::CallbackServerContext* context,
      const v1::SendMessageRequest* request) override;

 private:
  // The quick RPCs' bodies, run inline by their callback methods.
  grpc::Status DoListSessions(const grpc::ServerContextBase& context,
                              const v1::ListSessionsRequest& request,
                              v1::ListSessionsResponse& response);
  grpc::Status DoCreateSession(const grpc::ServerContextBase& context,
                               const v1::CreateSessionRequest& request,
                               v1::CreateSessionResponse& response);
  grpc::Status DoGetSession(const grpc::ServerContextBase& context,
                            const v1::GetSessionRequest& request,
                            v1::GetSessionResponse& response);
  grpc::Status DoUpdateSession(const grpc::ServerContextBase& context,
                               const v1::UpdateSessionRequest& request,
                               v1::UpdateSessionResponse& response);
  grpc::Status DoDeleteSession(const grpc::ServerContextBase& context,
                               const v1::DeleteSessionRequest& request,
                               v1::DeleteSessionResponse& response);
  grpc::Status DoGetHistory(const grpc::ServerContextBase& context,
                            const v1::GetHistoryRequest& request,
                            v1::GetHistoryResponse& response);

  Chat& chat_;
  const Authenticator& auth_;
  const CallRunner runner_;
};

}  // namespace coach

#endif  // COACH_SERVER_RPC_CHAT_SERVICE_H_
