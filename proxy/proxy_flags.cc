#include "proxy/proxy_flags.h"

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "base/env_flags.h"

namespace {
// Defaults come from ProxyConfig itself: one place for every default.
const coach::proxy::ProxyConfig kDefaults;
}  // namespace

ABSL_FLAG(std::string, http_listen, kDefaults.http_listen,
          "HTTP listen address. Env: COACH_HTTP_LISTEN");
ABSL_FLAG(std::string, grpc_target, kDefaults.grpc_target,
          "coach-server's gRPC address. Env: COACH_GRPC_TARGET");
ABSL_FLAG(std::vector<std::string>, services, kDefaults.services,
          "gRPC services whose google.api.http routes are served. "
          "Env: COACH_PROXY_SERVICES");
ABSL_FLAG(absl::Duration, upstream_deadline, kDefaults.upstream_deadline,
          "Deadline of each call to coach-server. Env: COACH_UPSTREAM_DEADLINE");
ABSL_FLAG(int64_t, max_body_bytes, static_cast<int64_t>(kDefaults.max_body_bytes),
          "Largest request body (413 above). Env: COACH_MAX_BODY_BYTES");
ABSL_FLAG(absl::Duration, read_timeout, kDefaults.read_timeout,
          "Time to receive a request. Env: COACH_HTTP_READ_TIMEOUT");
ABSL_FLAG(absl::Duration, write_timeout, kDefaults.write_timeout,
          "Time to send a response. Env: COACH_HTTP_WRITE_TIMEOUT");
ABSL_FLAG(absl::Duration, keep_alive_timeout, kDefaults.keep_alive_timeout,
          "Idle keep-alive connections close after this. "
          "Env: COACH_HTTP_KEEP_ALIVE_TIMEOUT");
ABSL_FLAG(int, keep_alive_max_requests, kDefaults.keep_alive_max_requests,
          "Requests per keep-alive connection. "
          "Env: COACH_HTTP_KEEP_ALIVE_MAX_REQUESTS");
ABSL_FLAG(int, listen_backlog, kDefaults.listen_backlog,
          "Pending connections queued by the kernel. "
          "Env: COACH_HTTP_LISTEN_BACKLOG");
ABSL_FLAG(int, worker_threads, kDefaults.worker_threads,
          "HTTP worker threads. Env: COACH_HTTP_WORKER_THREADS");
ABSL_FLAG(std::vector<std::string>, cors_origins, kDefaults.cors_origins,
          "Origins allowed by CORS, comma-separated; \"*\" for any, empty for "
          "none. Env: COACH_CORS_ORIGINS");
ABSL_FLAG(absl::Duration, cors_max_age, kDefaults.cors_max_age,
          "How long browsers may cache a CORS preflight. "
          "Env: COACH_CORS_MAX_AGE");
ABSL_FLAG(bool, access_log, kDefaults.access_log,
          "One log line per request. Env: COACH_ACCESS_LOG");

namespace coach::proxy {

absl::StatusOr<ProxyConfig> LoadProxyConfig(int argc, char** argv) {
  const std::vector<EnvFlag> bindings = {
      {"http_listen", "COACH_HTTP_LISTEN"},
      {"grpc_target", "COACH_GRPC_TARGET"},
      {"services", "COACH_PROXY_SERVICES"},
      {"upstream_deadline", "COACH_UPSTREAM_DEADLINE"},
      {"max_body_bytes", "COACH_MAX_BODY_BYTES"},
      {"read_timeout", "COACH_HTTP_READ_TIMEOUT"},
      {"write_timeout", "COACH_HTTP_WRITE_TIMEOUT"},
      {"keep_alive_timeout", "COACH_HTTP_KEEP_ALIVE_TIMEOUT"},
      {"keep_alive_max_requests", "COACH_HTTP_KEEP_ALIVE_MAX_REQUESTS"},
      {"listen_backlog", "COACH_HTTP_LISTEN_BACKLOG"},
      {"worker_threads", "COACH_HTTP_WORKER_THREADS"},
      {"cors_origins", "COACH_CORS_ORIGINS"},
      {"cors_max_age", "COACH_CORS_MAX_AGE"},
      {"access_log", "COACH_ACCESS_LOG"},
  };
  if (absl::Status parsed = ParseFlagsAndEnvironment(argc, argv, bindings);
      !parsed.ok()) {
    return parsed;
  }
  ProxyConfig config;
  config.http_listen = absl::GetFlag(FLAGS_http_listen);
  config.grpc_target = absl::GetFlag(FLAGS_grpc_target);
  config.services = absl::GetFlag(FLAGS_services);
  config.upstream_deadline = absl::GetFlag(FLAGS_upstream_deadline);
  const int64_t max_body = absl::GetFlag(FLAGS_max_body_bytes);
  config.read_timeout = absl::GetFlag(FLAGS_read_timeout);
  config.write_timeout = absl::GetFlag(FLAGS_write_timeout);
  config.keep_alive_timeout = absl::GetFlag(FLAGS_keep_alive_timeout);
  config.keep_alive_max_requests = absl::GetFlag(FLAGS_keep_alive_max_requests);
  config.listen_backlog = absl::GetFlag(FLAGS_listen_backlog);
  config.worker_threads = absl::GetFlag(FLAGS_worker_threads);
  config.cors_origins = absl::GetFlag(FLAGS_cors_origins);
  config.cors_max_age = absl::GetFlag(FLAGS_cors_max_age);
  config.access_log = absl::GetFlag(FLAGS_access_log);

  if (max_body <= 0 || config.worker_threads <= 0 ||
      config.listen_backlog <= 0 ||
      config.keep_alive_max_requests <= 0 ||
      config.upstream_deadline <= absl::ZeroDuration() ||
      config.read_timeout <= absl::ZeroDuration() ||
      config.keep_alive_timeout <= absl::ZeroDuration() ||
      config.cors_max_age < absl::ZeroDuration() ||
      config.write_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "sizes, thread counts and timeouts must be positive");
  }
  config.max_body_bytes = static_cast<size_t>(max_body);
  if (config.services.empty()) {
    return absl::InvalidArgumentError("--services must name a service");
  }
  return config;
}

}  // namespace coach::proxy
