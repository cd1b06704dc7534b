// Setting up a cpp-httplib server the way coach-proxy needs it, in one place
// so that the benchmark's bare baseline server is configured identically.
//
// cpp-httplib's defaults suit a small embedded server, not a proxy:
// - Nagle is on: each small response waits for the client's delayed ACK
//   (~40 ms); keep-alive connections close after 5 requests. Measured on this
//   machine with Debian's 0.11.4: ~300 req/s at 8 connections with the
//   defaults, tens of thousands with nodelay and a long keep-alive.
// - The listen backlog is 5: a burst of new connections (a front-end fleet
//   reconnecting, a load test) overflows it, and the kernel makes each
//   dropped client retry its SYN after 1 s, then 3 s. We raise it after bind.
#ifndef COACH_PROXY_HTTP_LISTENER_H_
#define COACH_PROXY_HTTP_LISTENER_H_

#include <string>

#include "absl/status/statusor.h"
#include "proxy/proxy_config.h"

namespace httplib {
class Server;
}

namespace coach::proxy {

// Applies coach-proxy's connection settings (nodelay, keep-alive, worker
// pool, timeouts, body cap) to `server`.
void TuneHttpServer(httplib::Server& server, const ProxyConfig& config);

// Binds `listen` ("host:port", port 0 = any free one) with a listen backlog
// of `backlog`, and returns the bound port. The server then serves with
// listen_after_bind().
absl::StatusOr<int> BindHttpServer(httplib::Server& server,
                                   const std::string& listen, int backlog);

}  // namespace coach::proxy

#endif  // COACH_PROXY_HTTP_LISTENER_H_
