#include "proxy/coach_proxy.h"

#include "google/api/httpbody.pb.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/request_id.h"
#include "base/trace_context.h"
#include "base/url.h"
#include "google/protobuf/descriptor.h"
#include "grpc/health/v1/health.pb.h"
#include "protos/api_descriptor_set.h"
#include "proxy/http_errors.h"
#include "proxy/openapi.h"
#include "proxy/proxy_flags.h"
#include "proxy/transcoder.h"

namespace coach::proxy {
namespace {

using google::protobuf::Message;

constexpr char kJsonContentType[] = "application/json; charset=utf-8";
// A server stream of this type is one HTTP body in pieces, not events.
constexpr char kHttpBodyType[] = "google.api.HttpBody";
constexpr char kRequestIdHeader[] = "X-Request-Id";
constexpr char kHealthCheckMethod[] = "/grpc.health.v1.Health/Check";
// An SSE comment: ignored by EventSource and fetch readers alike.
constexpr char kStreamHeartbeat[] = ": keep-alive\n\n";
constexpr char kServerError[] = "Erreur serveur. Réessayez plus tard.";
constexpr char kMetricsContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";
// Request headers whose value decides who acts or what is sent: a request
// carrying one twice is refused, not read by its first copy. So is every
// header a route forwards (its method's coach.v1.request_headers).
constexpr const char* kSingleHeaders[] = {"Authorization", "Content-Type"};

// gRPC metadata's rule for a value: printable ASCII.
bool IsPrintableAscii(absl::string_view value) {
  return std::all_of(value.begin(), value.end(),
                     [](char c) { return c >= 0x20 && c < 0x7F; });
}

// True if `request` carries `name` more than once.
bool IsRepeated(const http::Request& request, absl::string_view name) {
  int seen = 0;
  for (const http::Header& header : request.headers) {
    if (absl::EqualsIgnoreCase(header.name, name) && ++seen > 1) return true;
  }
  return false;
}

// The first single header (kSingleHeaders, then those `route` forwards)
// that `request` carries more than once; empty if none.
std::string RepeatedSingleHeader(const Route& route,
                                 const http::Request& request) {
  for (const char* name : kSingleHeaders) {
    if (IsRepeated(request, name)) return name;
  }
  for (const HeaderMapping& header : route.request_headers) {
    if (IsRepeated(request, header.http)) return header.http;
  }
  return "";
}

// The first header `route` forwards that gRPC metadata cannot carry in
// `request` (not printable ASCII); null if none.
const HeaderMapping* UnforwardableHeader(const Route& route,
                                         const http::Request& request) {
  for (const HeaderMapping& header : route.request_headers) {
    if (!IsPrintableAscii(request.header(header.http))) return &header;
  }
  return nullptr;
}

// The method as logged: a malformed request's "method" is client bytes
// (control characters, escape sequences) that must not reach the log.
absl::string_view LoggableMethod(absl::string_view method) {
  static constexpr absl::string_view kKnown[] = {
      "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
  for (absl::string_view known : kKnown) {
    if (method == known) return known;
  }
  return "-";
}

// A client's request id is kept only if it is plain: it goes into logs and
// metadata.
std::string RequestIdOf(const http::Request& request) {
  std::string given(request.header(kRequestIdHeader));
  return IsPlainRequestId(given) ? given : NewRequestId();
}

// "application/json; charset=utf-8" -> "application/json".
std::string MediaType(absl::string_view content_type) {
  const size_t semicolon = content_type.find(';');
  return absl::AsciiStrToLower(
      absl::StripAsciiWhitespace(content_type.substr(0, semicolon)));
}

std::unique_ptr<Message> NewMessage(const google::protobuf::Descriptor* type) {
  return std::unique_ptr<Message>(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(type)
          ->New());
}

// `message` read from `bytes` and printed as the API's JSON.
absl::StatusOr<std::string> JsonOf(const std::string& bytes,
                                   const google::protobuf::Descriptor* type) {
  std::unique_ptr<Message> message = NewMessage(type);
  if (!message->ParseFromString(bytes)) {
    return absl::InternalError("unreadable upstream message");
  }
  return ResponseToJson(*message);
}

std::vector<std::string> ReadMethods(const RouteTable& routes) {
  std::vector<std::string> methods;
  for (const Route& route : routes.routes()) {
    if (route.http_method == "GET") methods.push_back(route.grpc_method);
  }
  return methods;
}

UpstreamOptions UpstreamOptionsOf(const ProxyConfig& config,
                                  const RouteTable& routes,
                                  std::shared_ptr<TlsContextSource> tls) {
  UpstreamOptions options;
  options.tls = std::move(tls);
  options.tls_server_name = config.upstream_tls_server_name;
  options.target = config.grpc_target;
  options.reconnect_max_backoff = config.upstream_reconnect_max;
  options.max_response_bytes = config.upstream_max_response_bytes;
  options.max_header_list_bytes = config.upstream_max_header_list_bytes;
  options.client = config.upstream_client;
  options.connect_timeout = config.upstream_connect_timeout;
  options.keepalive_time = config.upstream_keepalive_time > absl::ZeroDuration()
                               ? config.upstream_keepalive_time
                               : absl::InfiniteDuration();
  options.keepalive_timeout = config.upstream_keepalive_timeout;
  options.resolve_interval = config.upstream_resolve_interval;
  options.read_methods = ReadMethods(routes);
  options.shards = config.io_threads;
  options.user_agent = absl::StrCat("coach-proxy/", COACH_VERSION);
  return options;
}

}  // namespace

struct CoachProxy::Pending {
  std::shared_ptr<http::Exchange> exchange;
  std::string request_id;
  // The W3C trace the request continues (or starts), under the proxy's span:
  // sent to coach-server, logged.
  TraceContext trace;
  std::string tracestate;  // forwarded with a continued trace only
  std::vector<http::Header> cors;
  absl::Time started;
  std::string route = "-";              // the route's template, for logs
  const RouteSeries* series = nullptr;  // the route's, once matched

