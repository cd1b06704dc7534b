// Config: every setting of coach-server in one place, with its default: the
// rules' (CoreConfig), the AI coach's (OpenAiOptions) and the process's own.
// server_flags.cc binds each one to a flag and an environment variable, in
// one table that takes its defaults from here; nothing else in the server
// hard-codes a limit, a port, a plan or a model.
#ifndef COACH_SERVER_APP_SERVER_CONFIG_H_
#define COACH_SERVER_APP_SERVER_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/tls.h"
#include "server/auth/jwt_verifier.h"
#include "server/coach/circuit_breaker.h"
#include "server/coach/openai_options.h"
#include "server/core/config.h"

namespace coach {

// COACH_AUTH: how callers are known (Config::auth).
enum class AuthMode { kNone, kJwt };
// absl's flag marshalling (base/settings.h): "none", "jwt".
bool AbslParseFlag(absl::string_view text, AuthMode* mode, std::string* error);
std::string AbslUnparseFlag(AuthMode mode);

struct Config : CoreConfig {
  // 0: the longest a send can take (HoldLifetime in coach_server.h).
  Config() { credit_reservation_ttl = absl::ZeroDuration(); }

  std::string db_path = "coach.db";
  // A libpq URI (postgresql://user@host:5432/db): PostgreSQL, shared by
  // several servers. Empty: SQLite at db_path. Holds a password perhaps:
  // logged only through MaskUrlPassword.
  std::string database_url;
  int postgres_pool_size = 8;
  int postgres_max_attempts = 5;
  // This server's stable name, the same after a restart: a restarted
  // server drops the credit holds its previous run left. Empty:
  // "<hostname>:<port of grpc_listen>".
  std::string instance;
  // Loopback by default: the proxy runs beside the server. Listen on
  // 0.0.0.0:50051 to serve other hosts.
  std::string grpc_listen = "127.0.0.1:50051";
  // Concurrent calls per client connection (HTTP/2 streams). coach-proxy
  // sends all its calls over one connection: this is also how many replies
  // one proxy can stream through this server at once (10,000 at a busy
  // peak, docs/performance.md; ~45 KB each here).
  int grpc_max_concurrent_streams = 16384;
  // Clients may send keepalive PINGs this often, with or without calls in
  // progress (gRPC's default is 5 minutes, and 2 hours without calls: a
  // client pinging more often is sent GOAWAY "too_many_pings"). Below
  // coach-proxy's COACH_UPSTREAM_KEEPALIVE_TIME (10 s).
  absl::Duration grpc_keepalive_min_time = absl::Seconds(5);
  // TLS on the gRPC port: the certificate chain (PEM, leaf first) and its
  // key; both empty: plaintext. With a client CA, mutual TLS: a client
  // without a certificate that chains to it is refused in the handshake.
  // gRPC's own credentials read the files (FileWatcherCertificateProvider)
  // and look at them again every grpc_tls_check_interval (whole seconds, at
  // least 1): a rotated certificate serves new handshakes within it.
  std::string grpc_tls_cert;
  std::string grpc_tls_key;
  std::string grpc_tls_client_ca;
  absl::Duration grpc_tls_check_interval = absl::Seconds(1);
  // Empty: the admin RPCs are refused.
  std::string admin_token;
  // How callers are known: kNone ("none") takes a request's userId on
  // trust (any caller can act as any user: for a trusted network or a
  // demo); kJwt ("jwt") requires a signed token on every public RPC (see
  // `jwt`).
  AuthMode auth = AuthMode::kNone;
  JwtOptions jwt;
  // With `auth` jwt: a token carrying this scope may call the admin RPCs
  // too; empty: only `admin_token` may.
  std::string jwt_admin_scope;
  OpenAiOptions openai;
  // Without an AI provider: the offline coach's streamed pieces come this
  // far apart, as a model's would (zero: all at once).
  absl::Duration offline_stream_delay = absl::Milliseconds(30);
  // A JSON array of AI providers in order of preference (server/coach/
  // providers_file.h); empty: the one of `openai` (or the offline coach).
  std::string ai_providers_file;
  // Each provider's circuit breaker (with ai_providers_file).
  BreakerOptions ai_breaker;

  // GET /metrics over HTTP on this address ("127.0.0.1:9464"); empty: off.
  std::string metrics_listen;

  // Expired idempotency keys are deleted this often, by a thread of the
  // server's (Chat::PurgeExpiredKeys), never by a send.
  absl::Duration idempotency_purge_interval = absl::Minutes(1);
  // How often conversations past CoreConfig::session_retention are deleted
  // (when it is set), by a thread of the server's, never by a request.
  absl::Duration retention_purge_interval = absl::Hours(1);
  // This often, a thread of the server's gives the allocator's free pages
  // back to the OS (base/allocator.h), so RSS falls after a burst; zero:
  // never (tcmalloc keeps them).
  absl::Duration memory_release_interval = absl::Seconds(10);

  // In-flight calls get this long to finish on SIGTERM/SIGINT.
  absl::Duration shutdown_grace = absl::Seconds(10);
  int sqlite_busy_timeout_ms = 5000;
  int sqlite_reader_connections = 4;

  // The upper bounds of the latency histograms' buckets (RPCs, the coach's
  // replies), increasing durations: Prometheus sums buckets across servers,
  // so every server of a fleet should share them. Sends wait on the AI for
  // seconds, hence buckets up to a minute.
  std::vector<std::string> metrics_rpc_buckets = {
      "5ms", "10ms", "25ms", "50ms", "100ms", "250ms", "500ms",
      "1s",  "2.5s", "5s",   "10s",  "30s",   "60s"};
  std::vector<std::string> metrics_ai_buckets = {
      "250ms", "500ms", "1s", "2s", "4s", "8s", "15s", "30s", "60s"};

  // COACH_LOG_FORMAT, COACH_LOG_LEVEL (base/log.h).
  LogOptions log;
};

// `buckets` as seconds; INVALID_ARGUMENT unless each is a duration (absl's
// syntax: "250ms", "2.5s") and each exceeds the one before.
absl::StatusOr<std::vector<double>> BucketSeconds(
    const std::vector<std::string>& buckets);

// The gRPC port's TLS files as base/tls.h's options (role server, each
// file named by its setting), for the startup and SIGHUP checks.
TlsOptions GrpcTlsOptions(const Config& config);

}  // namespace coach

#endif  // COACH_SERVER_APP_SERVER_CONFIG_H_
