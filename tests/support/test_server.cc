#include "tests/support/test_server.h"

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace coach::testing {

grpc::Status TestServer::Send(const std::string& user_id,
                              const std::string& session_id,
                              const std::string& message,
                              v1::SendMessageResponse* out) {
  v1::SendMessageRequest request;
  request.set_user_id(user_id);
  request.set_session_id(session_id);
  request.set_message(message);
  v1::SendMessageResponse ignored;
  return chat_->SendMessage(Context().get(), request,
                            out != nullptr ? out : &ignored);
}

ErrorDetail ErrorInfoOf(const grpc::Status& status) {
  ErrorDetail detail;
  google::rpc::Status rpc_status;
  if (!rpc_status.ParseFromString(status.error_details())) return detail;
  for (const google::protobuf::Any& any : rpc_status.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::RetryInfo retry;
    if (any.Is<google::rpc::RetryInfo>() && any.UnpackTo(&retry)) {
      detail.retry_delay = absl::Seconds(retry.retry_delay().seconds()) +
                           absl::Nanoseconds(retry.retry_delay().nanos());
    } else if (any.UnpackTo(&info)) {
      detail.reason = info.reason();
      detail.domain = info.domain();
      auto it = info.metadata().find("field");
      if (it != info.metadata().end()) detail.field = it->second;
    }
  }
  return detail;
}

}  // namespace coach::testing