  const http::Request& request() const { return exchange->request(); }

  // The headers every answer carries, then `content_type`.
  std::vector<http::Header> Headers(std::string content_type) const {
    std::vector<http::Header> headers;
    headers.reserve(cors.size() + 2);
    headers.push_back({kRequestIdHeader, request_id});
    headers.insert(headers.end(), cors.begin(), cors.end());
    if (!content_type.empty()) {
      headers.push_back({"Content-Type", std::move(content_type)});
    }
    return headers;
  }
};

// Request durations: from a cached read to a slow AI reply.
const std::vector<double> kDurationBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                              0.05,  0.1,    0.25,  0.5,  1,
                                              2.5,   5,      10,    30,   60};

std::vector<CoachProxy::RouteSeries> CoachProxy::SeriesOf(
    const RouteTable& routes, metrics::Family<metrics::Counter>& requests,
    metrics::Family<metrics::Histogram>& durations) {
  std::vector<CoachProxy::RouteSeries> series;
  for (const Route& route : routes.routes()) {
    const std::string path(route.path.text());
    series.push_back(
        {.ok = &requests.WithLabels({path, route.http_method, "200"}),
         .duration = &durations.WithLabels({path})});
  }
  return series;
}

// A preflight's Access-Control-Allow-Headers: the configured headers, then
// every header a route forwards, once each.
std::string CoachProxy::CorsAllowedHeaders(const ProxyConfig& config,
                                           const RouteTable& routes) {
  std::vector<std::string> allowed = config.cors_allowed_headers;
  for (const Route& route : routes.routes()) {
    for (const HeaderMapping& header : route.request_headers) {
      if (std::find(allowed.begin(), allowed.end(), header.http) ==
          allowed.end()) {
        allowed.push_back(header.http);
      }
    }
  }
  return absl::StrJoin(allowed, ", ");
}

// Access-Control-Expose-Headers: X-Request-Id, Retry-After,
// WWW-Authenticate and every header a route copies from its response
// metadata: none is CORS-safelisted, so a page's script sees them only when
// exposed.
std::string CoachProxy::CorsExposedHeaders(const RouteTable& routes) {
  std::vector<std::string> exposed = {kRequestIdHeader, "Retry-After",
                                      "WWW-Authenticate"};
  for (const Route& route : routes.routes()) {
    for (const HeaderMapping& header : route.response_headers) {
      if (std::find(exposed.begin(), exposed.end(), header.http) ==
          exposed.end()) {
        exposed.push_back(header.http);
      }
    }
  }
  return absl::StrJoin(exposed, ", ");
}

CoachProxy::CoachProxy(const ProxyConfig& config, RouteTable routes,
                       TlsSources tls)
    : config_(config),
      routes_(std::move(routes)),
      requests_(registry_.AddCounter(
          "coach_proxy_http_requests_total",
          "HTTP requests answered, by route template, method and status.",
          {"route", "method", "status"})),
      durations_(registry_.AddHistogram(
          "coach_proxy_http_request_duration_seconds",
          "Time from a request's arrival to its answer (a stream: to its "
          "end), by route template.",
          {"route"}, kDurationBuckets)),
      in_flight_(registry_
                     .AddGauge("coach_proxy_http_requests_in_flight",
                               "Requests received and not yet answered.")
                     .WithLabels({})),
      connections_(registry_
                       .AddGauge("coach_proxy_http_connections",
                                 "Client connections open.")
                       .WithLabels({})),
      upstream_errors_(registry_.AddCounter(
          "coach_proxy_upstream_errors_total",
          "Calls to coach-server that did not end OK, by gRPC code.",
          {"code"})),
      shed_(registry_.AddCounter(
          "coach_proxy_http_connections_shed_total",
          "Client connections closed to keep within the connection limits: "
          "idle_evicted (idle the longest, for a new one, the table full), "
          "client_limit (a new one over the per-client limit), table_full "
          "(a new one, the table full and none idle).",
          {"reason"})),
      shed_idle_evicted_(shed_.WithLabels({"idle_evicted"})),
      shed_client_limit_(shed_.WithLabels({"client_limit"})),
      shed_table_full_(shed_.WithLabels({"table_full"})),
      route_series_(SeriesOf(routes_, requests_, durations_)),
      cors_allowed_headers_(CorsAllowedHeaders(config_, routes_)),
      cors_exposed_headers_(CorsExposedHeaders(routes_)),
      tls_(std::move(tls)),
      loop_(config_.io_threads),
      upstream_(loop_.context(),
                UpstreamOptionsOf(config_, routes_, tls_.upstream)) {}

absl::StatusOr<CoachProxy::TlsSources> CoachProxy::MakeTlsSources(
    const ProxyConfig& config) {
  TlsSources sources;
  if (!config.upstream_tls_ca.empty() || !config.upstream_tls_cert.empty() ||
      !config.upstream_tls_key.empty()) {
    TlsOptions options;
    options.role = TlsRole::kClient;
    options.ca_file = config.upstream_tls_ca;
    options.cert_file = config.upstream_tls_cert;
    options.key_file = config.upstream_tls_key;
    options.ca_setting = "COACH_UPSTREAM_TLS_CA (--upstream_tls_ca)";
    options.cert_setting = "COACH_UPSTREAM_TLS_CERT (--upstream_tls_cert)";
    options.key_setting = "COACH_UPSTREAM_TLS_KEY (--upstream_tls_key)";
    options.alpn = {"h2"};
    options.check_interval = config.tls_check_interval;
    auto source = TlsContextSource::Create(std::move(options));
    if (!source.ok()) return source.status();
    sources.upstream = *std::move(source);
    LogInfo(
        "upstream TLS: %s%s", sources.upstream->Describe(),
        config.upstream_tls_server_name.empty()
            ? ""
            : absl::StrCat(", server name ", config.upstream_tls_server_name));
  } else if (!config.upstream_tls_server_name.empty()) {
    return absl::InvalidArgumentError(
        "COACH_UPSTREAM_TLS_SERVER_NAME (--upstream_tls_server_name) needs "
        "COACH_UPSTREAM_TLS_CA (--upstream_tls_ca): it names what TLS checks");
  }
  if (!config.http_tls_cert.empty() || !config.http_tls_key.empty()) {
    TlsOptions options;
    options.role = TlsRole::kServer;
    options.cert_file = config.http_tls_cert;
    options.key_file = config.http_tls_key;
    options.cert_setting = "COACH_HTTP_TLS_CERT (--http_tls_cert)";
    options.key_setting = "COACH_HTTP_TLS_KEY (--http_tls_key)";
    options.alpn = {"http/1.1"};
    options.check_interval = config.tls_check_interval;
    auto source = TlsContextSource::Create(std::move(options));
    if (!source.ok()) return source.status();
    sources.http = *std::move(source);
    LogInfo("HTTPS: %s", sources.http->Describe());
  }
  return sources;
}

absl::StatusOr<std::string> CoachProxy::Reload() {
  std::vector<std::string> reloaded;
  for (const auto& [what, source] :
       {std::pair{"HTTPS", tls_.http},
        std::pair{"upstream TLS", tls_.upstream}}) {
    if (source == nullptr) continue;
    absl::StatusOr<std::string> done = source->Reload();
    if (!done.ok()) {
      return absl::Status(done.status().code(),
                          absl::StrCat(what, ": ", done.status().message()));
    }
    reloaded.push_back(absl::StrCat(what, " ", *done));
  }
  if (tls_.upstream != nullptr &&
      config_.upstream_client == UpstreamClient::kGrpc) {
    // gRPC's file watcher cannot be told to read now.
    reloaded.back() +=
        absl::StrCat(" (gRPC's client takes it within ",
                     absl::FormatDuration(absl::Ceil(config_.tls_check_interval,
                                                     absl::Seconds(1))),
                     ")");
  }
  return absl::StrJoin(reloaded, "; ");
}

CoachProxy::~CoachProxy() {
  Stop(absl::ZeroDuration());
  // A readiness check's callback uses this object: let it end (its
  // deadline bounds the wait).
  {
    absl::MutexLock lock(&readiness_mu_);
    readiness_mu_.AwaitWithTimeout(
        absl::Condition(
            +[](bool* in_flight) { return !*in_flight; },
            &readiness_in_flight_),
        absl::Seconds(5));
  }
  // The members' destructors end the calls and connections on the loop
  // (http_, then upstream_), then the loop stops (loop_).
}

namespace {

// The HTTP front's listening address and limits, as configured.
http::ServerOptions HttpOptionsOf(const ProxyConfig& config) {
  http::ServerOptions options;
  options.listen = config.http_listen;
  options.backlog = config.listen_backlog;
  options.max_connections = config.max_connections;
  options.max_connections_per_client = config.max_connections_per_client;
  options.max_url_bytes = config.max_url_bytes;
  options.max_header_bytes = config.max_header_bytes;
  options.max_header_count = config.max_header_count;
  options.max_body_bytes = config.max_body_bytes;
  options.header_timeout = config.header_timeout;
  options.body_timeout = config.body_timeout;
  options.idle_timeout = config.keep_alive_timeout;
  options.write_timeout = config.write_timeout;
  options.max_stream_backlog_bytes = config.max_stream_backlog_bytes;
  return options;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CoachProxy>> CoachProxy::Start(
    const ProxyConfig& config) {
  if (absl::Status valid = CrossCheckProxyConfig(config); !valid.ok()) {
    return valid;
  }
  auto routes = RouteTable::FromServices(
      *google::protobuf::DescriptorPool::generated_pool(), config.services);
  if (!routes.ok()) return routes.status();
  absl::StatusOr<TlsSources> tls = MakeTlsSources(config);
  if (!tls.ok()) return tls.status();
  std::unique_ptr<CoachProxy> proxy(
      new CoachProxy(config, *std::move(routes), *std::move(tls)));
  OpenApiOptions openapi;
  openapi.version = COACH_VERSION;
  openapi.descriptor_set_with_source_info =
      std::string(protos::ApiDescriptorSetWithSourceInfo());
  auto document = OpenApiDocument(proxy->routes_, openapi);
  if (!document.ok()) return document.status();
  proxy->openapi_ = *std::move(document);

  http::ServerOptions options = HttpOptionsOf(config);
  options.loop = &proxy->loop_.context();
  options.tls = proxy->tls_.http;
  CoachProxy* self = proxy.get();
  options.refusal = [self](http::Refusal refusal,
                           const http::Request& request) {
    return self->Refuse(refusal, request);
  };
  options.on_shed = [self](http::Shed shed) {
    switch (shed) {
      case http::Shed::kIdleEvicted:
        return self->shed_idle_evicted_.Increment();
      case http::Shed::kClientLimit:
        return self->shed_client_limit_.Increment();
      case http::Shed::kTableFull: return self->shed_table_full_.Increment();
    }
  };
  // Before the REST port: a scraper sees the proxy from its first request.
  if (absl::Status metrics = proxy->StartMetrics(); !metrics.ok()) {
    return metrics;
  }
  auto server = http::Server::Start(
      std::move(options), [self](std::shared_ptr<http::Exchange> exchange) {
        self->Handle(std::move(exchange));
      });
  if (!server.ok()) return server.status();
  proxy->http_ = *std::move(server);
  proxy->serving_.store(proxy->http_.get(), std::memory_order_release);
  for (const Route& route : proxy->routes_.routes()) {
    LogInfo("route %s %s -> %s%s", route.http_method, route.path.text(),
            route.grpc_method,
            route.method->server_streaming() ? " (event stream)" : "");
  }
  return proxy;
}

void CoachProxy::Stop() { Stop(config_.shutdown_grace); }

void CoachProxy::Stop(absl::Duration grace) {
  if (http_ != nullptr) http_->Shutdown(grace);
  // Scraped until the REST port is closed: the last numbers include the
  // shutdown.
  if (metrics_ != nullptr) metrics_->Shutdown(absl::ZeroDuration());
}

absl::Status CoachProxy::StartMetrics() {
  if (config_.metrics_listen.empty()) return absl::OkStatus();
  http::ServerOptions options;
  options.listen = config_.metrics_listen;
  options.loop = &loop_.context();
  // A scrape is a bodiless GET.
  options.max_body_bytes = 0;
  options.header_timeout = config_.header_timeout;
  options.idle_timeout = config_.keep_alive_timeout;
  options.write_timeout = config_.write_timeout;
  options.refusal = [](http::Refusal refusal, const http::Request&) {
    return http::Response{.status = http::StatusOf(refusal),
                          .headers = {{"Content-Type", kMetricsContentType}},
                          .body = "refused\n"};
  };
  auto server = http::Server::Start(
      std::move(options), [this](std::shared_ptr<http::Exchange> exchange) {
        HandleMetrics(exchange);
      });
  if (!server.ok()) {
    return absl::Status(server.status().code(),
                        absl::StrCat("metrics: ", server.status().message()));
  }
  metrics_ = *std::move(server);
  LogInfo("metrics: GET /metrics on %s (port %d)", config_.metrics_listen,
          metrics_->port());
  return absl::OkStatus();
}

std::vector<http::Header> CoachProxy::CorsHeaders(
    absl::string_view origin) const {
  std::vector<http::Header> headers;
  const bool any =
      std::find(config_.cors_origins.begin(), config_.cors_origins.end(),
                "*") != config_.cors_origins.end();
  // With a list, every answer depends on the request's Origin (allowed,
  // echoed, or not): a shared cache must not give one origin's answer to
  // another, nor an answer to a request without Origin to a listed one.
  if (!any && !config_.cors_origins.empty()) {
    headers.push_back({"Vary", "Origin"});
  }
  if (origin.empty()) return headers;
  const bool listed =
      std::find(config_.cors_origins.begin(), config_.cors_origins.end(),
                origin) != config_.cors_origins.end();
  if (!any && !listed) return headers;
  headers.push_back(
      {"Access-Control-Allow-Origin", any ? "*" : std::string(origin)});
  // Only ever with an echoed origin (CrossCheckProxyConfig refuses `*`).
  if (config_.cors_allow_credentials && !any) {
    headers.push_back({"Access-Control-Allow-Credentials", "true"});
  }
  headers.push_back({"Access-Control-Expose-Headers", cors_exposed_headers_});
  return headers;
}

void CoachProxy::LogAccess(const Pending& pending, int status,
                           std::optional<grpc::StatusCode> code,
                           absl::string_view reason) const {
  const absl::Duration took = absl::Now() - pending.started;
  const absl::string_view method = LoggableMethod(pending.request().method);
  if (pending.series != nullptr && status == 200) {
    pending.series->ok->Increment();
  } else {
    requests_
        .WithLabels(
            {pending.route, std::string(method), std::to_string(status)})
        .Increment();
  }
  if (pending.series != nullptr) {
    pending.series->duration->Observe(absl::ToDoubleSeconds(took));
  } else {
    durations_.WithLabels({pending.route}).Observe(absl::ToDoubleSeconds(took));
  }
  in_flight_.Add(-1);
  if (!config_.access_log || !LogEnabled(LogLevel::kInfo)) return;
  const std::string code_name =
      code.has_value()
          ? absl::StatusCodeToString(static_cast<absl::StatusCode>(*code))
          : "";
  RequestLogLine line;
  line.kind = "http";
  line.method = method;
  line.route = pending.route;
  line.status = status;
  line.code = code_name;
  line.reason = reason;
  line.duration_ms = absl::ToDoubleMilliseconds(took);
  line.request_id = pending.request_id;
  line.trace_id = pending.trace.trace_id;
  line.span_id = pending.trace.span_id;
  LogRequest(LogLevel::kInfo, line);
}

void CoachProxy::CountUpstreamError(const grpc::Status& status) const {
  // gRPC's codes are absl's, number for number.
  upstream_errors_
      .WithLabels({absl::StatusCodeToString(
          static_cast<absl::StatusCode>(status.error_code()))})
      .Increment();
}

void CoachProxy::HandleMetrics(
    const std::shared_ptr<http::Exchange>& exchange) {
  const http::Request& request = exchange->request();
  const auto text = [](int status, std::string body) {
    return http::Response{.status = status,
                          .headers = {{"Content-Type", kMetricsContentType}},
                          .body = std::move(body)};
  };
  if (request.path != "/metrics") {
    return exchange->Reply(text(404, "not found: GET /metrics\n"));
  }
  if (request.method != "GET" && request.method != "HEAD") {
    http::Response refused = text(405, "method not allowed\n");
    refused.headers.push_back({"Allow", "GET, HEAD"});
    return exchange->Reply(std::move(refused));
  }
  // Scrapes are not API requests: neither counted nor logged.
  const http::Server* serving = serving_.load(std::memory_order_acquire);
  connections_.Set(serving != nullptr ? serving->open_connections() : 0);
  exchange->Reply(text(200, registry_.Render()));
}

namespace {

void ReplyError(const std::shared_ptr<http::Exchange>& exchange,
                std::vector<http::Header> headers, const HttpError& error) {
  if (error.retry_after_seconds.has_value()) {
    headers.push_back(
        {"Retry-After", std::to_string(*error.retry_after_seconds)});
  }
  exchange->Reply(http::Response{.status = error.status,
                                 .headers = std::move(headers),
                                 .body = error.body});
}

// Why a routed request is refused before it is transcoded, if it is: a
// single header repeated (400), then a body that is not JSON or is
// compressed (415).
std::optional<HttpError> HeadersOrBodyRefusal(const Route& route,
                                              const http::Request& request) {
  if (const std::string repeated = RepeatedSingleHeader(route, request);
      !repeated.empty()) {
    return MakeHttpError(
        400, v1::INVALID_ARGUMENT,
        absl::StrCat("L'en-tête « ", repeated,
                     " » ne doit figurer qu'une fois dans la requête."),
        repeated);
  }
  if (!request.body.empty()) {
    // A cross-site form can post text/plain without a preflight (a CORS
    // "simple request"); JSON cannot be posted that way.
    if (MediaType(request.header("Content-Type")) != "application/json") {
      return MakeHttpError(415, v1::UNSUPPORTED_MEDIA_TYPE,
                           "Le corps de la requête doit être du JSON "
                           "(Content-Type: application/json).");
    }
    const std::string encoding =
        absl::AsciiStrToLower(request.header("Content-Encoding"));
    if (!encoding.empty() && encoding != "identity") {
      return MakeHttpError(415, v1::UNSUPPORTED_ENCODING,
                           "Le corps de la requête ne doit pas être "
                           "compressé.");
    }
  }
  return std::nullopt;
}

// The request message of `route` for `request`: its query, body and path
// bindings transcoded; else INVALID_ARGUMENT, a query that does not decode
// included.
absl::StatusOr<std::unique_ptr<Message>> Transcode(
    const Route& route, const PathBindings& bindings,
    const http::Request& request) {
  std::vector<std::pair<std::string, std::string>> parameters;
  if (!ParseQuery(request.query, parameters)) {
    return absl::InvalidArgumentError("Paramètre de requête mal encodé.");
  }
  const std::multimap<std::string, std::string> query(parameters.begin(),
                                                      parameters.end());
  return RequestFromHttp(route, bindings, query, request.body);
}

// The error answered for a request the HTTP layer refused (`status` is
// the refusal's).
HttpError RefusalError(http::Refusal refusal, int status,
                       const ProxyConfig& config) {
  HttpError error;
  switch (refusal) {
    case http::Refusal::kMalformed:
      error =
          MakeHttpError(status, v1::INVALID_ARGUMENT, "Requête HTTP invalide.");
      break;
    case http::Refusal::kLengthRequired:
      error = MakeHttpError(status, v1::LENGTH_REQUIRED,
                            "Le corps de la requête doit avoir un "
                            "Content-Length (pas d'envoi par morceaux).");
      break;
    case http::Refusal::kBodyTooLarge:
      error = MakeHttpError(status, v1::PAYLOAD_TOO_LARGE,
                            absl::StrCat("Le corps de la requête dépasse ",
                                         config.max_body_bytes, " octets."));
      break;
    case http::Refusal::kUriTooLong:
      error = MakeHttpError(status, v1::INVALID_ARGUMENT,
                            absl::StrCat("L'URL de la requête dépasse ",
                                         config.max_url_bytes, " octets."),
                            /*field=*/"", /*label=*/"URL trop longue");
      break;
    case http::Refusal::kHeadersTooLarge:
      error =
          MakeHttpError(status, v1::HEADERS_TOO_LARGE,
                        absl::StrCat("Les en-têtes de la requête dépassent ",
                                     config.max_header_bytes, " octets ou ",
                                     config.max_header_count, " lignes."));
      break;
    case http::Refusal::kBadHost:
      error = MakeHttpError(status, v1::INVALID_ARGUMENT,
                            "Une requête HTTP/1.1 doit porter un et un seul "
                            "en-tête Host, valide.");
      break;
    case http::Refusal::kHandlerDropped:
      error = MakeHttpError(status, v1::INTERNAL, kServerError);
      break;
  }
  return error;
}

}  // namespace

http::Response CoachProxy::Refuse(http::Refusal refusal,
                                  const http::Request& request) {
  const int status = http::StatusOf(refusal);
  HttpError error = RefusalError(refusal, status, config_);
  const std::string request_id = RequestIdOf(request);
  http::Response response;
  response.status = error.status;
  response.headers.push_back({kRequestIdHeader, request_id});
  for (http::Header& header : CorsHeaders(request.header("Origin"))) {
    response.headers.push_back(std::move(header));
  }
  response.headers.push_back({"Content-Type", kJsonContentType});
  response.body = std::move(error.body);
  requests_
      .WithLabels({"-", std::string(LoggableMethod(request.method)),
                   std::to_string(status)})
      .Increment();
  if (config_.access_log && LogEnabled(LogLevel::kInfo)) {
    RequestLogLine line;
    line.kind = "http";
    line.method = LoggableMethod(request.method);
    line.route = "-";
    line.status = status;
    line.reason = error.reason;
    line.request_id = request_id;
    const TraceContext trace =
        ContinueTrace(request.header(kTraceparentHeader));
    line.trace_id = trace.trace_id;
    line.span_id = trace.span_id;
    line.note = "(refused by the HTTP layer)";
    LogRequest(LogLevel::kInfo, line);
  }
  return response;
}

void CoachProxy::HandlePreflight(Pending& pending) {
  std::vector<http::Header> headers = pending.Headers("");
  // The origin is allowed (its CORS headers name it, not only Vary).
  const bool allowed =
      absl::c_any_of(pending.cors, [](const http::Header& header) {
        return header.name == "Access-Control-Allow-Origin";
      });
  if (allowed) {
    headers.push_back({"Access-Control-Allow-Methods",
                       "GET, POST, PUT, PATCH, DELETE, OPTIONS"});
    if (!cors_allowed_headers_.empty()) {
      headers.push_back(
          {"Access-Control-Allow-Headers", cors_allowed_headers_});
    }
    headers.push_back(
        {"Access-Control-Max-Age",
         std::to_string(absl::ToInt64Seconds(config_.cors_max_age))});
  }
  pending.exchange->Reply(
      http::Response{.status = 204, .headers = std::move(headers), .body = ""});
  LogAccess(pending, 204);
}

bool CoachProxy::HandleOperation(std::shared_ptr<Pending>& pending,
                                 absl::string_view method) {
  const http::Request& request = pending->request();
  if (request.method == "OPTIONS") {
    HandlePreflight(*pending);
    return true;
  }
  // Operations, outside the API's routes: GET (and HEAD) only.
  const bool operation = request.path == "/healthz" ||
                         request.path == "/readyz" ||
                         request.path == "/openapi.json";
  if (operation && method != "GET") {
    pending->route = request.path;
    RouteTable::Match get_only;
    get_only.allowed_methods = {"GET"};
    RefuseUnrouted(*pending, std::move(get_only));
    return true;
  }
  if (method == "GET" && request.path == "/healthz") {
    pending->route = request.path;
    pending->exchange->Reply(
        http::Response{.status = 200,
                       .headers = pending->Headers(kJsonContentType),
                       .body = R"({"status":"SERVING"})"});
    LogAccess(*pending, 200);
    return true;
  }
  if (method == "GET" && request.path == "/readyz") {
    pending->route = request.path;
    HandleReadiness(std::move(pending));
    return true;
  }
  if (method == "GET" && request.path == "/openapi.json") {
    pending->route = request.path;
    pending->exchange->Reply(
        http::Response{.status = 200,
                       .headers = pending->Headers(kJsonContentType),
                       .body = openapi_});
    LogAccess(*pending, 200);
    return true;
  }
  return false;
}

void CoachProxy::RefuseUnrouted(Pending& pending, RouteTable::Match match) {
  const http::Request& request = pending.request();
  if (match.allowed_methods.empty()) {
    const HttpError error = MakeHttpError(
        404, v1::ROUTE_NOT_FOUND,
        absl::StrCat("Aucune route ", request.method, " ", request.path, "."));
    ReplyError(pending.exchange, pending.Headers(kJsonContentType), error);
    return LogAccess(pending, error.status, std::nullopt, error.reason);
  }
  // Where GET is, HEAD is (answered as GET without its body).
  if (absl::c_linear_search(match.allowed_methods, "GET")) {
    match.allowed_methods.push_back("HEAD");
  }
  std::vector<http::Header> headers = pending.Headers(kJsonContentType);
  headers.push_back({"Allow", absl::StrJoin(match.allowed_methods, ", ")});
  const HttpError error = MakeHttpError(
      405, v1::METHOD_NOT_ALLOWED,
      absl::StrCat(
          "Méthode ", request.method, " non autorisée sur ", request.path,
          " (autorisées : ", absl::StrJoin(match.allowed_methods, ", "), ")."));
  ReplyError(pending.exchange, std::move(headers), error);
  return LogAccess(pending, error.status, std::nullopt, error.reason);
}

void CoachProxy::Handle(std::shared_ptr<http::Exchange> exchange) {
  auto pending = std::make_shared<Pending>();
  pending->exchange = std::move(exchange);
  pending->started = absl::Now();
  in_flight_.Add(1);  // down again in LogAccess
  const http::Request& request = pending->request();
  pending->request_id = RequestIdOf(request);
  pending->trace = ContinueTrace(request.header(kTraceparentHeader));
  if (const absl::string_view state = request.header(kTracestateHeader);
      pending->trace.continued && IsForwardableTracestate(state)) {
    pending->tracestate = std::string(state);
  }
  pending->cors = CorsHeaders(request.header("Origin"));
  const auto fail = [&](const HttpError& error) {
    ReplyError(pending->exchange, pending->Headers(kJsonContentType), error);
    LogAccess(*pending, error.status, std::nullopt, error.reason);
  };

  // HEAD is answered as GET, and the HTTP server leaves the body out (RFC
  // 9110 §9.3.2).
  const absl::string_view method =
      request.method == "HEAD" ? absl::string_view("GET") : request.method;
  if (HandleOperation(pending, method)) return;
  const RouteTable::Match match = routes_.Find(method, request.path);
  if (match.route == nullptr) return RefuseUnrouted(*pending, match);
  const Route& route = *match.route;
  pending->route = route.path.text();
  pending->series = &route_series_[&route - routes_.routes().data()];

  if (std::optional<HttpError> refused = HeadersOrBodyRefusal(route, request);
      refused.has_value()) {
    return fail(*refused);
  }
  auto upstream_request = Transcode(route, match.bindings, request);
  if (!upstream_request.ok()) {
    return fail(MakeHttpError(
        400, v1::INVALID_ARGUMENT, upstream_request.status().message(),
        ErrorField(upstream_request.status()).value_or("")));
  }
  // gRPC metadata carries printable ASCII only; coach-server checks the rest.
  if (const HeaderMapping* header = UnforwardableHeader(route, request)) {
    return fail(MakeHttpError(400, v1::INVALID_ARGUMENT,
                              absl::StrCat("L'en-tête « ", header->http,
                                           " » doit être en ASCII imprimable."),
                              header->http));
  }
  if (route.method->server_streaming() &&
      route.method->output_type()->full_name() == kHttpBodyType) {
    CallBodyStream(std::move(pending), route, *std::move(upstream_request));
  } else if (route.method->server_streaming()) {
    CallStream(std::move(pending), route, *std::move(upstream_request));
  } else {
    CallUnary(std::move(pending), route, *std::move(upstream_request));
  }
}

namespace {

CallOptions CallOptionsFor(const ProxyConfig& config, const Route& route,
                           const std::string& request_id,
                           const http::Request& request,
                           const TraceContext& trace,
                           const std::string& tracestate) {
  CallOptions options;
  // Reads wait briefly for a (re)connecting server; the rest fail fast.
  const bool read = route.http_method == "GET";
  options.deadline =
      read ? config.upstream_read_deadline : config.upstream_deadline;
  options.wait_for_ready = read;
  options.request_id = request_id;
  options.authorization = std::string(request.header("Authorization"));
  for (const HeaderMapping& header : route.request_headers) {
    if (request.has_header(header.http)) {
      options.metadata.emplace_back(header.metadata,
                                    std::string(request.header(header.http)));
    }
  }
  // Only a call that forwarded a header reads the response metadata (a
  // send with an Idempotency-Key: was it replayed?); the rest read none.
  if (!options.metadata.empty() && !route.response_headers.empty()) {
    options.server_metadata = std::make_shared<ServerMetadata>();
    for (const HeaderMapping& header : route.response_headers) {
      options.server_metadata->keys.push_back(header.metadata);
    }
  }
  // The trace, under the proxy's span (W3C Trace Context).
  options.metadata.emplace_back(kTraceparentHeader, FormatTraceparent(trace));
  if (!tracestate.empty()) {
    options.metadata.emplace_back(kTracestateHeader, tracestate);
  }
  return options;
}

// The response metadata `route` copies that coach-server sent, as REST
// headers.
void AddForwardedHeaders(const Route& route, const ServerMetadata* metadata,
                         std::vector<http::Header>& headers) {
  if (metadata == nullptr) return;
  for (const HeaderMapping& header : route.response_headers) {
    const auto found = metadata->values.find(header.metadata);
    // Printable ASCII only: what came from upstream never splits a header.
    if (found != metadata->values.end() && IsPrintableAscii(found->second)) {
      headers.push_back({header.http, found->second});
    }
  }
}

// RFC 6750 §3: the scheme, and why a token that was sent failed.
void AddAuthenticateHeader(const grpc::Status& status,
                           const http::Request& request,
                           std::vector<http::Header>& headers) {
  if (status.error_code() != grpc::StatusCode::UNAUTHENTICATED) return;
  headers.push_back({"WWW-Authenticate", request.has_header("Authorization")
                                             ? "Bearer error=\"invalid_token\""
                                             : "Bearer"});
}

void LogUpstreamFailure(const Route& route, const grpc::Status& status,
                        const std::string& request_id) {
  // A channel failure, not a server answer: worth a log line.
  if (!status.error_details().empty()) return;
  LogWarning("upstream %s failed: code=%s %s request_id=%s", route.grpc_method,
             absl::StatusCodeToString(
                 static_cast<absl::StatusCode>(status.error_code())),
             status.error_message(), request_id);
}

}  // namespace

grpc::Status CoachProxy::Unreached(bool waited,
                                   const grpc::Status& status) const {
  if (waited && status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      status.error_details().empty() && !upstream_.AnyServerReady()) {
    // A read that waited for a server that never came: unavailable (503),
    // not slow (504).
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "no coach-server reachable");
  }
  return status;
}

void CoachProxy::CallUnary(std::shared_ptr<Pending> pending, const Route& route,
                           std::unique_ptr<Message> request) {
  CallOptions options =
      CallOptionsFor(config_, route, pending->request_id, pending->request(),
                     pending->trace, pending->tracestate);
  const bool waited = options.wait_for_ready;
  std::shared_ptr<ServerMetadata> replayed = options.server_metadata;
  const google::protobuf::Descriptor* output = route.method->output_type();
  std::shared_ptr<http::Exchange> exchange = pending->exchange;
  auto call = upstream_.Unary(
      route.grpc_method, *request, std::move(options),
      [this, pending, output, &route, waited, replayed = std::move(replayed)](
          const grpc::Status& answered, std::string& response) {
        std::vector<http::Header> headers = pending->Headers(kJsonContentType);
        AddForwardedHeaders(route, replayed.get(), headers);
        int http_status = 200;
        std::string reason;
        const grpc::Status status = Unreached(waited, answered);
        if (!status.ok()) {
          LogUpstreamFailure(route, status, pending->request_id);
          CountUpstreamError(status);
          const HttpError error = HttpErrorFromGrpc(status);
          AddAuthenticateHeader(status, pending->request(), headers);
          ReplyError(pending->exchange, std::move(headers), error);
          http_status = error.status;
          reason = error.reason;
        } else if (auto json = JsonOf(response, output); json.ok()) {
          pending->exchange->Reply(http::Response{
              .status = 200, .headers = std::move(headers), .body = *json});
        } else {
          const HttpError error =
              MakeHttpError(500, v1::INTERNAL, kServerError);
          ReplyError(pending->exchange, std::move(headers), error);
          http_status = error.status;
          reason = error.reason;
        }
        LogAccess(*pending, http_status, status.error_code(), reason);
      });
  // The client hanging up cancels a call that changes something:
  // coach-server then charges and stores nothing. A read is let finish
  // (bounded by its deadline): watching every read's connection for a
  // hang-up would cost system calls on the busiest path for nothing.
  if (route.http_method != "GET") {
    exchange->OnCancel([weak = std::weak_ptr<UpstreamCall>(call)] {
      if (auto call = weak.lock()) call->Cancel();
    });
  }
}

void CoachProxy::CallStream(std::shared_ptr<Pending> pending,
                            const Route& route,
                            std::unique_ptr<Message> request) {
  const CallOptions options =
      CallOptionsFor(config_, route, pending->request_id, pending->request(),
                     pending->trace, pending->tracestate);
  const google::protobuf::Descriptor* output = route.method->output_type();
  std::shared_ptr<http::Exchange> exchange = pending->exchange;
  // Touched by the call's callbacks only, which never run at once.
  auto started = std::make_shared<bool>(false);
  const auto start = [this, pending, started, &route,
                      replayed = options.server_metadata] {
    if (*started) return;
    *started = true;
    std::vector<http::Header> headers =
        pending->Headers("text/event-stream; charset=utf-8");
    AddForwardedHeaders(route, replayed.get(), headers);
    headers.push_back({"Cache-Control", "no-cache"});
    // nginx and similar buffer responses unless told not to.
    headers.push_back({"X-Accel-Buffering", "no"});
    pending->exchange->StartStream(200, std::move(headers),
                                   config_.stream_heartbeat, kStreamHeartbeat);
  };
  auto call = upstream_.ServerStream(
      route.grpc_method, *request, options,
      [pending, output, start](std::string& message) {
        auto json = JsonOf(message, output);
        if (!json.ok()) return;  // cannot happen: the server sent it
        start();
        pending->exchange->Send(absl::StrCat("data: ", *json, "\n\n"));
      },
      [this, pending, started, start, &route,
       replayed = options.server_metadata](const grpc::Status& status) {
        if (status.ok()) {
          start();
          pending->exchange->Finish();
          return LogAccess(*pending, 200, status.error_code());
        }
        LogUpstreamFailure(route, status, pending->request_id);
        CountUpstreamError(status);
        const HttpError error = HttpErrorFromGrpc(status);
        if (!*started) {
          // Before the first event: a plain error answer.
          std::vector<http::Header> headers =
              pending->Headers(kJsonContentType);
          AddForwardedHeaders(route, replayed.get(), headers);
          AddAuthenticateHeader(status, pending->request(), headers);
          ReplyError(pending->exchange, std::move(headers), error);
          return LogAccess(*pending, error.status, status.error_code(),
                           error.reason);
        }
        pending->exchange->Send(
            absl::StrCat("event: error\ndata: ", error.body, "\n\n"));
        pending->exchange->Finish();
        LogAccess(*pending, 200, status.error_code(), error.reason);
      });
  exchange->OnCancel([weak = std::weak_ptr<UpstreamCall>(call)] {
    if (auto call = weak.lock()) call->Cancel();
  });
}

void CoachProxy::CallBodyStream(std::shared_ptr<Pending> pending,
                                const Route& route,
                                std::unique_ptr<Message> request) {
  const CallOptions options =
      CallOptionsFor(config_, route, pending->request_id, pending->request(),
                     pending->trace, pending->tracestate);
  const bool waited = options.wait_for_ready;
  std::shared_ptr<http::Exchange> exchange = pending->exchange;
  // Touched by the call's callbacks only, which never run at once.
  auto started = std::make_shared<bool>(false);
  auto call = upstream_.ServerStream(
      route.grpc_method, *request, options,
      [pending, started](std::string& message) {
        google::api::HttpBody body;
        if (!body.ParseFromString(message)) return;  // the server sent it
        if (!*started) {
          *started = true;
          // The first body's type is the response's.
          pending->exchange->StartStream(200,
                                         pending->Headers(body.content_type()),
                                         absl::InfiniteDuration(), "");
        }
        if (!body.data().empty()) {
          pending->exchange->Send(std::move(*body.mutable_data()));
        }
      },
      [this, pending, started, &route, waited](const grpc::Status& answered) {
        const grpc::Status status = Unreached(waited, answered);
        if (status.ok()) {
          if (!*started) {
            // No body at all: an empty answer.
            pending->exchange->Reply(http::Response{
                .status = 200, .headers = pending->Headers(""), .body = ""});
          } else {
            pending->exchange->Finish();
          }
          return LogAccess(*pending, 200, status.error_code());
        }
        LogUpstreamFailure(route, status, pending->request_id);
        CountUpstreamError(status);
        const HttpError error = HttpErrorFromGrpc(status);
        if (!*started) {
          std::vector<http::Header> headers =
              pending->Headers(kJsonContentType);
          AddAuthenticateHeader(status, pending->request(), headers);
          ReplyError(pending->exchange, std::move(headers), error);
          return LogAccess(*pending, error.status, status.error_code(),
                           error.reason);
        }
        // The status line is sent: the body ends where it broke off, which
        // the client sees as an incomplete document.
        pending->exchange->Finish();
        LogAccess(*pending, 200, status.error_code(), error.reason);
      });
  exchange->OnCancel([weak = std::weak_ptr<UpstreamCall>(call)] {
    if (auto call = weak.lock()) call->Cancel();
  });
}

void CoachProxy::AnswerReadiness(Pending& pending, bool ready) {
  if (ready) {
    pending.exchange->Reply(
        http::Response{.status = 200,
                       .headers = pending.Headers(kJsonContentType),
                       .body = R"({"status":"SERVING"})"});
    return LogAccess(pending, 200);
  }
  const HttpError error =
      MakeHttpError(503, v1::UNAVAILABLE, "coach-server n'est pas prêt.");
  ReplyError(pending.exchange, pending.Headers(kJsonContentType), error);
  LogAccess(pending, 503, std::nullopt, error.reason);
}

void CoachProxy::HandleReadiness(std::shared_ptr<Pending> pending) {
  bool start_check = false;
  std::optional<bool> cached;
  {
    absl::MutexLock lock(&readiness_mu_);
    if (absl::Now() - readiness_checked_ < config_.readiness_interval) {
      cached = ready_;
    } else {
      readiness_waiters_.push_back(pending);
      start_check = !readiness_in_flight_;
      readiness_in_flight_ = true;
    }
  }
  if (cached.has_value()) return AnswerReadiness(*pending, *cached);
  if (!start_check) return;
  CallOptions options;
  options.deadline = std::min(config_.readiness_interval, absl::Seconds(1));
  options.request_id = pending->request_id;
  grpc::health::v1::HealthCheckRequest check;  // "": the whole server
  upstream_.Unary(
      kHealthCheckMethod, check, options,
      [this](const grpc::Status& status, std::string& bytes) {
        grpc::health::v1::HealthCheckResponse response;
        const bool ready =
            status.ok() && response.ParseFromString(bytes) &&
            response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
        if (!ready) {
          LogWarning("readiness: coach-server not serving (code=%s)",
                     absl::StatusCodeToString(
                         static_cast<absl::StatusCode>(status.error_code())));
        }
        std::vector<std::shared_ptr<Pending>> waiters;
        {
          absl::MutexLock lock(&readiness_mu_);
          ready_ = ready;
          readiness_checked_ = absl::Now();
          readiness_in_flight_ = false;
          waiters.swap(readiness_waiters_);
        }
        for (const std::shared_ptr<Pending>& waiter : waiters) {
          AnswerReadiness(*waiter, ready);
        }
      });
}

}  // namespace coach::proxy
