#include "proxy/route_table.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "coach/v1/http_headers.pb.h"
#include "google/api/annotations.pb.h"
#include "google/api/http.pb.h"

namespace coach::proxy {
namespace {

// The headers a method's option `extension` declares; INVALID_ARGUMENT for
// one that could not travel: an HTTP name that is not a token, a metadata
// key that is not lower-case [0-9a-z_.-], gRPC's own (grpc-) or binary
// (-bin).
template <typename Extension>
absl::StatusOr<std::vector<HeaderMapping>> HeadersOf(
    const google::protobuf::MethodDescriptor& method,
    const Extension& extension) {
  std::vector<HeaderMapping> headers;
  const google::protobuf::MethodOptions& options = method.options();
  for (int i = 0; i < options.ExtensionSize(extension); ++i) {
    const v1::HttpHeader& header = options.GetExtension(extension, i);
    const std::string& key = header.metadata();
    const bool key_ok = !key.empty() && !absl::StartsWith(key, "grpc-") &&
                        !absl::EndsWith(key, "-bin") &&
                        std::all_of(key.begin(), key.end(), [](char c) {
                          return absl::ascii_islower(c) ||
                                 absl::ascii_isdigit(c) || c == '-' ||
                                 c == '_' || c == '.';
                        });
    const bool name_ok =
        !header.name().empty() &&
        std::all_of(header.name().begin(), header.name().end(), [](char c) {
          return absl::ascii_isalnum(c) || c == '-' || c == '_';
        });
    if (!key_ok || !name_ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(method.full_name(), ": header \"", header.name(),
                       "\" as \"", key, "\" cannot travel as gRPC metadata"));
    }
    headers.push_back({.http = header.name(),
                       .metadata = key,
                       .description = header.description()});
  }
  return headers;
}

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

// OK if `field_path` ("a.b") reaches a singular scalar field of `type`
// through singular message fields, as the transcoder will fill it.
absl::Status CheckPathVariable(const google::protobuf::Descriptor& type,
                               absl::string_view field_path) {
  using google::protobuf::FieldDescriptor;
  const std::vector<absl::string_view> steps = absl::StrSplit(field_path, '.');
  const google::protobuf::Descriptor* current = &type;
  for (size_t i = 0; i < steps.size(); ++i) {
    const FieldDescriptor* field = FindParameterField(*current, steps[i]);
    if (field == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "names no field of ", current->full_name(), " (\"", steps[i], "\")"));
    }
    const bool message = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
    if (field->is_repeated()) {
      return absl::InvalidArgumentError(
          absl::StrCat("field ", field->full_name(), " is repeated"));
    }
    if (i + 1 < steps.size()) {
      if (!message) {
        return absl::InvalidArgumentError(
            absl::StrCat("field ", field->full_name(), " is not a message"));
      }
      current = field->message_type();
    } else if (message) {
      return absl::InvalidArgumentError(
          absl::StrCat("field ", field->full_name(), " is not a scalar"));
    }
  }
  return absl::OkStatus();
}

absl::Status AddRule(const google::protobuf::MethodDescriptor* method,
                     const google::api::HttpRule& rule,
                     std::vector<Route>& routes) {
  const auto [verb, path] = VerbAndPath(rule);
  const std::string where = absl::StrCat(method->full_name(), ": ");
  if (verb.empty())
    return absl::InvalidArgumentError(where + "rule without a pattern");
  if (!rule.response_body().empty()) {
    return absl::InvalidArgumentError(where + "response_body is not supported");
  }
  if (!rule.body().empty() && rule.body() != "*") {
    const auto* field = method->input_type()->FindFieldByName(rule.body());
    if (field == nullptr ||
        field->type() != google::protobuf::FieldDescriptor::TYPE_MESSAGE ||
        field->is_repeated()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "body \"", rule.body(), "\" is not a singular message field"));
    }
  }
  absl::StatusOr<PathTemplate> parsed = PathTemplate::Parse(path);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(where +
                                      std::string(parsed.status().message()));
  }
  for (const std::string& variable : parsed->FieldPaths()) {
    if (absl::Status checked =
            CheckPathVariable(*method->input_type(), variable);
        !checked.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "path variable {", variable, "} of \"", path,
                       "\": ", checked.message()));
    }
  }
  absl::StatusOr<std::vector<HeaderMapping>> request_headers =
      HeadersOf(*method, v1::request_headers);
  if (!request_headers.ok()) return request_headers.status();
  absl::StatusOr<std::vector<HeaderMapping>> response_headers =
      HeadersOf(*method, v1::response_headers);
  if (!response_headers.ok()) return response_headers.status();
  routes.push_back(Route{
      .http_method = verb,
      .path = *std::move(parsed),
      .body = rule.body(),
      .method = method,
      .grpc_method = absl::StrCat("/", method->service()->full_name(), "/",
                                  method->name()),
      .request_headers = *std::move(request_headers),
      .response_headers = *std::move(response_headers),
  });
  return absl::OkStatus();
}

}  // namespace

const google::protobuf::FieldDescriptor* FindParameterField(
    const google::protobuf::Descriptor& type, absl::string_view name) {
  const std::string key(name);
  if (const auto* field = type.FindFieldByName(key)) return field;
  for (int i = 0; i < type.field_count(); ++i) {
    if (type.field(i)->json_name() == key) return type.field(i);
  }
  return nullptr;
}

absl::StatusOr<RouteTable> RouteTable::FromServices(
    const google::protobuf::DescriptorPool& pool,
    const std::vector<std::string>& services) {
  RouteTable table;
  for (const std::string& name : services) {
    const google::protobuf::ServiceDescriptor* service =
        pool.FindServiceByName(name);
    if (service == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown service ", name));
    }
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* method = service->method(i);
      // Server-streaming RPCs are served as event streams; a client stream
      // has no mapping onto one HTTP request.
      if (method->client_streaming()) continue;
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
      if (match.route == nullptr ||
          route.path.MoreSpecificThan(match.route->path)) {
        match.route = &route;
        match.bindings = *std::move(bindings);
      }
      continue;
    }
    if (std::find(match.allowed_methods.begin(), match.allowed_methods.end(),
                  route.http_method) == match.allowed_methods.end()) {
      match.allowed_methods.push_back(route.http_method);
    }
  }
  if (match.route != nullptr) match.allowed_methods.clear();
  return match;
}

}  // namespace coach::proxy
