// PathTemplate: the path of a google.api.http rule, e.g.
// "/api/chat/sessions/{session_id}", parsed once and matched against request
// paths. Supported syntax (what our API and most others use): literal
// segments, `*` (one segment, unbound), `{field.path}` and `{field.path=*}`
// (one segment bound to a field), and a trailing `{field=**}` (the rest).
#ifndef COACH_PROXY_PATH_TEMPLATE_H_
#define COACH_PROXY_PATH_TEMPLATE_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace coach::proxy {

// (field path, value) pairs bound by a match, in template order.
using PathBindings = std::vector<std::pair<std::string, std::string>>;

class PathTemplate {
 public:
  // INVALID_ARGUMENT for syntax outside the supported subset.
  static absl::StatusOr<PathTemplate> Parse(absl::string_view text);

  // The bindings if `path` (already percent-decoded) matches.
  std::optional<PathBindings> Match(absl::string_view path) const;

  const std::string& text() const { return text_; }

  // The field paths the template binds ("session_id", "book.id"), in order.
  std::vector<std::string> FieldPaths() const;

  // Whether this template is more specific than `other`, for a path both
  // match: compared segment by segment from the left, the first difference
  // decides, a literal beating one segment (`*`, `{x}`) beating the rest
  // (`**`, `{x=**}`). False for equally specific templates.
  bool MoreSpecificThan(const PathTemplate& other) const;

 private:
  struct Segment {
    // From the most specific to the least (MoreSpecificThan relies on it).
    enum class Kind { kLiteral, kAny, kRest } kind = Kind::kLiteral;
    std::string literal;     // kLiteral
    std::string field_path;  // bound field; empty when unbound
  };

  std::string text_;
  std::vector<Segment> segments_;
};

}  // namespace coach::proxy

#endif  // COACH_PROXY_PATH_TEMPLATE_H_
