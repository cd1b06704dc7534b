// Upstream on gRPC's own C++ client: one channel (round robin, the same
// retry policy and throttling as the native client, its keepalive and
// limits), calls through the generic callback stub on byte buffers. gRPC
// completes calls on its own threads; every callback is handed to the
// event loop, through a strand per call (one call's callbacks never run at
// once, and run in order).
#include <grpc/grpc.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_callback.h>
#include <grpcpp/support/stub_options.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <climits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "base/log.h"
#include "proxy/upstream/impl.h"

namespace coach::proxy::upstream_internal {
namespace {

namespace net = boost::asio;
using Strand = net::strand<net::io_context::executor_type>;

// After a failed connection attempt, the first retry comes this soon (the
// native client's kInitialReconnectBackoff).
constexpr int kInitialReconnectBackoffMs = 100;
// Retries of a read on another server: gRPC caps attempts at 5 (A6).
constexpr int kReadAttempts = 3;

int Milliseconds(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return INT_MAX;
  return static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 1, INT_MAX));
}

// The channel's service config: round robin, and the read methods' retry
// policy with gRPC's throttling.
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
      // No healthCheckConfig: with it, Debian's gRPC 1.51 aborted on
      // channel teardown (docs/adr/0025-several-coach-servers.md).
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

// Plaintext, or TLS from the same files as the native client's: gRPC's
// file watcher reads them (and again every check interval, whole seconds:
// a new handshake uses files that changed); gRPC verifies the chain and the
// name (the target's host, or the override) and requires ALPN h2.
std::shared_ptr<grpc::ChannelCredentials> Credentials(
    const UpstreamOptions& options) {
  if (options.tls == nullptr) return grpc::InsecureChannelCredentials();
  const TlsOptions& files = options.tls->options();
  const unsigned int interval_seconds = TlsWatchSeconds(files.check_interval);
  auto provider = files.cert_file.empty()
                      ? std::make_shared<
                            grpc::experimental::FileWatcherCertificateProvider>(
                            files.ca_file, interval_seconds)
                      : std::make_shared<
                            grpc::experimental::FileWatcherCertificateProvider>(
                            files.key_file, files.cert_file, files.ca_file,
                            interval_seconds);
  grpc::experimental::TlsChannelCredentialsOptions tls;
  tls.set_certificate_provider(provider);
  tls.watch_root_certs();
  if (!files.cert_file.empty()) tls.watch_identity_key_cert_pairs();
  return grpc::experimental::TlsCredentials(tls);
}

std::shared_ptr<grpc::Channel> MakeChannel(const UpstreamOptions& options) {
  grpc::ChannelArguments args;
  const int max_backoff_ms = Milliseconds(options.reconnect_max_backoff);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              std::min(kInitialReconnectBackoffMs, max_backoff_ms));
  // Despite its name, gRPC reads this as the time one connection attempt
  // (TCP, then the server's SETTINGS) may take ("min connect timeout").
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              Milliseconds(options.connect_timeout));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_backoff_ms);
  args.SetMaxReceiveMessageSize(options.max_response_bytes);
  args.SetInt(GRPC_ARG_MAX_METADATA_SIZE, options.max_header_list_bytes);
  if (options.keepalive_time != absl::InfiniteDuration()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                Milliseconds(options.keepalive_time));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                Milliseconds(options.keepalive_timeout));
    // Idle connections too, and without gRPC's cap of two PINGs between
    // data frames (which would stop the pings of an idle connection).
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS,
                Milliseconds(options.keepalive_time));
  }
  args.SetUserAgentPrefix(options.user_agent);
  // Connections of this channel only (gRPC shares subchannels between
  // channels of a process by default).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetServiceConfigJSON(ServiceConfigJson(options));
  if (options.tls != nullptr && !options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::CreateCustomChannel(options.target, Credentials(options), args);
}

std::string StringOf(const grpc::ByteBuffer& buffer) {
  std::string out;
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return out;
  size_t size = 0;
  for (const grpc::Slice& slice : slices) size += slice.size();
  out.reserve(size);
  for (const grpc::Slice& slice : slices) {
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return out;
}

grpc::ByteBuffer BufferOf(const google::protobuf::Message& message) {
  std::string bytes = message.SerializeAsString();
  grpc::Slice slice(std::move(bytes));
  return grpc::ByteBuffer(&slice, 1);
}

// Copies the wanted keys of `from` into `into` (first value wins).
void CopyMetadata(const std::multimap<grpc::string_ref, grpc::string_ref>& from,
                  ServerMetadata& into) {
  for (const std::string& key : into.keys) {
    const auto found = from.find(key);
    if (found == from.end()) continue;
    into.values.emplace(
        key, std::string(found->second.data(), found->second.size()));
  }
}

void PrepareContext(const CallOptions& options, grpc::ClientContext& context) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + options.deadline));
  context.set_wait_for_ready(options.wait_for_ready);
  if (!options.request_id.empty()) {
    context.AddMetadata(kRequestIdMetadata, options.request_id);
  }
  if (!options.authorization.empty()) {
    context.AddMetadata(kAuthorizationMetadata,
                        std::string(AuthorizationValue(options.authorization)));
  }
  for (const auto& [key, value] : options.metadata) {
    context.AddMetadata(key, value);
  }
}

