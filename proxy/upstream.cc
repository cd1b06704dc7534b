#include "proxy/upstream.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_callback.h>
#include <grpcpp/support/stub_options.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/synchronization/mutex.h"

namespace coach::proxy {
namespace {

using google::protobuf::Message;

// After a failed connection attempt, the first retry comes this soon.
constexpr int kInitialReconnectBackoffMs = 100;
// How long one connection attempt (TCP, then HTTP/2 settings) may take.
// Despite its name, gRPC reads GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as this
// ("min connect timeout", 20 s by default).
constexpr int kConnectAttemptTimeoutMs = 1000;
// Retries of a read on another server: gRPC caps attempts at 5 (A6).
constexpr int kReadAttempts = 3;

std::shared_ptr<grpc::Channel> MakeChannel(const UpstreamOptions& options) {
  grpc::ChannelArguments args;
  const int max_backoff_ms = static_cast<int>(std::max<int64_t>(
      1, absl::ToInt64Milliseconds(options.reconnect_max_backoff)));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              std::min(kInitialReconnectBackoffMs, max_backoff_ms));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kConnectAttemptTimeoutMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_backoff_ms);
  args.SetMaxReceiveMessageSize(options.max_response_bytes);
  args.SetServiceConfigJSON(ServiceConfigJson(options));
  // Plaintext to coach-servers on loopback or a private network.
  return grpc::CreateCustomChannel(options.target,
                                   grpc::InsecureChannelCredentials(), args);
}

grpc::Status Serialize(const Message& message, grpc::ByteBuffer& out) {
  bool own_buffer = false;
  return grpc::SerializationTraits<Message>::Serialize(message, &out,
                                                       &own_buffer);
}

// Copies the wanted keys of `from` into `into`.
void CopyMetadata(
    const std::multimap<grpc::string_ref, grpc::string_ref>& from,
    ServerMetadata& into) {
  for (const std::string& key : into.keys) {
    const auto found = from.find(key);
    if (found == from.end()) continue;
    into.values.emplace(key, std::string(found->second.data(),
                                         found->second.size()));
  }
}

// Both kinds of the server's metadata, once the call has them.
void ReadServerMetadata(const grpc::ClientContext& context,
                        ServerMetadata* into, bool trailing) {
  if (into == nullptr) return;
  CopyMetadata(context.GetServerInitialMetadata(), *into);
  if (trailing) CopyMetadata(context.GetServerTrailingMetadata(), *into);
}

class UnaryCall final : public UpstreamCall {
 public:
  explicit UnaryCall(Upstream::UnaryDone done) : done_(std::move(done)) {}
  void Cancel() override { context.TryCancel(); }
  void Done(const grpc::Status& status) {
    ReadServerMetadata(context, server_metadata.get(), /*trailing=*/true);
    Upstream::UnaryDone done = std::move(done_);
    done(status, response);
  }

  grpc::ClientContext context;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  std::shared_ptr<ServerMetadata> server_metadata;

 private:
  Upstream::UnaryDone done_;
};

// A server-streaming call through the generic stub, which offers streaming
// only as bidi: one write (the request, marked last), then reads until the
// end. Owns itself until OnDone.
class StreamCall final
    : public UpstreamCall,
      public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamCall(Upstream::StreamMessage on_message, Upstream::StreamDone done)
      : on_message_(std::move(on_message)), done_(std::move(done)) {}

  void Start(std::shared_ptr<StreamCall> self) {
    self_ = std::move(self);
    StartWriteLast(&request, grpc::WriteOptions());
    StartRead(&message_);
    StartCall();
  }

  void Cancel() override { context.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended: OnDone follows
    if (!read_any_) {
      read_any_ = true;
      ReadServerMetadata(context, server_metadata.get(), /*trailing=*/false);
    }
    on_message_(message_);
    message_.Clear();
    StartRead(&message_);
  }

  void OnDone(const grpc::Status& status) override {
    ReadServerMetadata(context, server_metadata.get(), /*trailing=*/true);
    Upstream::StreamDone done = std::move(done_);
    on_message_ = nullptr;
    done(status);
    self_.reset();  // may delete this
  }

  grpc::ClientContext context;
  grpc::ByteBuffer request;
  std::shared_ptr<ServerMetadata> server_metadata;

 private:
  bool read_any_ = false;
  Upstream::StreamMessage on_message_;
  Upstream::StreamDone done_;
  grpc::ByteBuffer message_;
  std::shared_ptr<StreamCall> self_;
};

}  // namespace

