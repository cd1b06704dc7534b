#include "server/rpc/access_log.h"

#include <string>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/request_id.h"
#include "base/trace_context.h"
#include "server/rpc/grpc_status.h"

namespace coach {
namespace {

constexpr char kRequestIdHeader[] = "x-request-id";

class AccessLogInterceptor final : public grpc::experimental::Interceptor {
 public:
  AccessLogInterceptor(grpc::experimental::ServerRpcInfo* info,
                       RpcMetrics* metrics)
      : method_(info->method()), metrics_(metrics), started_(absl::Now()) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      auto* metadata = methods->GetRecvInitialMetadata();
      if (auto it = metadata->find(kRequestIdHeader); it != metadata->end()) {
        const absl::string_view id(it->second.data(), it->second.size());
        // Direct gRPC clients send what they like: log only a plain id.
        request_id_ = IsPlainRequestId(id) ? std::string(id) : "invalid";
      }
      // The trace the caller names (coach-proxy always names one; a direct
      // gRPC client may): logged with the request line.
      if (auto it = metadata->find(kTraceparentHeader); it != metadata->end()) {
        traceparent_.assign(it->second.data(), it->second.size());
      }
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const absl::Duration duration = absl::Now() - started_;
      if (LogEnabled(LogLevel::kInfo)) {
        // gRPC's codes are absl's, number for number: the same names.
        const std::string code = absl::StatusCodeToString(
            static_cast<absl::StatusCode>(status.error_code()));
        const std::string reason = ReasonOfGrpcStatus(status);
        RequestLogLine line;
        line.kind = "rpc";
        line.route = method_;
        line.code = code;
        line.reason = reason;
        line.duration_ms = absl::ToDoubleMilliseconds(duration);
        line.request_id = request_id_.empty() ? absl::string_view("-")
                                              : absl::string_view(request_id_);
        // That trace, under a span of this server's; else a new trace.
        const TraceContext trace = ContinueTrace(traceparent_);
        line.trace_id = trace.trace_id;
        line.span_id = trace.span_id;
        LogRequest(LogLevel::kInfo, line);
      }
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
  std::string traceparent_;  // as received; empty: none
};

}  // namespace

grpc::experimental::Interceptor*
AccessLogInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new AccessLogInterceptor(info, metrics_);
}

}  // namespace coach
