// FinishNow: for callback-API handlers that do their work inline, the
// reactor that answers `status` at once.
#ifndef COACH_SERVER_RPC_CALLBACK_H_
#define COACH_SERVER_RPC_CALLBACK_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

namespace coach {

inline grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                           const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

}  // namespace coach

#endif  // COACH_SERVER_RPC_CALLBACK_H_
