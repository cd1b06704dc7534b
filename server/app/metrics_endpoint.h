// coach-server's metrics over HTTP (COACH_METRICS_LISTEN): GET /metrics
// answers what `render` returns (CoachServer::RenderMetrics), in the
// Prometheus text format 0.0.4, on the event-driven http::Server (http/):
// a scrape never holds one of gRPC's threads. Any other path is 404, any
// other method on /metrics 405; no request body is read (max 0 bytes).
#ifndef COACH_SERVER_APP_METRICS_ENDPOINT_H_
#define COACH_SERVER_APP_METRICS_ENDPOINT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "http/server.h"

namespace coach {

// Listens on `listen` ("127.0.0.1:9464"; port 0: any free one), a clear
// error if it cannot. `render` runs on the endpoint's thread, from any
// number of scrapes: it must be thread-safe and outlive the server.
absl::StatusOr<std::unique_ptr<http::Server>> StartMetricsEndpoint(
    const std::string& listen, std::function<std::string()> render);

}  // namespace coach

#endif  // COACH_SERVER_APP_METRICS_ENDPOINT_H_
