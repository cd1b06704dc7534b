#include "proxy/upstream.h"

#include <algorithm>

#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/channel_arguments.h>

#include <cstdlib>

#include "base/log.h"

namespace coach::proxy {
namespace {

using google::protobuf::Message;

// After coach-server restarts, reconnect within a second instead of gRPC's
// default backoff of up to two minutes; calls fail fast meanwhile (503).
constexpr int kMaxReconnectBackoffMs = 1000;
constexpr int kInitialReconnectBackoffMs = 100;
// How long one connection attempt (TCP, then HTTP/2 settings) may take.
// Despite its name, gRPC reads GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as this
// ("min connect timeout", 20 s by default): at 100 ms, any handshake slower
// than that (a busy server, a sanitizer build) failed its calls with 503.
constexpr int kConnectAttemptTimeoutMs = 1000;

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kConnectAttemptTimeoutMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  // Plaintext to a coach-server on loopback or a private network.
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
}

// The calling thread's completion queue, kept for the thread's life: each
// call waits on its own thread's queue (no hand-off to another thread), and
// no queue is created per call.
grpc::CompletionQueue& ThreadCompletionQueue() {
  struct Owned {
    grpc::CompletionQueue queue;
    ~Owned() {
      queue.Shutdown();
      void* tag = nullptr;
      bool ok = false;
      while (queue.Next(&tag, &ok)) {
      }
    }
  };
  thread_local Owned owned;
  return owned.queue;
}

}  // namespace

Upstream::Upstream(const std::string& target, absl::Duration deadline)
    : stub_(MakeChannel(target)), deadline_(deadline) {}

grpc::Status Upstream::Call(const std::string& grpc_method,
                            const Message& request, Message& response,
                            absl::string_view request_id,
                            absl::string_view authorization) {
  grpc::ByteBuffer request_bytes;
  bool own_buffer = false;
  if (grpc::Status serialized = grpc::SerializationTraits<Message>::Serialize(
          request, &request_bytes, &own_buffer);
      !serialized.ok()) {
    return serialized;
  }

  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
  // Fail fast: no waiting for a server that is down.
  context.set_wait_for_ready(false);
  if (!request_id.empty()) {
    context.AddMetadata(kRequestIdMetadata, std::string(request_id));
  }
  if (!authorization.empty()) {
    const bool printable =
        std::all_of(authorization.begin(), authorization.end(),
                    [](char c) { return c >= 0x20 && c < 0x7F; });
    context.AddMetadata(kAuthorizationMetadata,
                        printable ? std::string(authorization)
                                  : std::string("Bearer -"));
  }
  grpc::CompletionQueue& queue = ThreadCompletionQueue();
  grpc::ByteBuffer response_bytes;
  grpc::Status status;
  auto call = stub_.PrepareUnaryCall(&context, grpc_method, request_bytes,
                                     &queue);
  call->StartCall();
  // The tag is this call's status: the queue only ever holds this call.
  call->Finish(&response_bytes, &status, &status);
  void* tag = nullptr;
  bool ok = false;
  // The queue holds this call's one event (Finish of a unary call always
  // completes, ok, even on a deadline). Anything else is a broken invariant,
  // and returning would free `context` under a call still in flight.
  if (!queue.Next(&tag, &ok) || tag != &status || !ok) {
    LogError("upstream: unexpected completion queue event");
    std::abort();
  }
  if (!status.ok()) return status;
  return grpc::SerializationTraits<Message>::Deserialize(&response_bytes,
                                                         &response);
}

}  // namespace coach::proxy
