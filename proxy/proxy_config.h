// ProxyConfig: every setting of coach-proxy in one place, with its default.
// proxy_flags.cc exposes each one as a flag and an environment variable.
#ifndef COACH_PROXY_PROXY_CONFIG_H_
#define COACH_PROXY_PROXY_CONFIG_H_

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace coach::proxy {

struct ProxyConfig {
  // host:port. All interfaces: the proxy is the API's public face (front-ends
  // reach it); coach-server behind it stays on loopback. Port 0: any free one.
  std::string http_listen = "0.0.0.0:3000";
  // coach-server's gRPC address.
  std::string grpc_target = "127.0.0.1:50051";
  // The gRPC services whose google.api.http rules are served.
  std::vector<std::string> services = {"coach.v1.ChatService",
                                       "coach.v1.UserService"};

  // Each upstream call gets this long; above the server's slowest path (an
  // AI reply with its retries).
  absl::Duration upstream_deadline = absl::Seconds(60);

  // Request limits. The largest valid body is a 4,000-character message
  // (≤ 16 KB of UTF-8) in JSON; 64 KB leaves room and stops abuse early.
  size_t max_body_bytes = 64 * 1024;
  absl::Duration read_timeout = absl::Seconds(10);
  absl::Duration write_timeout = absl::Seconds(10);
  // Idle keep-alive connections are closed after this. Each open connection
  // holds a worker thread (cpp-httplib serves a connection on one thread), so
  // idle ones must not linger.
  absl::Duration keep_alive_timeout = absl::Seconds(10);
  // Requests served on one keep-alive connection before it is recycled.
  int keep_alive_max_requests = 100000;
  // Pending connections the kernel queues before accept (capped by
  // net.core.somaxconn); httplib's own 5 drops bursts.
  int listen_backlog = 4096;
  // Worker threads = the most connections served at once (more wait for a
  // free worker). Each holds one connection and, during a send, its upstream
  // call for as long as the AI takes: size for concurrent clients, not cores.
  // An idle worker costs a stack mapping, little resident memory.
  int worker_threads = 512;

  // CORS: origins allowed to call from a browser; "*" allows any. The API
  // uses no cookies or browser credentials, so "*" exposes nothing a
  // non-browser client could not already reach; set an explicit list to
  // keep other sites' pages from calling it.
  std::vector<std::string> cors_origins = {"*"};
  // Browsers may cache a preflight answer this long.
  absl::Duration cors_max_age = absl::Minutes(10);

  // One access-log line per request.
  bool access_log = true;
};

}  // namespace coach::proxy

#endif  // COACH_PROXY_PROXY_CONFIG_H_
