// Transcoding between HTTP and protobuf, with protobuf's own JSON mapping:
// - RequestFromHttp: the query parameters, then the JSON body (per the rule's
//   `body`) over them, then the path variables over both, merged into the
//   request message. (A merge: a body field left at its default does not
//   clear a query value, and repeated fields append.)
//   Query and path values take the field's type through the JSON mapping
//   ("limit=10" -> int32 10, enums by name). Unknown body fields are ignored
//   (as grpc-gateway and Envoy do); unknown query parameters too.
// - ResponseToJson: every field printed, defaults included (0, "", []), enum
//   names as written in the proto, JSON (lowerCamelCase) field names.
#ifndef COACH_PROXY_TRANSCODER_H_
#define COACH_PROXY_TRANSCODER_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "proxy/route_table.h"

namespace coach::proxy {

// INVALID_ARGUMENT with a French message for a body or parameter that does
// not fit the message (invalid JSON, wrong type, invalid UTF-8...).
absl::StatusOr<std::unique_ptr<google::protobuf::Message>> RequestFromHttp(
    const Route& route, const PathBindings& bindings,
    const std::multimap<std::string, std::string>& query,
    const std::string& body);

// INTERNAL if the message cannot be printed (it always can).
absl::StatusOr<std::string> ResponseToJson(
    const google::protobuf::Message& message);

}  // namespace coach::proxy

#endif  // COACH_PROXY_TRANSCODER_H_
