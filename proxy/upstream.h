// Upstream: asynchronous calls to coach-server by method name, over one
// shared channel, with serialized protobuf on both ends, so that the proxy
// needs no generated stub per service. Nothing here blocks a thread: each
// call ends in a callback on one of gRPC's threads.
//
// The channel spreads calls round-robin over every address the target names
// ("ipv4:127.0.0.1:50051,127.0.0.1:50052", "dns:///coach-server:50051"),
// skips a server it cannot reach, retries on another server a read that
// failed UNAVAILABLE (the service config's retry policy, never a send), and
// reconnects within `reconnect_max_backoff` after a server restarts.
//
// Thread-safety: Upstream and the calls are thread-safe.
#ifndef COACH_PROXY_UPSTREAM_H_
#define COACH_PROXY_UPSTREAM_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"

namespace coach::proxy {

// The metadata key carrying the request id to coach-server (and its logs).
inline constexpr char kRequestIdMetadata[] = "x-request-id";
// The caller's credentials, forwarded unchanged (as grpc-gateway does).
inline constexpr char kAuthorizationMetadata[] = "authorization";

struct UpstreamOptions {
  std::string target = "127.0.0.1:50051";
  // Longest pause between reconnection attempts to a server that is down.
  absl::Duration reconnect_max_backoff = absl::Milliseconds(500);
  // The largest response accepted from coach-server.
  int max_response_bytes = 64 * 1024 * 1024;
  // Full gRPC method names ("/coach.v1.UserService/GetUserStats") that only
  // read: retried on another server when one is unavailable.
  std::vector<std::string> read_methods;
};

// Server metadata a caller wants back: Upstream copies the values of `keys`
// from the server's initial metadata, then its trailing metadata, into
// `values` before it runs the callback that follows them (a stream's first
// message, or the end).
struct ServerMetadata {
  std::vector<std::string> keys;
  std::map<std::string, std::string> values;
};

struct CallOptions {
  absl::Duration deadline = absl::Seconds(60);
  // Wait for a connecting or restarting server (until the deadline) rather
  // than failing UNAVAILABLE at once.
  bool wait_for_ready = false;
  std::string request_id;
  // The HTTP Authorization header's value; empty: none. A value metadata
  // cannot carry (not printable ASCII) is replaced by one no server accepts.
  std::string authorization;
  // More metadata to send, as is (keys lowercase, values printable ASCII).
  std::vector<std::pair<std::string, std::string>> metadata;
  // Filled with the server metadata it asks for; null: none is read.
  std::shared_ptr<ServerMetadata> server_metadata;
};

// A call in progress; Cancel() makes it end CANCELLED (its callback still
// runs once).
class UpstreamCall {
 public:
  virtual ~UpstreamCall() = default;
  virtual void Cancel() = 0;
};

class Upstream {
 public:
  explicit Upstream(const UpstreamOptions& options);

  // A unary call: `done` runs exactly once, on a gRPC thread, with the
  // status and, when OK, the serialized response.
  using UnaryDone = absl::AnyInvocable<void(const grpc::Status& status,
                                            grpc::ByteBuffer& response)>;
  std::shared_ptr<UpstreamCall> Unary(const std::string& grpc_method,
                                      const google::protobuf::Message& request,
                                      const CallOptions& options,
                                      UnaryDone done);

  // A server-streaming call: `on_message` runs for each message in order,
  // then `done` once with the final status; all on gRPC threads, never two
  // at once.
  using StreamMessage = absl::AnyInvocable<void(grpc::ByteBuffer& message)>;
  using StreamDone = absl::AnyInvocable<void(const grpc::Status& status)>;
  std::shared_ptr<UpstreamCall> ServerStream(
      const std::string& grpc_method, const google::protobuf::Message& request,
      const CallOptions& options, StreamMessage on_message, StreamDone done);

  grpc::Channel& channel() { return *channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
};

// Applies `options` to a context (deadline, wait-for-ready, metadata).
void PrepareContext(const CallOptions& options, grpc::ClientContext& context);

// The channel's service config for `options` (exposed for tests).
std::string ServiceConfigJson(const UpstreamOptions& options);

}  // namespace coach::proxy

#endif  // COACH_PROXY_UPSTREAM_H_
