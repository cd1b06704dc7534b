// RouteTable: the REST routes of our gRPC services, read from their
// google.api.http annotations in the compiled descriptors. No route is
// written by hand: an RPC that gains an annotation is served with no change
// here.
#ifndef COACH_PROXY_ROUTE_TABLE_H_
#define COACH_PROXY_ROUTE_TABLE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "proxy/path_template.h"

namespace coach::proxy {

// An HTTP header and the gRPC metadata key it travels as (a method's
// coach.v1.request_headers / response_headers, http_headers.proto).
struct HeaderMapping {
  std::string http;         // as written in HTTP: "Idempotency-Key"
  std::string metadata;     // lower case: "idempotency-key"
  std::string description;  // for the OpenAPI document
};

struct Route {
  std::string http_method;  // "GET", "POST", ...
  PathTemplate path;
  // The rule's `body`: "" (none), "*" (the whole request) or a field name.
  std::string body;
  const google::protobuf::MethodDescriptor* method = nullptr;
  // "/coach.v1.ChatService/SendMessage", as gRPC names it on the wire.
  std::string grpc_method;
  // The headers the method reads (forwarded as metadata) and writes (copied
  // from its response metadata), as its options declare them.
  std::vector<HeaderMapping> request_headers;
  std::vector<HeaderMapping> response_headers;
};

// The field of `type` a path or query parameter names, by its proto name
// ("user_id") or its JSON name ("userId"); null if none.
const google::protobuf::FieldDescriptor* FindParameterField(
    const google::protobuf::Descriptor& type, absl::string_view name);

class RouteTable {
 public:
  // Reads every rule (and additional binding) of `services` from `pool`.
  // INVALID_ARGUMENT for an unknown service or an unsupported rule: a route
  // we cannot serve faithfully must stop the start, not be skipped. So is a
  // path variable that names no singular scalar field of the input message
  // (through singular message fields for "a.b"): a typo would otherwise be
  // ignored and the server would answer that the field is missing.
  static absl::StatusOr<RouteTable> FromServices(
      const google::protobuf::DescriptorPool& pool,
      const std::vector<std::string>& services);

  // The route for `http_method` whose template matches `path`; when several
  // do, the most specific (PathTemplate::MoreSpecificThan: a literal segment
  // beats a variable), whatever their order; between equals, the first.
  struct Match {
    const Route* route = nullptr;  // null: no route for this method
    PathBindings bindings;
    // When `route` is null: the methods that do serve this path ("GET,
    // PATCH"), empty if none does (404 rather than 405).
    std::vector<std::string> allowed_methods;
  };
  Match Find(absl::string_view http_method, absl::string_view path) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

}  // namespace coach::proxy

#endif  // COACH_PROXY_ROUTE_TABLE_H_
