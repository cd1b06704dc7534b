// ProxyConfig: every setting of coach-proxy in one place, with its default.
// proxy_flags.cc exposes each one as a flag and an environment variable.
#ifndef COACH_PROXY_PROXY_CONFIG_H_
#define COACH_PROXY_PROXY_CONFIG_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "base/log.h"
#include "proxy/upstream/upstream.h"

namespace coach::proxy {

struct ProxyConfig {
  // host:port. All interfaces: the proxy is the API's public face (front-ends
  // reach it); coach-server behind it stays on loopback. Port 0: any free one.
  std::string http_listen = "0.0.0.0:3000";
  // GET /metrics (Prometheus text) on its own listener, host:port (e.g.
  // "127.0.0.1:9465"), never on the public port; empty: not served.
  std::string metrics_listen;
  // coach-server's gRPC address.
  std::string grpc_target = "127.0.0.1:50051";
  // The gRPC services whose google.api.http rules are served.
  std::vector<std::string> services = {"coach.v1.ChatService",
                                       "coach.v1.UserService"};

  // Each upstream call gets this long; above the server's slowest path (an
  // AI reply with its retries).
  absl::Duration upstream_deadline = absl::Seconds(60);
  // GET calls (reads) get this long, and meanwhile wait for a connecting or
  // restarting coach-server instead of failing at once.
  absl::Duration upstream_read_deadline = absl::Seconds(5);
  // Longest pause between attempts to reconnect to a coach-server that is
  // down: REST recovers this soon after it listens again.
  absl::Duration upstream_reconnect_max = absl::Milliseconds(500);
  // The largest answer taken from coach-server (a long session's messages).
  int upstream_max_response_bytes = 64 * 1024 * 1024;
  // The largest header block taken from coach-server (its metadata: an
  // error's details are well under 1 KB). gRPC's own default is 8 KiB.
  int upstream_max_header_list_bytes = 16 * 1024;
  // The gRPC client: native (on the event loop) or grpc (gRPC's C++
  // client; the reference, an escape hatch).
  UpstreamClient upstream_client = UpstreamClient::kNative;
  // One connection attempt to a coach-server: TCP, then its HTTP/2
  // SETTINGS (a peer that accepts and says nothing fails after this).
  absl::Duration upstream_connect_timeout = absl::Seconds(1);
  // Keepalive: a PING after this long without anything received from a
  // coach-server, with or without calls (0: none); no acknowledgement
  // within the timeout drops the connection (also TCP_USER_TIMEOUT), so a
  // server whose host vanished stops getting calls within both. gRPC's
  // examples' values; coach-server accepts PINGs every 5 s
  // (COACH_GRPC_KEEPALIVE_MIN_TIME).
  absl::Duration upstream_keepalive_time = absl::Seconds(10);
  absl::Duration upstream_keepalive_timeout = absl::Seconds(5);
  // A dns: target's name is resolved again this often (and after a
  // connection fails): new servers get calls, those that left get none.
  absl::Duration upstream_resolve_interval = absl::Seconds(30);
  // TLS to coach-server: on once upstream_tls_ca is set (the CA the
  // servers' certificates must chain to; ALPN h2 required). A client
  // certificate and its key for mutual TLS (both or neither). The name
  // checked in a server's certificate: upstream_tls_server_name, else the
  // target's host (a name, or an address matched against IP entries).
  std::string upstream_tls_ca;
  std::string upstream_tls_cert;
  std::string upstream_tls_key;
  std::string upstream_tls_server_name;

  // HTTPS on http_listen: the certificate chain (PEM, leaf first) and its
  // key, for deployments without a TLS-terminating load balancer; both
  // empty: plain HTTP.
  std::string http_tls_cert;
  std::string http_tls_key;
  // Every TLS file of the proxy is looked at for a change at most this
  // often (a new handshake then uses the new files); SIGHUP re-reads them
  // at once.
  absl::Duration tls_check_interval = absl::Seconds(1);

