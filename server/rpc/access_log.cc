#include "server/rpc/access_log.h"

#include <string>

#include "absl/time/clock.h"
#include "base/log.h"
#include "base/request_id.h"

namespace coach {
namespace {

constexpr char kRequestIdHeader[] = "x-request-id";

class AccessLogInterceptor final : public grpc::experimental::Interceptor {
 public:
  AccessLogInterceptor(grpc::experimental::ServerRpcInfo* info,
                       RpcMetrics* metrics)
      : method_(info->method()), metrics_(metrics), started_(absl::Now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      auto* metadata = methods->GetRecvInitialMetadata();
      if (auto it = metadata->find(kRequestIdHeader); it != metadata->end()) {
        const absl::string_view id(it->second.data(), it->second.size());
        // Direct gRPC clients send what they like: log only a plain id.
        request_id_ = IsPlainRequestId(id) ? std::string(id) : "invalid";
      }
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const absl::Duration duration = absl::Now() - started_;
      LogInfo("rpc %s code=%d duration_ms=%.1f request_id=%s", method_,
              static_cast<int>(status.error_code()),
              absl::ToDoubleMilliseconds(duration),
              request_id_.empty() ? "-" : request_id_);
      if (metrics_ != nullptr) {
        metrics_->Record(method_, status.error_code(),
                         absl::ToDoubleSeconds(duration));
      }
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  RpcMetrics* const metrics_;
  const absl::Time started_;
  std::string request_id_;
};

}  // namespace

grpc::experimental::Interceptor*
AccessLogInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new AccessLogInterceptor(info, metrics_);
}

}  // namespace coach
