// The JSON types of a request body checked against its message, field by
// field, before protobuf's JSON parser reads it: a value of the wrong kind
// (a number for a string, an object for a list, an unknown enum name...)
// gets a French message naming the field, « Le champ userId doit être une
// chaîne de caractères. », instead of the parser's English internals.
//
// Follows protobuf's JSON mapping: field keys by JSON name ("userId") or
// proto name ("user_id"); unknown keys ignored; null is any field's default;
// 64-bit integers may be quoted; numbers may be quoted or NaN/Infinity.
// Well-known types (google.protobuf.*) are checked for their JSON kind only
// (a Timestamp is a string); the parser checks the rest (its format).
//
// Thread-safe (no state).
#ifndef COACH_PROXY_JSON_TYPES_H_
#define COACH_PROXY_JSON_TYPES_H_

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "google/protobuf/descriptor.h"

namespace coach::proxy {

// The absl::Status payload (type URL) that carries the field an
// INVALID_ARGUMENT is about: set here and by the transcoder, read by
// transcoder.h's ErrorField.
inline constexpr char kErrorFieldPayload[] = "coach.proxy/error-field";

// OK, or INVALID_ARGUMENT with a French message naming the first field at
// fault and that field's JSON path ("userId", "session.title",
// "messages[2].content") as the transcoder's field payload (see
// transcoder.h's ErrorField).
absl::Status CheckJsonTypes(const nlohmann::json& value,
                            const google::protobuf::Descriptor& type);

// `status` with `field` attached as the payload ErrorField reads.
absl::Status WithField(absl::Status status, absl::string_view field);

}  // namespace coach::proxy

#endif  // COACH_PROXY_JSON_TYPES_H_
