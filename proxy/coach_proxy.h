// CoachProxy: coach-proxy's HTTP front. Serves the REST routes of the
// google.api.http annotations by transcoding each request onto its RPC:
//
//   http::Server -> RouteTable::Find -> RequestFromHttp -> Upstream (async)
//   -> ResponseToJson (or HttpErrorFromGrpc) -> the exchange's answer
//
// Server-streaming RPCs are served as Server-Sent Events: one event per
// stream message, `data:` its protobuf JSON; an error after the first event
// as `event: error` with the documented body. It knows no route by name.
// Around that: request ids, CORS, /healthz and /readyz, /openapi.json
// (openapi.h, built once at start), one access-log line
// per request, and the client's hang-up cancelling its call. Metrics
// (GET /metrics, Prometheus text) are served on a listener of their own
// (config.metrics_listen), never on the public port (there /metrics is
// 404). A request for an API route whose Authorization, Idempotency-Key
// or Content-Type header is repeated is 400: which one the client meant is
// unknowable, and the first must not silently win.
//
// No thread waits on coach-server: the event loop parses, routes, calls
// and answers (proxy/upstream.h). Thread-safe.
#ifndef COACH_PROXY_COACH_PROXY_H_
#define COACH_PROXY_COACH_PROXY_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "base/metrics.h"
#include "http/event_loop.h"
#include "http/server.h"
#include "proxy/proxy_config.h"
#include "proxy/route_table.h"
#include "proxy/upstream/upstream.h"

namespace coach::proxy {

class CoachProxy {
 public:
  // Builds the route table from the generated descriptors of
  // config.services, binds config.http_listen and starts serving.
  static absl::StatusOr<std::unique_ptr<CoachProxy>> Start(
      const ProxyConfig& config);
  ~CoachProxy();

  int port() const { return http_->port(); }
  // The metrics listener's port; 0 if config.metrics_listen is empty.
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  const RouteTable& routes() const { return routes_; }

  // Stops accepting, lets requests in progress finish for up to
  // config.shutdown_grace (or `grace`), then closes everything. Idempotent.
  void Stop();
  void Stop(absl::Duration grace);

  // Re-reads the TLS files now (the HTTPS front's, the client's to
  // coach-server): OK with what was re-read for a log line, "" when there
  // is no TLS; else the error, the files read before staying in use. New
  // handshakes use them (with COACH_UPSTREAM_CLIENT=grpc, gRPC's watcher
  // takes them within COACH_PROXY_TLS_CHECK_INTERVAL). coach-proxy calls
  // it on SIGHUP. Any thread.
  absl::StatusOr<std::string> Reload();

 private:
  struct Pending;  // one request being answered
  struct TlsSources {
    std::shared_ptr<TlsContextSource> upstream;  // null: plaintext
    std::shared_ptr<TlsContextSource> http;      // null: plain HTTP
  };
  static absl::StatusOr<TlsSources> MakeTlsSources(const ProxyConfig& config);
  CoachProxy(const ProxyConfig& config, RouteTable routes, TlsSources tls);

