#include "server/app/metrics_endpoint.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace coach {
namespace {

http::Response Text(int status, std::string body) {
  return http::Response{
      .status = status,
      .headers = {{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}},
      .body = std::move(body)};
}

}  // namespace

absl::StatusOr<std::unique_ptr<http::Server>> StartMetricsEndpoint(
    const std::string& listen, std::function<std::string()> render) {
  http::ServerOptions options;
  options.listen = listen;
  // A scrape is a bodiless GET.
  options.max_body_bytes = 0;
  options.refusal = [](http::Refusal refusal, const http::Request&) {
    return Text(http::StatusOf(refusal), "refused\n");
  };
  return http::Server::Start(
      std::move(options),
      [render = std::move(render)](std::shared_ptr<http::Exchange> exchange) {
        const http::Request& request = exchange->request();
        if (request.path != "/metrics") {
          exchange->Reply(Text(404, "not found: GET /metrics\n"));
        } else if (request.method != "GET" && request.method != "HEAD") {
          http::Response refused = Text(405, "method not allowed\n");
          refused.headers.push_back({"Allow", "GET, HEAD"});
          exchange->Reply(std::move(refused));
        } else {
          exchange->Reply(Text(200, render()));
        }
      });
}

}  // namespace coach
