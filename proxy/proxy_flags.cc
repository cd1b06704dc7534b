#include "proxy/proxy_flags.h"

#include <algorithm>
#include <string>
#include <vector>

#include "proxy/upstream/wire.h"

namespace coach::proxy {
namespace {

// Every setting of coach-proxy, bound to its field of `c`. The default shown
// by --help is the field's value in a default-constructed ProxyConfig.
std::vector<Setting> ProxySettings(ProxyConfig& c) {
  std::vector<Setting> rows = {
      Essential({"http_listen", "COACH_HTTP_LISTEN", &c.http_listen, kAnyValue,
                 "REST listen address (the public face; coach-server stays on "
                 "loopback)"}),
      Essential(
          Renamed({"proxy_metrics_listen", "COACH_PROXY_METRICS_LISTEN",
                   &c.metrics_listen, kAnyValue,
                   "HTTP address of `GET /metrics` (Prometheus text), e.g. "
                   "`127.0.0.1:9465`, never the REST port; empty: not served"},
                  "metrics_listen")),
      Essential({"grpc_target", "COACH_GRPC_TARGET", &c.grpc_target,
                 [](const std::string& target) -> std::string {
                   return wire::ParseTarget(target).ok()
                              ? ""
                              : "must be host:port, dns:///host:port, "
                                "ipv4:a:port,b:port or ipv6:[a]:port,[b]:port";
                 },
                 "coach-server's gRPC address"}),
      Renamed({"proxy_services", "COACH_PROXY_SERVICES", &c.services, kNonEmpty,
               "gRPC services whose `google.api.http` routes are served, "
               "comma-separated"},
              "services"),
      Essential({"upstream_deadline", "COACH_UPSTREAM_DEADLINE",
                 &c.upstream_deadline, kPositive,
                 "Deadline of each call to coach-server"}),
      {"upstream_read_deadline", "COACH_UPSTREAM_READ_DEADLINE",
       &c.upstream_read_deadline, kPositive,
       "Deadline of GET calls, which wait meanwhile for a restarting "
       "coach-server"},
      {"upstream_reconnect_max", "COACH_UPSTREAM_RECONNECT_MAX",
       &c.upstream_reconnect_max, kPositive,
       "Longest pause between reconnection attempts to a coach-server"},
      {"upstream_max_response_bytes", "COACH_UPSTREAM_MAX_RESPONSE_BYTES",
       &c.upstream_max_response_bytes, kPositive,
       "Largest answer taken from coach-server"},
      {"upstream_max_header_list_bytes", "COACH_UPSTREAM_MAX_HEADER_LIST_BYTES",
       &c.upstream_max_header_list_bytes, InRange(1024, 1 << 24),
       "Largest header block (metadata) taken from coach-server; larger "
       "ends the call `RESOURCE_EXHAUSTED`"},
      {"upstream_client", "COACH_UPSTREAM_CLIENT", &c.upstream_client,
       kAnyValue,
       "gRPC client to coach-server: `native` (on the event loop) or `grpc` "
       "(gRPC's C++ client)"},
      {"upstream_connect_timeout", "COACH_UPSTREAM_CONNECT_TIMEOUT",
       &c.upstream_connect_timeout, kPositive,
       "One connection attempt to a coach-server: TCP, then its HTTP/2 "
       "settings"},
      {"upstream_keepalive_time", "COACH_UPSTREAM_KEEPALIVE_TIME",
       &c.upstream_keepalive_time, kNonNegative,
       "A PING after this long without anything from a coach-server (0: "
       "none)"},
      {"upstream_keepalive_timeout", "COACH_UPSTREAM_KEEPALIVE_TIMEOUT",
       &c.upstream_keepalive_timeout, kPositive,
       "A connection whose PING is not acknowledged within this is dropped "
       "(also its TCP_USER_TIMEOUT)"},
      {"upstream_resolve_interval", "COACH_UPSTREAM_RESOLVE_INTERVAL",
       &c.upstream_resolve_interval, kPositive,
       "A `dns:` target's name is resolved again this often (and after a "
       "failure): servers added and removed"},
      Essential(
          {"upstream_tls_ca", "COACH_UPSTREAM_TLS_CA", &c.upstream_tls_ca,
           kAnyValue,
           "TLS to coach-server: CA certificates (PEM) its certificate must "
           "chain to (ALPN `h2`); empty: plaintext"}),
      Essential({"upstream_tls_cert", "COACH_UPSTREAM_TLS_CERT",
                 &c.upstream_tls_cert, kAnyValue,
                 "Client certificate chain (PEM) for mutual TLS, with "
                 "`COACH_UPSTREAM_TLS_KEY`"}),
      Essential({"upstream_tls_key", "COACH_UPSTREAM_TLS_KEY",
                 &c.upstream_tls_key, kAnyValue,
                 "Private key (PEM) of `COACH_UPSTREAM_TLS_CERT`; never "
                 "logged"}),
      {"upstream_tls_server_name", "COACH_UPSTREAM_TLS_SERVER_NAME",
       &c.upstream_tls_server_name, kAnyValue,
       "Name checked in coach-server's certificate (and sent as SNI); empty: "
       "the target's host"},
      Essential(
          {"http_tls_cert", "COACH_HTTP_TLS_CERT", &c.http_tls_cert, kAnyValue,
           "HTTPS on `COACH_HTTP_LISTEN`: certificate chain (PEM, leaf first), "
           "with `COACH_HTTP_TLS_KEY`; empty: plain HTTP"}),
      Essential({"http_tls_key", "COACH_HTTP_TLS_KEY", &c.http_tls_key,
                 kAnyValue,
                 "Private key (PEM) of `COACH_HTTP_TLS_CERT`; never logged"}),
      {"proxy_tls_check_interval", "COACH_PROXY_TLS_CHECK_INTERVAL",
       &c.tls_check_interval, kPositive,
       "How often, at most, the TLS files are looked at for a change (a new "
       "handshake then uses them; SIGHUP: at once)"},
      Essential({"max_body_bytes", "COACH_MAX_BODY_BYTES", &c.max_body_bytes,
                 kPositive, "Larger request bodies get 413, unread"}),
      {"max_url_bytes", "COACH_MAX_URL_BYTES", &c.max_url_bytes, kPositive,
       "Longer request targets (path and query) get 414"},
      {"max_header_bytes", "COACH_MAX_HEADER_BYTES", &c.max_header_bytes,
       kPositive, "Request line and headers together; more gets 431"},
      {"max_header_count", "COACH_MAX_HEADER_COUNT", &c.max_header_count,
       kPositive, "Header lines per request; more gets 431"},
      Renamed(
          {"http_header_timeout", "COACH_HTTP_HEADER_TIMEOUT",
           &c.header_timeout, kPositive,
           "Time to receive a request's line and headers (a new connection's "
           "first: from its accept)"},
          "header_timeout"),
      Renamed({"http_body_timeout", "COACH_HTTP_BODY_TIMEOUT", &c.body_timeout,
               kPositive, "Time to receive a request's body"},
              "body_timeout"),
      Renamed(
          {"http_write_timeout", "COACH_HTTP_WRITE_TIMEOUT", &c.write_timeout,
           kPositive,
           "Time for one write to a client; a client that takes none of the "
           "written bytes this long is cut, even once all is written"},
          "write_timeout"),
      Renamed({"http_keep_alive_timeout", "COACH_HTTP_KEEP_ALIVE_TIMEOUT",
               &c.keep_alive_timeout, kPositive,
               "Idle keep-alive connections close after this"},
              "keep_alive_timeout"),
      Renamed(
          {"http_max_connections", "COACH_HTTP_MAX_CONNECTIONS",
           &c.max_connections, kPositive,
           "Connections open at once; past it, a new connection replaces the "
           "one idle the longest (no request in progress), or is closed if "
           "none "
           "is idle"},
          "max_connections"),
      Renamed({"http_max_connections_per_client",
               "COACH_HTTP_MAX_CONNECTIONS_PER_CLIENT",
               &c.max_connections_per_client, kNonNegative,
               "Connections of one client address (IPv6: one /64) at once; "
               "more are "
               "closed at accept. 0: a tenth of `COACH_HTTP_MAX_CONNECTIONS`; "
               "behind "
               "a load balancer, set it to `COACH_HTTP_MAX_CONNECTIONS`"},
              "max_connections_per_client"),
      Renamed({"http_listen_backlog", "COACH_HTTP_LISTEN_BACKLOG",
               &c.listen_backlog, kPositive,
               "Connections the kernel queues before accept"},
              "listen_backlog"),
      Renamed(
          {"http_io_threads", "COACH_HTTP_IO_THREADS", &c.io_threads,
           InRange(1, 64),
           "Event-loop threads, for HTTP and coach-server calls alike (each "
           "has its own connection to each coach-server)"},
          "io_threads"),
      Renamed(
          {"sse_heartbeat", "COACH_SSE_HEARTBEAT", &c.stream_heartbeat,
           kPositive, "A comment is sent on an event stream idle this long"},
          "stream_heartbeat"),
      Renamed({"sse_max_backlog_bytes", "COACH_SSE_MAX_BACKLOG_BYTES",
               &c.max_stream_backlog_bytes, kPositive,
               "A stream's client this far behind is cut"},
              "max_stream_backlog_bytes"),
      Renamed({"proxy_shutdown_grace", "COACH_PROXY_SHUTDOWN_GRACE",
               &c.shutdown_grace, kNonNegative,
               "On SIGTERM, requests in progress get this long"},
              "shutdown_grace"),
      {"readiness_interval", "COACH_READINESS_INTERVAL", &c.readiness_interval,
       kPositive, "/readyz asks coach-server's health at most this often"},
      Essential(
          {"cors_origins", "COACH_CORS_ORIGINS", &c.cors_origins, kAnyValue,
           "Browser origins allowed by CORS, comma-separated; `*`: any; empty: "
           "no CORS"}),
      {"cors_allowed_headers", "COACH_CORS_ALLOWED_HEADERS",
       &c.cors_allowed_headers, kAnyValue,
       "Request headers browsers may send (preflight's "
       "`Access-Control-Allow-Headers`), comma-separated"},
      {"cors_allow_credentials", "COACH_CORS_ALLOW_CREDENTIALS",
       &c.cors_allow_credentials, kAnyValue,
       "Allow credentials (cookies, HTTP auth) from the listed origins; "
       "needs an explicit `COACH_CORS_ORIGINS` (never with `*`)"},
      {"cors_max_age", "COACH_CORS_MAX_AGE", &c.cors_max_age, kNonNegative,
       "How long browsers may cache a CORS preflight"},
      {"access_log", "COACH_ACCESS_LOG", &c.access_log, kAnyValue,
       "One log line per request (method, route, status, duration, request "
       "id; never bodies)"},
  };
  for (Setting& row : LogSettings(c.log)) rows.push_back(std::move(row));
  return rows;
}

}  // namespace

absl::Status CrossCheckProxyConfig(const ProxyConfig& config) {
  if (!config.cors_allow_credentials) return absl::OkStatus();
  const auto has_star = [](const std::vector<std::string>& list) {
    return std::find(list.begin(), list.end(), "*") != list.end();
  };
  // The Fetch standard forbids it (a browser would refuse the answers), and
  // echoing any origin instead would let every site act with a visitor's
  // credentials.
  if (has_star(config.cors_origins)) {
    return absl::InvalidArgumentError(
        "COACH_CORS_ALLOW_CREDENTIALS (--cors_allow_credentials) needs an "
        "explicit list of origins in COACH_CORS_ORIGINS (--cors_origins), "
        "not `*`: credentials are never allowed to any origin");
  }
  // With credentials, `*` in Access-Control-Allow-Headers is a header name,
  // not a wildcard: a mistake either way.
  if (has_star(config.cors_allowed_headers)) {
    return absl::InvalidArgumentError(
        "COACH_CORS_ALLOWED_HEADERS (--cors_allowed_headers) cannot be `*` "
        "with COACH_CORS_ALLOW_CREDENTIALS: name the headers");
  }
  return absl::OkStatus();
}

absl::StatusOr<Startup<ProxyConfig>> LoadProxyConfig(int argc, char** argv) {
  return LoadSettings<ProxyConfig>(
      "coach-proxy",
      "The Coach AI Hub REST API, transcoded onto coach-server's gRPC "
      "services from their google.api.http annotations.",
      argc, argv, ProxySettings, CrossCheckProxyConfig);
}

}  // namespace coach::proxy
