#include "proxy/upstream.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include "absl/synchronization/notification.h"

namespace coach::proxy {
namespace {

// After coach-server restarts, reconnect within a second instead of gRPC's
// default backoff of up to two minutes; calls fail fast meanwhile (503).
constexpr int kMaxReconnectBackoffMs = 1000;
constexpr int kInitialReconnectBackoffMs = 100;

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  // Plaintext to a coach-server on loopback or a private network.
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
}

}  // namespace

Upstream::Upstream(const std::string& target, absl::Duration deadline)
    : channel_(MakeChannel(target)), stub_(channel_), deadline_(deadline) {}

grpc::Status Upstream::Call(absl::string_view grpc_method,
                            const google::protobuf::Message& request,
                            google::protobuf::Message& response,
                            absl::string_view request_id) {
  grpc::ByteBuffer request_bytes;
  bool own_buffer = false;
  grpc::Status serialized =
      grpc::SerializationTraits<google::protobuf::Message>::Serialize(
          request, &request_bytes, &own_buffer);
  if (!serialized.ok()) return serialized;

  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
  // Fail fast: no waiting for a server that is down.
  context.set_wait_for_ready(false);
  if (!request_id.empty()) {
    context.AddMetadata(kRequestIdMetadata, std::string(request_id));
  }

  grpc::ByteBuffer response_bytes;
  grpc::Status status;
  absl::Notification done;
  stub_.UnaryCall(&context, std::string(grpc_method), grpc::StubOptions(),
                  &request_bytes, &response_bytes,
                  [&](grpc::Status s) {
                    status = std::move(s);
                    done.Notify();
                  });
  // The call is bounded by its deadline, so this wait is too.
  done.WaitForNotification();
  if (!status.ok()) return status;

  return grpc::SerializationTraits<google::protobuf::Message>::Deserialize(
      &response_bytes, &response);
}

}  // namespace coach::proxy
