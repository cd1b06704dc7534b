#include "server/rpc/grpc_status.h"

#include <string>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "server/core/errors.h"

namespace coach {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // Our errors always carry a reason; anything else is a bug, reported as a
  // reasoned INTERNAL so that no internal message reaches a client.
  const absl::Status public_status = ToPublicError(status, "rpc");

  google::rpc::ErrorInfo info;
  info.set_reason(ReasonOf(public_status));
  info.set_domain(std::string(kErrorDomain));
  if (std::string field = FieldOf(public_status); !field.empty()) {
    (*info.mutable_metadata())["field"] = std::move(field);
  }
  google::rpc::Status details;
  details.set_code(static_cast<int>(public_status.code()));
  details.set_message(std::string(public_status.message()));
  details.add_details()->PackFrom(info);

  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(public_status.code()),
                      std::string(public_status.message()),
                      details.SerializeAsString());
}

}  // namespace coach
