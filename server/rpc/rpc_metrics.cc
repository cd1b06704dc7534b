#include "server/rpc/rpc_metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "google/protobuf/descriptor.h"

namespace coach {

absl::string_view GrpcCodeName(grpc::StatusCode code) {
  static constexpr std::array<absl::string_view, 17> kNames = {
      "OK",
      "CANCELLED",
      "UNKNOWN",
      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED",
      "NOT_FOUND",
      "ALREADY_EXISTS",
      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION",
      "ABORTED",
      "OUT_OF_RANGE",
      "UNIMPLEMENTED",
      "INTERNAL",
      "UNAVAILABLE",
      "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int index = static_cast<int>(code);
  return index >= 0 && index < static_cast<int>(kNames.size())
             ? kNames[static_cast<size_t>(index)]
             : "UNKNOWN";
}

RpcMetrics::RpcMetrics(metrics::Registry& registry,
                       const std::vector<double>& buckets_seconds,
                       const std::vector<std::string>& services)
    : handled_(
          registry.AddCounter("coach_rpc_handled_total",
                              "RPCs answered, by method and gRPC status code.",
                              {"method", "code"})),
      durations_(registry.AddHistogram(
          "coach_rpc_duration_seconds",
          "Time from an RPC's arrival to its status, by method.", {"method"},
          buckets_seconds)) {
  const google::protobuf::DescriptorPool& pool =
      *google::protobuf::DescriptorPool::generated_pool();
  for (const std::string& name : services) {
    const google::protobuf::ServiceDescriptor* service =
        pool.FindServiceByName(name);
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string label =
          absl::StrCat(name, "/", service->method(i)->name());
      methods_.emplace(label, MakeSeries(label));
    }
  }
  other_ = MakeSeries("other");
}

RpcMetrics::Series RpcMetrics::MakeSeries(const std::string& label) {
  Series series;
  for (size_t code = 0; code < kCodes; ++code) {
    series.handled[code] = &handled_.WithLabels(
        {label,
         std::string(GrpcCodeName(static_cast<grpc::StatusCode>(code)))});
  }
  series.duration = &durations_.WithLabels({label});
  return series;
}

void RpcMetrics::Record(absl::string_view method, grpc::StatusCode code,
                        double seconds) {
  absl::ConsumePrefix(&method, "/");
  const auto found = methods_.find(method);
  const Series& series = found != methods_.end() ? found->second : other_;
  const size_t index = static_cast<size_t>(code);
  series.handled[index < kCodes ? index : 2]->Increment();
  series.duration->Observe(seconds);
}

}  // namespace coach
