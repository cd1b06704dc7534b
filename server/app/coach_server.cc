#include "server/app/coach_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/allocator.h"
#include "base/log.h"
#include "grpc/health/v1/health.pb.h"
#include "server/app/storage_setup.h"
#include "server/rpc/access_log.h"

namespace coach {
namespace {

// The names grpc.health.v1.Health answers for, "" being the whole server.
const char* const kHealthServices[] = {"", "coach.v1.ChatService",
                                       "coach.v1.UserService"};

// The services whose methods the RPC metrics name (any other: "other").
// Reflection's, when its schema is linked in.
std::vector<std::string> MeteredServices() {
  return {"coach.v1.ChatService", "coach.v1.UserService",
          "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
          "grpc.reflection.v1.ServerReflection"};
}

// The gRPC port's credentials: plaintext, or TLS from the files of
// COACH_GRPC_TLS_* through gRPC's own credentials. Its file watcher reads
// them again every interval and swaps them in when they changed (a pair
// whose key does not match its certificate is not taken), so that a
// rotated certificate serves the next handshakes; connections made before
// keep theirs.
std::shared_ptr<grpc::ServerCredentials> GrpcCredentials(const Config& config) {
  if (config.grpc_tls_cert.empty()) return grpc::InsecureServerCredentials();
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          config.grpc_tls_key, config.grpc_tls_cert, config.grpc_tls_client_ca,
          TlsWatchSeconds(config.grpc_tls_check_interval));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (config.grpc_tls_client_ca.empty()) {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    options.watch_root_certs();
    options.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

// The config the domain runs on: the hold lifetime settled.
Config Settled(Config config) {
  config.credit_reservation_ttl = HoldLifetime(config);
  return config;
}

}  // namespace

CoachServer::CoachServer(const Config& config, Store& store, Coach& coach,
                         const Clock& clock,
                         std::unique_ptr<JwtVerifier> verifier)
    : config_(Settled(config)),
      coach_(coach),
      // Start's caller checked the buckets (LoadServerConfig); a test's
      // Config keeps the valid defaults.
      core_metrics_(registry_, BucketSeconds(config_.metrics_ai_buckets)
                                   .value_or(std::vector<double>{})),
      rpc_metrics_(registry_,
                   BucketSeconds(config_.metrics_rpc_buckets)
                       .value_or(std::vector<double>{}),
                   MeteredServices()),
      chat_(config_, store, coach, clock, &core_metrics_),
      accounts_(config_, store, clock),
      user_data_(config_, store, clock),
      verifier_(std::move(verifier)),
      authenticator_(verifier_.get(), clock),
      store_threads_(
          config_.database_url.empty()
              ? nullptr
              : std::make_unique<ThreadPool>(config_.postgres_pool_size)),
      chat_service_(chat_, authenticator_, CallRunner(store_threads_.get())),
      user_service_(accounts_, user_data_, authenticator_,
                    AdminAccess{.token = config_.admin_token,
                                .jwt_scope = config_.jwt_admin_scope,
                                .verifier = verifier_.get(),
                                .clock = &clock},
                    CallRunner(store_threads_.get())) {}

absl::StatusOr<std::unique_ptr<CoachServer>> CoachServer::Start(
    const Config& config, Store& store, Coach& coach, const Clock& clock) {
  if (absl::Status tls = CheckGrpcTls(config); !tls.ok()) return tls;
  std::unique_ptr<JwtVerifier> verifier;
  if (config.auth == AuthMode::kJwt) {
    auto created = JwtVerifier::Create(config.jwt);
    if (!created.ok()) return created.status();
    verifier = *std::move(created);
    // An identity provider's keys sign tokens for every application it
    // serves: without an audience, any of them is accepted here.
    if (!config.jwt.jwks_file.empty() && config.jwt.audience.empty()) {
      LogWarning(
          "auth: COACH_JWT_JWKS_FILE without COACH_JWT_AUDIENCE: a token its "
          "issuer made for another application is accepted too (RFC 8725 "
          "§3.9); set the audience this service's tokens carry");
    }
  }
  std::unique_ptr<CoachServer> server(
      new CoachServer(config, store, coach, clock, std::move(verifier)));
  // The port first: a second server started by mistake on a port that is
  // served (hence with the live one's instance name) stops here, before it
  // could drop the live server's holds and claims.
  if (absl::Status listening = server->Listen(); !listening.ok()) {
    return listening;
  }
  // This run's holds are its own from now on, and the holds its previous
  // run left (killed mid-send) are dropped now rather than when they expire.
  // (A call that came in meanwhile took its hold as instance "": freed by
  // its send, or by its expiry, never by a BeginRun.)
  const std::string instance = InstanceName(config);
  absl::StatusOr<int> dropped = store.BeginRun(instance);
  if (!dropped.ok()) return dropped.status();  // the server stops
  LogInfo(
      "credit holds: instance %s, %d left by its previous run freed; "
      "a hold lives at most %s",
      instance, *dropped, absl::FormatDuration(HoldLifetime(config)));
  server->StartHousekeeping();
  return server;
}

absl::Status CoachServer::CheckGrpcTls(const Config& config) {
  // gRPC would take unusable files silently and fail every handshake.
  if (config.grpc_tls_cert.empty() && config.grpc_tls_key.empty() &&
      config.grpc_tls_client_ca.empty()) {
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> tls = CheckTlsFiles(GrpcTlsOptions(config));
  if (!tls.ok()) return tls.status();
  LogInfo("gRPC TLS: %s%s", *tls,
          config.grpc_tls_client_ca.empty()
              ? ""
              : "; mutual: a client certificate is required");
  return absl::OkStatus();
}

absl::Status CoachServer::Listen() {
  // Both are process-wide switches read when a builder is created.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // libgrpc++ serves health without registering its schema; linking and
  // touching ours lets reflection describe it (grpcurl, buf curl).
  grpc::health::v1::HealthCheckRequest::descriptor();

  grpc::ServerBuilder builder;
  // Plaintext by default (loopback, or a private network behind
  // coach-proxy); TLS, mutual perhaps, with COACH_GRPC_TLS_*.
  builder.AddListeningPort(config_.grpc_listen, GrpcCredentials(config_),
                           &port_);
  // No SO_REUSEPORT (gRPC sets it by default on Linux): with it, a second
  // coach-server started on a port already served binds it too, and the
  // kernel splits the connections between the two processes (and their two
  // databases). Without it, the second one fails to bind and stops.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // One client (coach-proxy) multiplexes every user's call on one HTTP/2
  // connection; sends wait seconds on the AI, so allow far more streams at
  // once than HTTP/2's customary 100, or calls queue behind slow ones.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             config_.grpc_max_concurrent_streams);
  // coach-proxy's keepalive PINGs (every COACH_UPSTREAM_KEEPALIVE_TIME,
  // calls or not) must not count as abuse, or the server would answer
  // GOAWAY "too_many_pings" and cancel calls in flight.
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      static_cast<int>(std::min<int64_t>(
          absl::ToInt64Milliseconds(config_.grpc_keepalive_min_time),
          std::numeric_limits<int>::max())));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.RegisterService(&chat_service_);
  builder.RegisterService(&user_service_);
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(
      std::make_unique<AccessLogInterceptorFactory>(&rpc_metrics_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));

  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", config_.grpc_listen,
        " (address already in use, or not an address of this machine)"));
  }
  for (const char* name : kHealthServices) {
    server_->GetHealthCheckService()->SetServingStatus(name, true);
  }
  return absl::OkStatus();
}

