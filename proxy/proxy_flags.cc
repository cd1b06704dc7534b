#include "proxy/proxy_flags.h"

#include <vector>

namespace coach::proxy {
namespace {

// Every setting of coach-proxy, bound to its field of `c`. The default shown
// by --help is the field's value in a default-constructed ProxyConfig.
std::vector<Setting> ProxySettings(ProxyConfig& c) {
  return {
      {"http_listen", "COACH_HTTP_LISTEN", &c.http_listen, kAnyValue,
       "REST listen address (the public face; coach-server stays on "
       "loopback)"},
      {"grpc_target", "COACH_GRPC_TARGET", &c.grpc_target, kAnyValue,
       "coach-server's gRPC address"},
      {"services", "COACH_PROXY_SERVICES", &c.services, kNonEmpty,
       "gRPC services whose `google.api.http` routes are served, "
       "comma-separated"},
      {"upstream_deadline", "COACH_UPSTREAM_DEADLINE", &c.upstream_deadline,
       kPositive, "Deadline of each call to coach-server"},
      {"max_body_bytes", "COACH_MAX_BODY_BYTES", &c.max_body_bytes, kPositive,
       "Larger request bodies get 413"},
      {"read_timeout", "COACH_HTTP_READ_TIMEOUT", &c.read_timeout, kPositive,
       "Time to receive a request"},
      {"write_timeout", "COACH_HTTP_WRITE_TIMEOUT", &c.write_timeout,
       kPositive, "Time to send a response"},
      {"keep_alive_timeout", "COACH_HTTP_KEEP_ALIVE_TIMEOUT",
       &c.keep_alive_timeout, kPositive,
       "Idle keep-alive connections close after this (an open connection "
       "holds a worker)"},
      {"keep_alive_max_requests", "COACH_HTTP_KEEP_ALIVE_MAX_REQUESTS",
       &c.keep_alive_max_requests, kPositive,
       "Requests served on one keep-alive connection"},
      {"listen_backlog", "COACH_HTTP_LISTEN_BACKLOG", &c.listen_backlog,
       kPositive, "Connections the kernel queues before accept"},
      {"worker_threads", "COACH_HTTP_WORKER_THREADS", &c.worker_threads,
       kPositive, "HTTP worker threads: connections served at once"},
      {"cors_origins", "COACH_CORS_ORIGINS", &c.cors_origins, kAnyValue,
       "Browser origins allowed by CORS, comma-separated; `*`: any; empty: "
       "no CORS"},
      {"cors_max_age", "COACH_CORS_MAX_AGE", &c.cors_max_age, kNonNegative,
       "How long browsers may cache a CORS preflight"},
      {"access_log", "COACH_ACCESS_LOG", &c.access_log, kAnyValue,
       "One log line per request (method, route, status, duration, request "
       "id; never bodies)"},
  };
}

}  // namespace

absl::StatusOr<Startup<ProxyConfig>> LoadProxyConfig(int argc, char** argv) {
  return LoadSettings<ProxyConfig>(
      "coach-proxy",
      "The Coach AI Hub REST API, transcoded onto coach-server's gRPC "
      "services from their google.api.http annotations.",
      argc, argv, ProxySettings);  // No rule involves two settings.
}

}  // namespace coach::proxy
