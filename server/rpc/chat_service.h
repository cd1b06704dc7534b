// ChatServiceImpl: coach.v1.ChatService over gRPC. A thin adapter: unpacks
// the request, calls core/Chat, packs the reply or the error.
#ifndef COACH_SERVER_RPC_CHAT_SERVICE_H_
#define COACH_SERVER_RPC_CHAT_SERVICE_H_

#include "coach/v1/chat.grpc.pb.h"
#include "server/core/chat.h"

namespace coach {

class ChatServiceImpl final : public v1::ChatService::Service {
 public:
  explicit ChatServiceImpl(Chat& chat) : chat_(chat) {}

  grpc::Status ListSessions(grpc::ServerContext* context,
                            const v1::ListSessionsRequest* request,
                            v1::ListSessionsResponse* response) override;
  grpc::Status CreateSession(grpc::ServerContext* context,
                             const v1::CreateSessionRequest* request,
                             v1::CreateSessionResponse* response) override;
  grpc::Status GetSession(grpc::ServerContext* context,
                          const v1::GetSessionRequest* request,
                          v1::GetSessionResponse* response) override;
  grpc::Status UpdateSession(grpc::ServerContext* context,
                             const v1::UpdateSessionRequest* request,
                             v1::UpdateSessionResponse* response) override;
  grpc::Status DeleteSession(grpc::ServerContext* context,
                             const v1::DeleteSessionRequest* request,
                             v1::DeleteSessionResponse* response) override;
  grpc::Status SendMessage(grpc::ServerContext* context,
                           const v1::SendMessageRequest* request,
                           v1::SendMessageResponse* response) override;
  grpc::Status GetHistory(grpc::ServerContext* context,
                          const v1::GetHistoryRequest* request,
                          v1::GetHistoryResponse* response) override;

 private:
  Chat& chat_;
};

}  // namespace coach

#endif  // COACH_SERVER_RPC_CHAT_SERVICE_H_
