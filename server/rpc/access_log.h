// One log line per RPC: method, status code, duration
// and the caller's request id (metadata `x-request-id`, set by coach-proxy).
// Never the request or response bodies: they hold users' private messages.
#ifndef COACH_SERVER_RPC_ACCESS_LOG_H_
#define COACH_SERVER_RPC_ACCESS_LOG_H_

#include <grpcpp/support/server_interceptor.h>

namespace coach {

class AccessLogInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace coach

#endif  // COACH_SERVER_RPC_ACCESS_LOG_H_
