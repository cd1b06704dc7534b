#include "proxy/coach_proxy.h"

#include <httplib.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/descriptor.h"
#include "proxy/http_errors.h"
#include "proxy/http_listener.h"
#include "proxy/transcoder.h"
#include "base/ids.h"
#include "base/log.h"
#include "base/request_id.h"

namespace coach::proxy {
namespace {

constexpr char kJsonContentType[] = "application/json; charset=utf-8";
constexpr char kRequestIdHeader[] = "X-Request-Id";
// Yields while waiting for the HTTP loop to start (it starts at once).
constexpr int kStartWaitSpins = 1000000;

// A client's request id is kept only if it is plain: it goes into logs and
// metadata.
std::string RequestIdOf(const httplib::Request& request) {
  const std::string given = request.get_header_value(kRequestIdHeader);
  return IsPlainRequestId(given) ? given : NewRandomId();
}

// The method as logged: a malformed request's "method" is client bytes
// (control characters, escape sequences) that must not reach the log.
absl::string_view LoggableMethod(const std::string& method) {
  static constexpr absl::string_view kKnown[] = {
      "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
  for (absl::string_view known : kKnown) {
    if (method == known) return known;
  }
  return "-";
}

void Reply(httplib::Response& response, const HttpError& error) {
  response.status = error.status;
  if (error.retry_after_seconds.has_value()) {
    response.set_header("Retry-After",
                        std::to_string(*error.retry_after_seconds));
  }
  response.set_content(error.body, kJsonContentType);
}

int64_t SecondsOf(absl::Duration d) { return absl::ToInt64Seconds(d); }

}  // namespace

CoachProxy::CoachProxy(const ProxyConfig& config, RouteTable routes)
    : config_(config),
      routes_(std::move(routes)),
      upstream_(config.grpc_target, config.upstream_deadline),
      http_(std::make_unique<httplib::Server>()) {}

CoachProxy::~CoachProxy() { Stop(); }

absl::StatusOr<std::unique_ptr<CoachProxy>> CoachProxy::Start(
    const ProxyConfig& config) {
  auto routes = RouteTable::FromServices(
      *google::protobuf::DescriptorPool::generated_pool(), config.services);
  if (!routes.ok()) return routes.status();
  std::unique_ptr<CoachProxy> proxy(new CoachProxy(config, *std::move(routes)));
  proxy->Configure();
  auto port = BindHttpServer(*proxy->http_, config.http_listen,
                             config.listen_backlog);
  if (!port.ok()) return port.status();
  proxy->port_ = *port;
  proxy->thread_ = std::thread([p = proxy.get()] { p->http_->listen_after_bind(); });
  // httplib's stop() is a no-op until the server loop runs: wait for it
  // (bounded), so that Stop() right after Start() cannot hang.
  for (int i = 0; i < kStartWaitSpins && !proxy->http_->is_running(); ++i) {
    std::this_thread::yield();
  }
  for (const Route& route : proxy->routes_.routes()) {
    LogInfo("route %s %s -> %s", route.http_method, route.path.text(),
            route.grpc_method);
  }
  return proxy;
}

void CoachProxy::Stop() {
  if (http_ != nullptr) http_->stop();
  if (thread_.joinable()) thread_.join();
}

void CoachProxy::Configure() {
  httplib::Server& http = *http_;
  // Deliberate settings, not httplib's defaults: see http_listener.h.
  TuneHttpServer(http, config_);

  const auto handler = [this](const httplib::Request& request,
                              httplib::Response& response) {
    Handle(request, response);
  };
  // Before any body is read: cpp-httplib 0.11 applies the body cap only to
  // Content-Length bodies, and inflates gzip bodies without a limit. A chunked
  // or encoded body would bypass the cap (measured: 100 MB read, 700 MB RSS).
  http.set_pre_routing_handler([this](const httplib::Request& request,
                                      httplib::Response& response) {
    const std::string transfer = request.get_header_value("Transfer-Encoding");
    const std::string encoding = request.get_header_value("Content-Encoding");
    if (!transfer.empty() && transfer != "identity") {
      Reply(response, MakeHttpError(411, v1::LENGTH_REQUIRED,
                                    "Le corps de la requête doit avoir un "
                                    "Content-Length (pas d'envoi par "
                                    "morceaux)."));
    } else if (!encoding.empty() && encoding != "identity") {
      Reply(response, MakeHttpError(415, v1::UNSUPPORTED_ENCODING,
                                    "Le corps de la requête ne doit pas être "
                                    "compressé."));
    } else {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    response.set_header(kRequestIdHeader, RequestIdOf(request));
    ApplyCors(request, response);
    return httplib::Server::HandlerResponse::Handled;
  });
  // One catch-all per verb: the route table decides, not httplib's router.
  http.Get(".*", handler);
  http.Post(".*", handler);
  http.Put(".*", handler);
  http.Patch(".*", handler);
  http.Delete(".*", handler);
  http.Options(".*", [this](const httplib::Request& request,
                            httplib::Response& response) {
    HandlePreflight(request, response);
  });

  // Errors httplib answers itself (413, 414, malformed requests) get the
  // documented body too. Our own error responses already have one.
  http.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    // Refused before routing: Handle() did not run, so no id was set yet.
    const std::string request_id = RequestIdOf(request);
    response.set_header(kRequestIdHeader, request_id);
    std::string message = "Requête HTTP invalide.";
    v1::ErrorReason reason = v1::INVALID_ARGUMENT;
    if (response.status == 413) {
      reason = v1::PAYLOAD_TOO_LARGE;
      message = absl::StrCat("Le corps de la requête dépasse ",
                             config_.max_body_bytes, " octets.");
    } else if (response.status == 414) {
      message = "L'URL de la requête est trop longue.";
    } else if (response.status >= 500) {
      reason = v1::INTERNAL;
      message = "Erreur serveur. Réessayez plus tard.";
    }
    Reply(response, MakeHttpError(response.status, reason, message));
    ApplyCors(request, response);
    if (config_.access_log) {
      LogInfo("http %s - status=%d (refused by the HTTP layer) request_id=%s",
              LoggableMethod(request.method), response.status, request_id);
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  // A handler that throws (a bug) must still answer in the documented shape.
  http.set_exception_handler([](const httplib::Request&,
                                httplib::Response& response,
                                std::exception_ptr) {
    LogError("unexpected exception in a request handler");
    Reply(response, MakeHttpError(500, v1::INTERNAL,
                                  "Erreur serveur. Réessayez plus tard."));
  });
}

void CoachProxy::ApplyCors(const httplib::Request& request,
                           httplib::Response& response) const {
  const std::string origin = request.get_header_value("Origin");
  if (origin.empty()) return;
  const bool any = std::find(config_.cors_origins.begin(),
                             config_.cors_origins.end(),
                             "*") != config_.cors_origins.end();
  const bool listed = std::find(config_.cors_origins.begin(),
                                config_.cors_origins.end(),
                                origin) != config_.cors_origins.end();
  if (!any && !listed) return;
  response.set_header("Access-Control-Allow-Origin", any ? "*" : origin);
  if (!any) response.set_header("Vary", "Origin");
  // Retry-After is not a CORS-safelisted response header: a page's script
  // sees it only when exposed.
  response.set_header("Access-Control-Expose-Headers",
                      absl::StrCat(kRequestIdHeader, ", Retry-After"));
}

void CoachProxy::HandlePreflight(const httplib::Request& request,
                                 httplib::Response& response) {
  ApplyCors(request, response);
  response.status = 204;
  if (!response.has_header("Access-Control-Allow-Origin")) return;
  response.set_header("Access-Control-Allow-Methods",
                      "GET, POST, PUT, PATCH, DELETE, OPTIONS");
  response.set_header("Access-Control-Allow-Headers",
                      absl::StrCat("Authorization, Content-Type, ",
                                   kRequestIdHeader));
  response.set_header("Access-Control-Max-Age",
                      std::to_string(SecondsOf(config_.cors_max_age)));
}

void CoachProxy::Handle(const httplib::Request& request,
                        httplib::Response& response) {
  const absl::Time started = absl::Now();
  const std::string request_id = RequestIdOf(request);
  response.set_header(kRequestIdHeader, request_id);
  ApplyCors(request, response);

  const RouteTable::Match match = routes_.Find(request.method, request.path);
  if (match.route == nullptr) {
    if (match.allowed_methods.empty()) {
      Reply(response,
            MakeHttpError(404, v1::ROUTE_NOT_FOUND,
                          absl::StrCat("Aucune route ", request.method, " ",
                                       request.path, ".")));
    } else {
      response.set_header("Allow", absl::StrJoin(match.allowed_methods, ", "));
      Reply(response,
            MakeHttpError(405, v1::METHOD_NOT_ALLOWED,
                          absl::StrCat("Méthode ", request.method,
                                       " non autorisée sur ", request.path,
                                       " (autorisées : ",
                                       absl::StrJoin(match.allowed_methods, ", "),
                                       ").")));
    }
  } else {
    const Route& route = *match.route;
    auto upstream_request =
        RequestFromHttp(route, match.bindings, request.params, request.body);
    if (!upstream_request.ok()) {
      Reply(response, MakeHttpError(400, v1::INVALID_ARGUMENT,
                                    upstream_request.status().message()));
    } else {
      std::unique_ptr<google::protobuf::Message> upstream_response(
          google::protobuf::MessageFactory::generated_factory()
              ->GetPrototype(route.method->output_type())
              ->New());
      const grpc::Status status =
          upstream_.Call(route.grpc_method, **upstream_request,
                         *upstream_response, request_id,
                         request.get_header_value("Authorization"));
      if (!status.ok()) {
        if (status.error_details().empty()) {
          // A channel failure, not a server answer: worth a log line.
          LogWarning("upstream %s failed: code=%d %s request_id=%s",
                     route.grpc_method, static_cast<int>(status.error_code()),
                     status.error_message(), request_id);
        }
        Reply(response, HttpErrorFromGrpc(status));
        if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
          // RFC 6750 §3: the scheme, and why a token that was sent failed.
          response.set_header("WWW-Authenticate",
                              request.has_header("Authorization")
                                  ? "Bearer error=\"invalid_token\""
                                  : "Bearer");
        }
      } else if (auto json = ResponseToJson(*upstream_response); json.ok()) {
        response.status = 200;
        response.set_content(*json, kJsonContentType);
      } else {
        Reply(response, MakeHttpError(500, v1::INTERNAL,
                                      "Erreur serveur. Réessayez plus tard."));
      }
    }
  }

  if (config_.access_log) {
    LogInfo("http %s %s status=%d duration_ms=%.1f request_id=%s",
            request.method,
            match.route != nullptr ? match.route->path.text() : "-",
            response.status,
            absl::ToDoubleMilliseconds(absl::Now() - started), request_id);
  }
}

}  // namespace coach::proxy
