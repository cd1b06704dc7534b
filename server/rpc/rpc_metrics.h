// RpcMetrics: every RPC coach-server answers, on a metrics::Registry
// (base/metrics.h) owned by the server:
// - coach_rpc_handled_total{method, code}: method as gRPC names it without
//   the leading '/' ("coach.v1.ChatService/SendMessage"), code by name
//   ("OK", "NOT_FOUND", "RESOURCE_EXHAUSTED").
// - coach_rpc_duration_seconds{method}: from the call's arrival to its
//   status.
// Only the methods of the services given are named; any other is "other",
// so that no client can grow the series without bound. Every series is
// created here: Record takes no lock. Thread-safe.
#ifndef COACH_SERVER_RPC_RPC_METRICS_H_
#define COACH_SERVER_RPC_RPC_METRICS_H_

#include <grpcpp/support/status.h>

#include <array>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "base/metrics.h"

namespace coach {

// "OK", "CANCELLED", ... "UNAUTHENTICATED"; "UNKNOWN" out of range.
absl::string_view GrpcCodeName(grpc::StatusCode code);

class RpcMetrics {
 public:
  // `services`: full names ("coach.v1.ChatService") whose methods are
  // looked up in the generated descriptor pool.
  RpcMetrics(metrics::Registry& registry,
             const std::vector<double>& buckets_seconds,
             const std::vector<std::string>& services);

  // `method`: as ServerRpcInfo::method() gives it ("/pkg.Svc/Method").
  void Record(absl::string_view method, grpc::StatusCode code, double seconds);

 private:
  static constexpr size_t kCodes = 17;  // OK .. UNAUTHENTICATED
  struct Series {
    std::array<metrics::Counter*, kCodes> handled{};
    metrics::Histogram* duration = nullptr;
  };
  Series MakeSeries(const std::string& label);

  metrics::Family<metrics::Counter>& handled_;
  metrics::Family<metrics::Histogram>& durations_;
  // Built once in the constructor, then only read.
  absl::flat_hash_map<std::string, Series> methods_;
  Series other_;
};

}  // namespace coach

#endif  // COACH_SERVER_RPC_RPC_METRICS_H_
