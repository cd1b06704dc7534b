// The gRPC boundary of errors: an absl::Status from the domain becomes a
// grpc::Status with the same canonical code and French message, and a
// google.rpc.Status in the `grpc-status-details-bin` trailer carrying one
// google.rpc.ErrorInfo (reason: the name of a coach.v1.ErrorReason value,
// domain "coach.v1", and for bad input the field's JSON name under
// metadata["field"]).
#ifndef COACH_SERVER_RPC_GRPC_STATUS_H_
#define COACH_SERVER_RPC_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"
#include "coach/v1/error_reason.pb.h"
#include "server/core/errors.h"

namespace coach {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The wire reason of a core reason (one to one; the names match).
v1::ErrorReason ToProtoReason(ErrorReason reason);

// The ErrorInfo reason a status made by ToGrpcStatus carries; "" if none.
std::string ReasonOfGrpcStatus(const grpc::Status& status);

}  // namespace coach

#endif  // COACH_SERVER_RPC_GRPC_STATUS_H_
