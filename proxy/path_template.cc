#include "proxy/path_template.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace coach::proxy {
namespace {

absl::Status Unsupported(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("path template \"", text, "\": ", why));
}

}  // namespace

absl::StatusOr<PathTemplate> PathTemplate::Parse(absl::string_view text) {
  if (!absl::StartsWith(text, "/"))
    return Unsupported(text, "must start with /");
  if (absl::StrContains(text, ":")) {
    return Unsupported(text, "custom verbs (\":verb\") are not supported");
  }
  PathTemplate result;
  result.text_ = std::string(text);
  const std::vector<absl::string_view> parts =
      absl::StrSplit(text.substr(1), '/');
  for (size_t i = 0; i < parts.size(); ++i) {
    absl::string_view part = parts[i];
    Segment segment;
    if (part.empty()) return Unsupported(text, "empty segment");
    if (part == "*") {
      segment.kind = Segment::Kind::kAny;
    } else if (part == "**") {
      segment.kind = Segment::Kind::kRest;
    } else if (absl::ConsumePrefix(&part, "{")) {
      if (!absl::ConsumeSuffix(&part, "}")) {
        return Unsupported(text, "unclosed variable");
      }
      const std::vector<absl::string_view> name_and_pattern =
          absl::StrSplit(part, absl::MaxSplits('=', 1));
      segment.field_path = std::string(name_and_pattern[0]);
      const absl::string_view pattern =
          name_and_pattern.size() > 1 ? name_and_pattern[1] : "*";
      if (segment.field_path.empty())
        return Unsupported(text, "unnamed variable");
      if (pattern == "*") {
        segment.kind = Segment::Kind::kAny;
      } else if (pattern == "**") {
        segment.kind = Segment::Kind::kRest;
      } else {
        return Unsupported(text, "variables bind \"*\" or \"**\" only");
      }
    } else if (part.find_first_of("{}*=") != absl::string_view::npos) {
      return Unsupported(text, "malformed segment");
    } else {
      segment.literal = std::string(part);
    }
    if (segment.kind == Segment::Kind::kRest && i + 1 != parts.size()) {
      return Unsupported(text, "\"**\" must be the last segment");
    }
    result.segments_.push_back(std::move(segment));
  }
  return result;
}

std::optional<PathBindings> PathTemplate::Match(absl::string_view path) const {
  if (!absl::ConsumePrefix(&path, "/")) return std::nullopt;
  const std::vector<absl::string_view> parts = absl::StrSplit(path, '/');
  PathBindings bindings;
  for (size_t i = 0; i < segments_.size(); ++i) {
    const Segment& segment = segments_[i];
    if (segment.kind == Segment::Kind::kRest) {
      if (i >= parts.size()) return std::nullopt;
      const std::string rest =
          absl::StrJoin(parts.begin() + i, parts.end(), "/");
      if (rest.empty()) return std::nullopt;
      if (!segment.field_path.empty())
        bindings.emplace_back(segment.field_path, rest);
      return bindings;
    }
    if (i >= parts.size() || parts[i].empty()) return std::nullopt;
    if (segment.kind == Segment::Kind::kLiteral) {
      if (parts[i] != segment.literal) return std::nullopt;
    } else if (!segment.field_path.empty()) {
      bindings.emplace_back(segment.field_path, std::string(parts[i]));
    }
  }
  if (parts.size() != segments_.size()) return std::nullopt;
  return bindings;
}

std::vector<std::string> PathTemplate::FieldPaths() const {
  std::vector<std::string> paths;
  for (const Segment& segment : segments_) {
    if (!segment.field_path.empty()) paths.push_back(segment.field_path);
  }
  return paths;
}

bool PathTemplate::MoreSpecificThan(const PathTemplate& other) const {
  const size_t common = std::min(segments_.size(), other.segments_.size());
  for (size_t i = 0; i < common; ++i) {
    if (segments_[i].kind != other.segments_[i].kind) {
      return segments_[i].kind < other.segments_[i].kind;
    }
  }
  // Two templates alike up to where one ends cannot match the same path
  // (only a last `**` reaches further, and it would have differed above).
  return false;
}

}  // namespace coach::proxy
