#include "tests/support/test_server.h"

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace coach::testing {

ErrorDetail ErrorInfoOf(const grpc::Status& status) {
  ErrorDetail detail;
  google::rpc::Status rpc_status;
  if (!rpc_status.ParseFromString(status.error_details())) return detail;
  for (const google::protobuf::Any& any : rpc_status.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) {
      detail.reason = info.reason();
      detail.domain = info.domain();
      auto it = info.metadata().find("field");
      if (it != info.metadata().end()) detail.field = it->second;
    }
  }
  return detail;
}

}  // namespace coach::testing