class GrpcCall;

// The calls in progress, so that the destructor can end them and wait for
// their last callbacks.
struct Registry {
  absl::Mutex mu;
  absl::flat_hash_map<GrpcCall*, std::shared_ptr<GrpcCall>> live
      ABSL_GUARDED_BY(mu);
};

// What both kinds of call share: their context, strand and registry entry.
class GrpcCall : public UpstreamCall {
 public:
  GrpcCall(net::io_context& loop, std::shared_ptr<Registry> registry)
      : strand_(net::make_strand(loop)), registry_(std::move(registry)) {}

  void Cancel() override {
    cancelled_.store(true, std::memory_order_relaxed);
    context.TryCancel();
  }

  grpc::ClientContext context;
  std::shared_ptr<ServerMetadata> server_metadata;

  // gRPC hands a call from the thread that starts an operation to the one
  // that runs its reaction inside libgrpc, where ThreadSanitizer cannot
  // see; an empty critical section before each operation starts and at the
  // start of each reaction shows it that order (as the tests' fake servers
  // do).
  void Ordered() { absl::MutexLock lock(&order_); }

 protected:
  // Runs `last` (the call's final callback) on the call's strand, then
  // lets the call go.
  template <typename Last>
  void EndOnLoop(Last last) {
    net::post(strand_, [this, last = std::move(last)]() mutable {
      last();
      std::shared_ptr<GrpcCall> self;
      absl::MutexLock lock(&registry_->mu);
      if (auto found = registry_->live.find(this);
          found != registry_->live.end()) {
        self = std::move(found->second);
        registry_->live.erase(found);
      }
    });
  }
  // Copies the server metadata asked for (initial, and trailing once the
  // call is over).
  void ReadServerMetadata(bool trailing) {
    if (server_metadata == nullptr) return;
    CopyMetadata(context.GetServerInitialMetadata(), *server_metadata);
    if (trailing) {
      CopyMetadata(context.GetServerTrailingMetadata(), *server_metadata);
    }
  }

  Strand strand_;
  std::shared_ptr<Registry> registry_;
  std::atomic<bool> cancelled_{false};
  absl::Mutex order_;
};

// A unary call through a reactor (gRPC's std::function flavour of the same
// call completes through a tag whose hand-off between threads
// ThreadSanitizer cannot see, and would report).
class GrpcUnaryCall final : public GrpcCall, public grpc::ClientUnaryReactor {
 public:
  GrpcUnaryCall(net::io_context& loop, std::shared_ptr<Registry> registry,
                Upstream::UnaryDone done)
      : GrpcCall(loop, std::move(registry)), done_(std::move(done)) {}

  // On gRPC's thread: the answer is copied out, then handed to the loop.
  void OnDone(const grpc::Status& status) override {
    Ordered();
    ReadServerMetadata(/*trailing=*/true);
    std::string bytes = status.ok() ? StringOf(response) : std::string();
    response.Clear();
    EndOnLoop([this, status, bytes = std::move(bytes)]() mutable {
      Upstream::UnaryDone done = std::move(done_);
      if (done) done(status, bytes);
    });
  }

  grpc::ByteBuffer request;
  grpc::ByteBuffer response;

 private:
  Upstream::UnaryDone done_;
};

