#include "proxy/route_table.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "google/api/annotations.pb.h"
#include "google/api/http.pb.h"

namespace coach::proxy {
namespace {

// The verb and path of one rule; an empty verb for a rule without pattern.
std::pair<std::string, std::string> VerbAndPath(
    const google::api::HttpRule& rule) {
  switch (rule.pattern_case()) {
    case google::api::HttpRule::kGet: return {"GET", rule.get()};
    case google::api::HttpRule::kPut: return {"PUT", rule.put()};
    case google::api::HttpRule::kPost: return {"POST", rule.post()};
    case google::api::HttpRule::kDelete: return {"DELETE", rule.delete_()};
    case google::api::HttpRule::kPatch: return {"PATCH", rule.patch()};
    case google::api::HttpRule::kCustom:
      return {rule.custom().kind(), rule.custom().path()};
    case google::api::HttpRule::PATTERN_NOT_SET: break;
  }
  return {"", ""};
}

absl::Status AddRule(const google::protobuf::MethodDescriptor* method,
                     const google::api::HttpRule& rule,
                     std::vector<Route>& routes) {
  const auto [verb, path] = VerbAndPath(rule);
  const std::string where = absl::StrCat(method->full_name(), ": ");
  if (verb.empty()) return absl::InvalidArgumentError(where + "rule without a pattern");
  if (!rule.response_body().empty()) {
    return absl::InvalidArgumentError(where + "response_body is not supported");
  }
  if (!rule.body().empty() && rule.body() != "*") {
    const auto* field = method->input_type()->FindFieldByName(rule.body());
    if (field == nullptr ||
        field->type() != google::protobuf::FieldDescriptor::TYPE_MESSAGE ||
        field->is_repeated()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "body \"", rule.body(),
                       "\" is not a singular message field"));
    }
  }
  absl::StatusOr<PathTemplate> parsed = PathTemplate::Parse(path);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(where + std::string(parsed.status().message()));
  }
  routes.push_back(Route{
      .http_method = verb,
      .path = *std::move(parsed),
      .body = rule.body(),
      .method = method,
      .grpc_method = absl::StrCat("/", method->service()->full_name(), "/",
                                  method->name()),
  });
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RouteTable> RouteTable::FromServices(
    const google::protobuf::DescriptorPool& pool,
    const std::vector<std::string>& services) {
  RouteTable table;
  for (const std::string& name : services) {
    const google::protobuf::ServiceDescriptor* service =
        pool.FindServiceByName(name);
    if (service == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown service ", name));
    }
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* method = service->method(i);
      // Streaming RPCs have no unary REST mapping here.
      if (method->client_streaming() || method->server_streaming()) continue;
      // RPCs without the annotation (the admin ones) have no REST route.
      if (!method->options().HasExtension(google::api::http)) continue;
      const google::api::HttpRule& rule =
          method->options().GetExtension(google::api::http);
      if (absl::Status added = AddRule(method, rule, table.routes_);
          !added.ok()) {
        return added;
      }
      for (const google::api::HttpRule& extra : rule.additional_bindings()) {
        if (absl::Status added = AddRule(method, extra, table.routes_);
            !added.ok()) {
          return added;
        }
      }
    }
  }
  return table;
}

RouteTable::Match RouteTable::Find(absl::string_view http_method,
                                   absl::string_view path) const {
  Match match;
  for (const Route& route : routes_) {
    std::optional<PathBindings> bindings = route.path.Match(path);
    if (!bindings.has_value()) continue;
    if (route.http_method == http_method) {
      match.route = &route;
      match.bindings = *std::move(bindings);
      match.allowed_methods.clear();
      return match;
    }
    if (std::find(match.allowed_methods.begin(), match.allowed_methods.end(),
                  route.http_method) == match.allowed_methods.end()) {
      match.allowed_methods.push_back(route.http_method);
    }
  }
  return match;
}

}  // namespace coach::proxy
