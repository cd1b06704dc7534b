// OpenApiDocument: the OpenAPI 3.0.3 description of the REST API coach-proxy
// serves, generated from the RouteTable itself (the same descriptors and
// google.api.http rules it routes by), so that there is no second
// description to keep in step. coach-proxy builds it once at start and
// serves it at GET /openapi.json.
//
// What it says, and where each part comes from:
// - paths: one operation per route (additional bindings included), the path
//   variables by their JSON names ("/api/chat/sessions/{sessionId}"), the
//   fields neither bound by the path nor sent in the body as query
//   parameters (nested messages as "a.b"), the body (`body: "*"` or a field)
//   as an application/json request body without the path's fields.
//   Server-streaming RPCs answer `text/event-stream` (one `data:` event per
//   message, an `event: error` after the first one). Plus the proxy's own
//   /healthz, /readyz and /openapi.json.
// - components.schemas: every message and enum the routes reach, named by
//   their full proto names ("coach.v1.Session"), in protobuf's JSON mapping
//   as ResponseToJson prints it: JSON names, 64-bit integers as strings,
//   Timestamp as a date-time string (the other well-known types by their
//   JSON forms), enums as their value names, repeated as arrays, maps as
//   objects, a oneof as "at most one of". In messages that routes answer,
//   the fields always printed (no presence: scalars, enums, lists, maps) are
//   `required`; proto3 `optional`, oneof and message fields are not. Request
//   messages require nothing (proto3: a field left out is its default).
// - every documented error status with the documented body
//   (components.schemas.ErrorBody: error, code, message, and `field` on a
//   400), `code` listing coach.v1.ErrorReason's names; 401 with
//   WWW-Authenticate, 429 with Retry-After. The proxy knows no route by name:
//   every route lists 400, 401, 403, 404, 429, 500, 503 and 504; a route
//   with a body also 402, 409, 413 and 415.
// - descriptions: the proto comments (leading, else trailing) of services
//   (tags), methods, messages, fields, enums and enum values, taken from a
//   FileDescriptorSet compiled with SourceCodeInfo
//   (protos/api_descriptor_set.h) by full name; without it the document has
//   no comments but is otherwise the same.
//
// Deterministic (same routes, same bytes). Thread-safe (no state).
#ifndef COACH_PROXY_OPENAPI_H_
#define COACH_PROXY_OPENAPI_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proxy/route_table.h"

namespace coach::proxy {

struct OpenApiOptions {
  std::string title = "Coach AI Hub — API REST";
  std::string version;  // info.version
  // A serialized google.protobuf.FileDescriptorSet with source info (and
  // its imports); empty: no descriptions.
  std::string descriptor_set_with_source_info;
};

// The document as JSON text. INVALID_ARGUMENT if the descriptor set is
// given and does not parse into a pool (a build mistake).
absl::StatusOr<std::string> OpenApiDocument(const RouteTable& routes,
                                            const OpenApiOptions& options);

}  // namespace coach::proxy

#endif  // COACH_PROXY_OPENAPI_H_