  void Handle(std::shared_ptr<http::Exchange> exchange);
  // Answers a preflight, or one of the proxy's own paths (/healthz, /readyz,
  // /openapi.json; 405 for a method other than GET), logged: false if the
  // request is none of them. `method`: the request's, HEAD read as GET.
  bool HandleOperation(std::shared_ptr<Pending>& pending,
                       absl::string_view method);
  // 404 for a path no route has, 405 (with Allow; HEAD wherever GET is) for
  // a method it lacks; logged.
  void RefuseUnrouted(Pending& pending, RouteTable::Match match);
  // `status` of a call that `waited` for a server: UNAVAILABLE if its
  // deadline passed while no coach-server was reachable (503, not 504).
  grpc::Status Unreached(bool waited, const grpc::Status& status) const;
  http::Response Refuse(http::Refusal refusal, const http::Request& request);
  void HandlePreflight(Pending& pending);
  void HandleReadiness(std::shared_ptr<Pending> pending);
  // 200 {"status":"SERVING"} or 503 UNAVAILABLE, logged.
  void AnswerReadiness(Pending& pending, bool ready);
  void CallUnary(std::shared_ptr<Pending> pending, const Route& route,
                 std::unique_ptr<google::protobuf::Message> request);
  // A server stream of google.api.HttpBody: one response whose body is the
  // bodies' bytes in order, under the first one's content type (a download,
  // e.g. the user data export), chunked as they come.
  void CallBodyStream(std::shared_ptr<Pending> pending, const Route& route,
                      std::unique_ptr<google::protobuf::Message> request);
  void CallStream(std::shared_ptr<Pending> pending, const Route& route,
                  std::unique_ptr<google::protobuf::Message> request);
  // The metrics listener's requests: GET /metrics, else 404 or 405.
  void HandleMetrics(const std::shared_ptr<http::Exchange>& exchange);
  absl::Status StartMetrics();
  // The CORS headers for `origin` (none when it is not allowed).
  std::vector<http::Header> CorsHeaders(absl::string_view origin) const;
  // Once per request, when it is answered: access log and metrics. `code`:
  // coach-server's answer, when it was asked; `reason`: an error's.
  void LogAccess(const Pending& pending, int status,
                 std::optional<grpc::StatusCode> code = std::nullopt,
                 absl::string_view reason = {}) const;
  void CountUpstreamError(const grpc::Status& status) const;

  const ProxyConfig config_;
  const RouteTable routes_;
  // GET /openapi.json: generated once, before the server starts.
  std::string openapi_;
  // Before the server: its threads record into these.
  metrics::Registry registry_;
  metrics::Family<metrics::Counter>& requests_;
  metrics::Family<metrics::Histogram>& durations_;
  metrics::Gauge& in_flight_;
  metrics::Gauge& connections_;
  metrics::Family<metrics::Counter>& upstream_errors_;
  // Connections shed by the HTTP server, by http::Shed.
  metrics::Family<metrics::Counter>& shed_;
  metrics::Counter& shed_idle_evicted_;
  metrics::Counter& shed_client_limit_;
  metrics::Counter& shed_table_full_;
  // Per route (same index as routes_.routes()), the series a request
  // answered 200 records into, looked up once rather than per request.
  struct RouteSeries {
    metrics::Counter* ok = nullptr;
    metrics::Histogram* duration = nullptr;
  };
  static std::vector<RouteSeries> SeriesOf(
      const RouteTable& routes, metrics::Family<metrics::Counter>& requests,
      metrics::Family<metrics::Histogram>& durations);
  const std::vector<RouteSeries> route_series_;
  // CORS answers' header lists, from the config and the routes' headers.
  static std::string CorsAllowedHeaders(const ProxyConfig& config,
                                        const RouteTable& routes);
  static std::string CorsExposedHeaders(const RouteTable& routes);
  const std::string cors_allowed_headers_;
  const std::string cors_exposed_headers_;
  const TlsSources tls_;
  // The event loop of both the HTTP server and the upstream calls: a
  // request, its call and its answer stay on one thread. Declared before
  // both: it outlives them.
  http::EventLoop loop_;
  Upstream upstream_;
  std::unique_ptr<http::Server> http_;
  // GET /metrics, when config.metrics_listen is set.
  std::unique_ptr<http::Server> metrics_;
  // http_ for the server's own threads, which may run before Start() has
  // stored http_.
  std::atomic<const http::Server*> serving_{nullptr};

  // /readyz: the last answer of coach-server's health, and who waits for
  // the next one.
  absl::Mutex readiness_mu_;
  absl::Time readiness_checked_ ABSL_GUARDED_BY(readiness_mu_) =
      absl::InfinitePast();
  bool ready_ ABSL_GUARDED_BY(readiness_mu_) = false;
  bool readiness_in_flight_ ABSL_GUARDED_BY(readiness_mu_) = false;
  std::vector<std::shared_ptr<Pending>> readiness_waiters_
      ABSL_GUARDED_BY(readiness_mu_);
};

}  // namespace coach::proxy

#endif  // COACH_PROXY_COACH_PROXY_H_
