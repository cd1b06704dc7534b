// Transcoding between HTTP and protobuf, with protobuf's own JSON mapping:
// - RequestFromHttp: the query parameters, then the JSON body (per the rule's
//   `body`) over them, then the path variables over both, merged into the
//   request message. (A merge: a body field left at its default does not
//   clear a query value, and repeated fields append.)
//   Query and path values take the field's type through the JSON mapping
//   ("limit=10" -> int32 10, enums by name). Unknown body fields are ignored
//   (as grpc-gateway and Envoy do); unknown query parameters too. A body
//   value of the wrong JSON type is named in French (json_types.h), never
//   in the parser's words.
// - ResponseToJson: every field printed, defaults included (0, "", []), enum
//   names as written in the proto, JSON (lowerCamelCase) field names.
#ifndef COACH_PROXY_TRANSCODER_H_
#define COACH_PROXY_TRANSCODER_H_

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "proxy/route_table.h"

namespace coach::proxy {

// INVALID_ARGUMENT with a French message for a body or parameter that does
// not fit the message (invalid JSON, wrong type, invalid UTF-8...). When the
// error is about one field, ErrorField names it.
absl::StatusOr<std::unique_ptr<google::protobuf::Message>> RequestFromHttp(
    const Route& route, const PathBindings& bindings,
    const std::multimap<std::string, std::string>& query,
    const std::string& body);

// The field an error of RequestFromHttp is about, if it names one: a body
// field by its JSON path ("userId", "session.title", "tags[1]"), a query or
// path parameter as the request named it ("limit"). For a REST error body's
// "field".
std::optional<std::string> ErrorField(const absl::Status& status);

// INTERNAL if the message cannot be printed (it always can).
absl::StatusOr<std::string> ResponseToJson(
    const google::protobuf::Message& message);

}  // namespace coach::proxy

#endif  // COACH_PROXY_TRANSCODER_H_
