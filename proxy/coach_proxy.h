// CoachProxy: coach-proxy's HTTP server. Serves the REST routes of the
// google.api.http annotations by transcoding each request onto its RPC:
//
//   HTTP request -> RouteTable::Find -> RequestFromHttp -> Upstream::Call
//   -> ResponseToJson (or HttpErrorFromGrpc) -> HTTP response
//
// It knows no route by name. Around that: request ids, CORS, limits, one
// access-log line per request.
#ifndef COACH_PROXY_COACH_PROXY_H_
#define COACH_PROXY_COACH_PROXY_H_

#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "proxy/proxy_config.h"
#include "proxy/route_table.h"
#include "proxy/upstream.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace coach::proxy {

class CoachProxy {
 public:
  // Builds the route table from the generated descriptors of
  // config.services, binds config.http_listen and starts serving on a
  // background thread.
  static absl::StatusOr<std::unique_ptr<CoachProxy>> Start(
      const ProxyConfig& config);
  ~CoachProxy();

  int port() const { return port_; }
  const RouteTable& routes() const { return routes_; }

  // Stops accepting and returns once the server thread has ended.
  void Stop();

 private:
  CoachProxy(const ProxyConfig& config, RouteTable routes);
  void Configure();
  void Handle(const httplib::Request& request, httplib::Response& response);
  void HandlePreflight(const httplib::Request& request,
                       httplib::Response& response);
  // Adds the CORS headers when the request's Origin is allowed.
  void ApplyCors(const httplib::Request& request,
                 httplib::Response& response) const;

  const ProxyConfig config_;
  const RouteTable routes_;
  Upstream upstream_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace coach::proxy

#endif  // COACH_PROXY_COACH_PROXY_H_
