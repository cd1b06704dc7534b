// One log line per RPC (base/log.h's RequestLogLine): method, status code
// by name, the error's reason, duration and the caller's request id (metadata
// `x-request-id`, set by coach-proxy). Never the request or response bodies:
// they hold users' private messages. The same method, code and duration go to
// the RPC metrics, when given.
#ifndef COACH_SERVER_RPC_ACCESS_LOG_H_
#define COACH_SERVER_RPC_ACCESS_LOG_H_

#include <grpcpp/support/server_interceptor.h>

#include "server/rpc/rpc_metrics.h"

namespace coach {

class AccessLogInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` (may be null) must outlive the server.
  explicit AccessLogInterceptorFactory(RpcMetrics* metrics = nullptr)
      : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  RpcMetrics* const metrics_;
};

}  // namespace coach

#endif  // COACH_SERVER_RPC_ACCESS_LOG_H_