std::string ServiceConfigJson(const UpstreamOptions& options) {
  nlohmann::json names = nlohmann::json::array();
  for (const std::string& method : options.read_methods) {
    // "/pkg.Service/Method" -> {"service": "pkg.Service", "method": "Method"}
    const size_t slash = method.rfind('/');
    if (method.empty() || method[0] != '/' || slash == 0 ||
        slash == std::string::npos) {
      continue;
    }
    names.push_back({{"service", method.substr(1, slash - 1)},
                     {"method", method.substr(slash + 1)}});
  }
  nlohmann::json config = {
      // Every server, in turn; pick_first would send everything to one.
      {"loadBalancingConfig", {{{"round_robin", nlohmann::json::object()}}}},
      // No healthCheckConfig (client-side health checking): with it,
      // Debian's gRPC 1.51 aborted twice in ~6 full test runs on channel
      // teardown (ref_counted.h: "assertion failed: prior > 0", right after
      // the health Watch stream ended). A server that is down is skipped
      // anyway (its connection fails); one that is up but NOT_SERVING is
      // not, until this is understood (docs/decisions.md).
      // A storm of retries cannot multiply the load: each failure costs a
      // token, each success gives back 0.1, and reads stop being retried
      // below 50 tokens. 100, not gRPC's usual 10: the few calls in flight
      // on a server that dies (5 or so) must not switch retries off for
      // the reads that follow them (measured in server_process_test).
      {"retryThrottling", {{"maxTokens", 100}, {"tokenRatio", 0.1}}},
  };
  if (!names.empty()) {
    config["methodConfig"] = {{
        {"name", names},
        {"retryPolicy",
         {{"maxAttempts", kReadAttempts},
          {"initialBackoff", "0.05s"},
          {"maxBackoff", "0.5s"},
          {"backoffMultiplier", 2},
          {"retryableStatusCodes", {"UNAVAILABLE"}}}},
    }};
  }
  return config.dump();
}

void PrepareContext(const CallOptions& options, grpc::ClientContext& context) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + options.deadline));
  context.set_wait_for_ready(options.wait_for_ready);
  if (!options.request_id.empty()) {
    context.AddMetadata(kRequestIdMetadata, options.request_id);
  }
  if (!options.authorization.empty()) {
    const bool printable =
        std::all_of(options.authorization.begin(), options.authorization.end(),
                    [](char c) { return c >= 0x20 && c < 0x7F; });
    context.AddMetadata(kAuthorizationMetadata,
                        printable ? options.authorization : "Bearer -");
  }
  for (const auto& [key, value] : options.metadata) {
    context.AddMetadata(key, value);
  }
}

Upstream::Upstream(const UpstreamOptions& options)
    : channel_(MakeChannel(options)), stub_(channel_) {}

std::shared_ptr<UpstreamCall> Upstream::Unary(const std::string& grpc_method,
                                              const Message& request,
                                              const CallOptions& options,
                                              UnaryDone done) {
  auto call = std::make_shared<UnaryCall>(std::move(done));
  if (grpc::Status serialized = Serialize(request, call->request);
      !serialized.ok()) {
    call->Done(serialized);
    return call;
  }
  PrepareContext(options, call->context);
  call->server_metadata = options.server_metadata;
  stub_.UnaryCall(&call->context, grpc_method, grpc::StubOptions(),
                  &call->request, &call->response,
                  [call](grpc::Status status) { call->Done(status); });
  return call;
}

std::shared_ptr<UpstreamCall> Upstream::ServerStream(
    const std::string& grpc_method, const Message& request,
    const CallOptions& options, StreamMessage on_message, StreamDone done) {
  auto call = std::make_shared<StreamCall>(std::move(on_message),
                                           std::move(done));
  if (grpc::Status serialized = Serialize(request, call->request);
      !serialized.ok()) {
    call->OnDone(serialized);
    return call;
  }
  PrepareContext(options, call->context);
  call->server_metadata = options.server_metadata;
  stub_.PrepareBidiStreamingCall(&call->context, grpc_method,
                                 grpc::StubOptions(), call.get());
  call->Start(call);
  return call;
}

}  // namespace coach::proxy