// A server-streaming call through the generic stub, which offers streaming
// only as bidi: one write (the request, marked last), then reads until the
// end.
class GrpcStreamCall final
    : public GrpcCall,
      public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  GrpcStreamCall(net::io_context& loop, std::shared_ptr<Registry> registry,
                 Upstream::StreamMessage on_message, Upstream::StreamDone done)
      : GrpcCall(loop, std::move(registry)),
        on_message_(std::move(on_message)),
        done_(std::move(done)) {}

  // Reads are started from the loop (each once the loop has taken the
  // previous message): gRPC's rule for operations started outside its
  // reactions is a hold, added before StartCall and removed once no read
  // will follow.
  void Begin() {
    Ordered();
    AddHold();
    StartWriteLast(&request, grpc::WriteOptions());
    StartRead(&message_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    Ordered();
    if (!ok) {  // the stream ended: OnDone follows
      RemoveHold();
      return;
    }
    if (!read_any_) {
      read_any_ = true;
      ReadServerMetadata(/*trailing=*/false);
    }
    std::string bytes = StringOf(message_);
    message_.Clear();
    // The next read starts once the loop has taken this message: one
    // message at a time is held here (messages would pile up in the loop's
    // queue while it is busy).
    net::post(strand_, [this, bytes = std::move(bytes)]() mutable {
      if (on_message_ && !cancelled_.load(std::memory_order_relaxed)) {
        on_message_(bytes);
      }
      Ordered();
      StartRead(&message_);
    });
  }

  void OnDone(const grpc::Status& status) override {
    Ordered();
    ReadServerMetadata(/*trailing=*/true);
    EndOnLoop([this, status] {
      Upstream::StreamDone done = std::move(done_);
      on_message_ = nullptr;
      if (done) done(status);
    });
  }

  grpc::ByteBuffer request;

 private:
  bool read_any_ = false;  // reactions only (one at a time, Ordered())
  Upstream::StreamMessage on_message_;  // the strand only
  Upstream::StreamDone done_;
  grpc::ByteBuffer message_;
};

class GrpcUpstream final : public UpstreamImpl {
 public:
  GrpcUpstream(net::io_context& loop, const UpstreamOptions& options)
      : loop_(loop),
        channel_(MakeChannel(options)),
        stub_(channel_),
        registry_(std::make_shared<Registry>()) {
    channel_->GetState(/*try_to_connect=*/true);
  }

  ~GrpcUpstream() override {
    std::vector<std::shared_ptr<GrpcCall>> calls;
    {
      absl::MutexLock lock(&registry_->mu);
      stopping_ = true;
      for (auto& [raw, call] : registry_->live) calls.push_back(call);
    }
    for (const auto& call : calls) call->Cancel();
    calls.clear();
    absl::MutexLock lock(&registry_->mu);
    const auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_->mu) {
      return registry_->live.empty();
    };
    // The loop runs (the constructor's contract); bounded all the same.
    if (!registry_->mu.AwaitWithTimeout(absl::Condition(&ended),
                                        absl::Seconds(10))) {
      LogError("upstream: shutdown did not complete");
    }
  }

  std::shared_ptr<UpstreamCall> Unary(const std::string& grpc_method,
                                      const google::protobuf::Message& request,
                                      CallOptions options,
                                      Upstream::UnaryDone done) override {
    auto call =
        std::make_shared<GrpcUnaryCall>(loop_, registry_, std::move(done));
    call->request = BufferOf(request);
    PrepareContext(options, call->context);
    call->server_metadata = options.server_metadata;
    if (!Register(call)) {
      call->OnDone(
          grpc::Status(grpc::StatusCode::CANCELLED, "coach-proxy is stopping"));
      return call;
    }
    stub_.PrepareUnaryCall(&call->context, grpc_method, grpc::StubOptions(),
                           &call->request, &call->response, call.get());
    call->Ordered();
    call->StartCall();
    return call;
  }

  std::shared_ptr<UpstreamCall> ServerStream(
      const std::string& grpc_method, const google::protobuf::Message& request,
      CallOptions options, Upstream::StreamMessage on_message,
      Upstream::StreamDone done) override {
    auto call = std::make_shared<GrpcStreamCall>(
        loop_, registry_, std::move(on_message), std::move(done));
    call->request = BufferOf(request);
    PrepareContext(options, call->context);
    call->server_metadata = options.server_metadata;
    if (!Register(call)) {
      call->OnDone(
          grpc::Status(grpc::StatusCode::CANCELLED, "coach-proxy is stopping"));
      return call;
    }
    stub_.PrepareBidiStreamingCall(&call->context, grpc_method,
                                   grpc::StubOptions(), call.get());
    call->Begin();
    return call;
  }

  bool AnyServerReady() const override {
    return channel_->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
  }

 private:
  // Registers `call` until its last callback ran; false when stopping (the
  // call is registered all the same: its end is awaited too).
  bool Register(const std::shared_ptr<GrpcCall>& call) {
    absl::MutexLock lock(&registry_->mu);
    registry_->live.emplace(call.get(), call);
    return !stopping_;
  }

  net::io_context& loop_;
  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
  std::shared_ptr<Registry> registry_;
  bool stopping_ ABSL_GUARDED_BY(registry_->mu) = false;
};

}  // namespace

std::unique_ptr<UpstreamImpl> NewGrpcUpstream(net::io_context& loop,
                                              const UpstreamOptions& options) {
  return std::make_unique<GrpcUpstream>(loop, options);
}

}  // namespace coach::proxy::upstream_internal
