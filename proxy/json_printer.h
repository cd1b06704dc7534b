// PrintJson: a message as JSON, byte for byte what protobuf 3.21's
// MessageToJsonString prints with the proxy's options (every field, defaults
// included; lowerCamelCase names), without its detour: that printer
// serialises the message, parses the bytes back through a type resolver and
// builds a tree of nodes before writing a character (a third of
// coach-proxy's CPU per read, docs/performance.md, issue 30). This one walks
// the message once by reflection.
//
// It knows the shapes our API answers with: scalars (integers, bool,
// string, enum), nested and repeated messages, proto3 `optional`, oneofs and
// google.protobuf.Timestamp. For anything else (floating point, bytes, maps,
// other well-known types, a string that is not UTF-8) it returns false and
// prints nothing: the caller falls back to protobuf's printer. What it
// copies of that printer's output, so that no client sees a byte change:
// - fields in declaration order, except those protobuf appends after them
//   in field-number order when set: members of a oneof (a proto3 `optional`
//   is one) that are not messages, and Timestamps;
// - int64 and uint64 as strings; enums by name, by number if unknown;
// - strings escaped as protobuf escapes them: `"`, `\`, control characters,
//   `<` and `>` (for HTML), and the invisible or line-breaking code points
//   JavaScript mishandles (U+2028, U+2029, U+FEFF...), as \uXXXX.
// tests/json_printer_test.cc holds it to protobuf's output on every
// response type, with random contents.
//
// Thread-safety: a pure function.
#ifndef COACH_PROXY_JSON_PRINTER_H_
#define COACH_PROXY_JSON_PRINTER_H_

#include <string>

#include "google/protobuf/message.h"

namespace coach::proxy {

// Appends `message` as JSON to `out` and returns true, or returns false with
// `out` in an unspecified state when the message holds a shape it does not
// print (above).
bool PrintJson(const google::protobuf::Message& message, std::string* out);

}  // namespace coach::proxy

#endif  // COACH_PROXY_JSON_PRINTER_H_
