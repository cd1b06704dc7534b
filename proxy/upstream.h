// Upstream: unary calls to coach-server by method name, over one shared
// channel, with google::protobuf::Message on both ends, so that the proxy
// needs no generated stub per service. Every call has a deadline and carries
// the request id.
#ifndef COACH_PROXY_UPSTREAM_H_
#define COACH_PROXY_UPSTREAM_H_

#include <grpcpp/channel.h>
#include <grpcpp/generic/generic_stub.h>

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"

namespace coach::proxy {

// The metadata key carrying the request id to coach-server (and its logs).
inline constexpr char kRequestIdMetadata[] = "x-request-id";
// The caller's credentials, forwarded unchanged (as grpc-gateway does).
inline constexpr char kAuthorizationMetadata[] = "authorization";

class Upstream {
 public:
  // Connects lazily to `target` ("127.0.0.1:50051").
  Upstream(const std::string& target, absl::Duration deadline);

  // Calls `grpc_method` ("/coach.v1.ChatService/SendMessage") with `request`
  // and parses the answer into `response`. Fails fast (UNAVAILABLE) when
  // coach-server is down rather than waiting for it. `authorization` (the
  // HTTP header's value; empty: none) is forwarded as metadata; a value
  // that metadata cannot carry (not printable ASCII) is replaced by one
  // that no server accepts.
  grpc::Status Call(const std::string& grpc_method,
                    const google::protobuf::Message& request,
                    google::protobuf::Message& response,
                    absl::string_view request_id,
                    absl::string_view authorization);

 private:
  grpc::GenericStub stub_;
  const absl::Duration deadline_;
};

}  // namespace coach::proxy

#endif  // COACH_PROXY_UPSTREAM_H_