std::thread CoachServer::Every(absl::Duration interval,
                               absl::AnyInvocable<void()> work) {
  return std::thread([this, interval, work = std::move(work)]() mutable {
    while (!stopping_.WaitForNotificationWithTimeout(interval)) work();
  });
}

void CoachServer::StartHousekeeping() {
  // Off every send's path: a batch at a time, each its own short
  // transaction, a bounded number per round.
  constexpr int kBatchesPerRound = 100;
  // Reserved first: a push_back that threw would destroy a joinable thread.
  housekeepers_.reserve(3);
  housekeepers_.push_back(Every(config_.idempotency_purge_interval, [this] {
    absl::StatusOr<int> purged = chat_.PurgeExpiredKeys(kBatchesPerRound);
    if (!purged.ok()) {
      LogWarning("purging expired idempotency keys failed: %s",
                 purged.status().ToString());
    }
  }));
  if (config_.session_retention > absl::ZeroDuration()) {
    housekeepers_.push_back(Every(config_.retention_purge_interval, [this] {
      absl::StatusOr<int> purged =
          user_data_.PurgeExpiredSessions(kBatchesPerRound);
      if (!purged.ok()) {
        LogWarning("purging expired conversations failed: %s",
                   purged.status().ToString());
      } else if (*purged > 0) {
        LogInfo("retention: deleted %d conversations older than %s", *purged,
                absl::FormatDuration(config_.session_retention));
      }
    }));
  }
  if (config_.memory_release_interval > absl::ZeroDuration()) {
    // tcmalloc keeps what a burst freed in its page heap: RSS would stay at
    // the peak. Below this, not worth the call.
    constexpr uint64_t kWorthReleasing = 1 << 20;
    housekeepers_.push_back(Every(config_.memory_release_interval, [] {
      if (ReadAllocatorStats().pageheap_free_bytes >= kWorthReleasing) {
        ReleaseAllocatorFreeMemory();
      }
    }));
  }
}