  // Request limits. The largest valid body is a 4,000-character message
  // (<= 16 KB of UTF-8) in JSON; 64 KB leaves room and stops abuse early.
  size_t max_body_bytes = 64 * 1024;
  // The request target (path and query); longer gets 414.
  size_t max_url_bytes = 8 * 1024;
  // The request line and headers together (nginx: 4 x 8 KB, Envoy: 60 KB).
  size_t max_header_bytes = 16 * 1024;
  // Header lines (Envoy's default).
  int max_header_count = 100;
  // Time to receive a request's line and headers, once it has begun; a new
  // connection's first request, from its accept.
  absl::Duration header_timeout = absl::Seconds(10);
  // Time to receive a request's body.
  absl::Duration body_timeout = absl::Seconds(10);
  // One write to a client (a response, or one event of a stream); written
  // bytes a client does not take for this long cut its connection.
  absl::Duration write_timeout = absl::Seconds(10);
  // Idle keep-alive connections are closed after this.
  absl::Duration keep_alive_timeout = absl::Seconds(60);
  // Connections open at once. When full, a new connection replaces the one
  // idle the longest (no request in progress); none idle: it is closed.
  // Room for 10,000 live streams and the reads beside them (~8 KB each
  // while streaming, docs/performance.md).
  int max_connections = 20000;
  // Connections of one client address (IPv4 address, IPv6 /64) at once; more
  // are closed at accept. 0: max_connections / 10. Behind a load balancer
  // or reverse proxy (every connection from its address), set it to
  // max_connections.
  int max_connections_per_client = 0;
  // Pending connections the kernel queues before accept (capped by
  // net.core.somaxconn).
  int listen_backlog = 4096;
  // Event-loop threads. Connections hold no thread, so this is about CPU:
  // JSON and gRPC work runs on gRPC's own threads.
  int io_threads = 1;

  // Streams (server-streaming RPCs as Server-Sent Events): a comment is sent
  // after this long without an event, so that intermediaries keep the
  // connection; a client that falls this far behind is cut.
  absl::Duration stream_heartbeat = absl::Seconds(15);
  size_t max_stream_backlog_bytes = 1024 * 1024;

  // SIGTERM: requests in progress get this long to finish.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // /readyz asks coach-server's health service at most this often.
  absl::Duration readiness_interval = absl::Seconds(1);

  // CORS: origins allowed to call from a browser; "*" allows any. The API
  // uses no cookies or browser credentials, so "*" exposes nothing a
  // non-browser client could not already reach; set an explicit list to
  // keep other sites' pages from calling it.
  std::vector<std::string> cors_origins = {"*"};
  // Request headers a page may send (a preflight's
  // Access-Control-Allow-Headers): Authorization for COACH_AUTH=jwt's bearer
  // tokens, Content-Type for JSON bodies.
  // traceparent and tracestate: a page's tracing SDK (W3C Trace Context).
  // (The headers the API's methods declare, coach.v1.request_headers, are
  // allowed as well.)
  std::vector<std::string> cors_allowed_headers = {
      "Authorization", "Content-Type", "X-Request-Id", "traceparent",
      "tracestate"};
  // Access-Control-Allow-Credentials: true, for pages that send cookies or
  // HTTP authentication (fetch's credentials: "include"). Only with an
  // explicit origin list: `*` with credentials is refused at start (any
  // site could then act with a visitor's credentials).
  bool cors_allow_credentials = false;
  // Browsers may cache a preflight answer this long.
  absl::Duration cors_max_age = absl::Minutes(10);

  // One access-log line per request.
  bool access_log = true;

  // COACH_LOG_FORMAT, COACH_LOG_LEVEL (base/log.h).
  LogOptions log;
};

}  // namespace coach::proxy

#endif  // COACH_PROXY_PROXY_CONFIG_H_