std::string CoachServer::RenderMetrics() const {
  return absl::StrCat(registry_.Render(), RenderAllocatorMetrics());
}

CoachServer::~CoachServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::string> CoachServer::Reload() {
  std::vector<std::string> reloaded;
  absl::Status failed;
  if (verifier_ != nullptr && !config_.jwt.jwks_file.empty()) {
    absl::StatusOr<int> keys = verifier_->ReloadJwks();
    if (!keys.ok()) {
      failed = absl::Status(
          keys.status().code(),
          absl::StrCat(keys.status().message(), "; keeping the ",
                       verifier_->JwksKeyCount(), " keys read before"));
    } else {
      reloaded.push_back(absl::StrCat("the JWKS file ", config_.jwt.jwks_file,
                                      " (", *keys, " keys)"));
    }
  }
  // gRPC 1.51's file watcher cannot be told to read now: the files are
  // checked here, so that a bad rotation shows at once in the log, and the
  // watcher takes good ones within its interval.
  if (!config_.grpc_tls_cert.empty()) {
    absl::StatusOr<std::string> tls = CheckTlsFiles(GrpcTlsOptions(config_));
    if (!tls.ok()) {
      const std::string message =
          absl::StrCat(tls.status().message(),
                       "; new handshakes keep the TLS files read before");
      failed = failed.ok()
                   ? absl::Status(tls.status().code(), message)
                   : absl::Status(failed.code(), absl::StrCat(failed.message(),
                                                              "; ", message));
    } else {
      reloaded.push_back(absl::StrCat(
          "the TLS files ", *tls, ", served to new handshakes within ",
          absl::FormatDuration(
              absl::Ceil(config_.grpc_tls_check_interval, absl::Seconds(1)))));
    }
  }
  if (!failed.ok()) return failed;
  return absl::StrJoin(reloaded, " and ");
}

void CoachServer::Shutdown(absl::Duration grace) {
  if (!stopping_.HasBeenNotified()) stopping_.Notify();
  for (std::thread& housekeeper : housekeepers_) {
    if (housekeeper.joinable()) housekeeper.join();
  }
  if (server_ == nullptr) return;
  // Load balancers and probes see NOT_SERVING while calls drain.
  server_->GetHealthCheckService()->Shutdown();
  // At the deadline gRPC cancels the calls still running, but then waits for
  // their handlers to return, and a send waiting on the AI would hold it
  // until the AI answers. So at the deadline the coach's calls are cut too:
  // those sends fail, charging and storing nothing.
  absl::Notification drained;
  std::thread cutter([this, grace, &drained] {
    if (!drained.WaitForNotificationWithTimeout(grace)) coach_.CancelAll();
  });
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  drained.Notify();
  cutter.join();
}

void CoachServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace coach
