#include "server/core/page_token.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace coach {
namespace {

// Version 1: "1" then, per field, its length, ':' and its bytes (so that a
// field holds any byte, separators included): list, scope, time, seq.
constexpr absl::string_view kVersion = "1";
constexpr int kFields = 4;

void AppendField(std::string& out, absl::string_view field) {
  absl::StrAppend(&out, field.size(), ":", field);
}

// Reads the next "<length>:<bytes>" from `in` into `field`.
bool ReadField(absl::string_view& in, absl::string_view& field) {
  const size_t colon = in.find(':');
  size_t length = 0;
  if (colon == absl::string_view::npos || colon == 0 || colon > 6 ||
      !absl::SimpleAtoi(in.substr(0, colon), &length) ||
      in.size() - colon - 1 < length) {
    return false;
  }
  field = in.substr(colon + 1, length);
  in.remove_prefix(colon + 1 + length);
  return true;
}

}  // namespace

std::string MessagesScope(absl::string_view owner,
                          absl::string_view session_id) {
  std::string scope;
  AppendField(scope, owner);
  AppendField(scope, session_id);
  return scope;
}

std::string UsageScope(absl::string_view month,
                       absl::string_view last_user_id) {
  // The same framing as MessagesScope's.
  return MessagesScope(month, last_user_id);
}

std::optional<std::pair<std::string, std::string>> ParseUsageScope(
    absl::string_view scope) {
  absl::string_view month, last_user_id;
  if (!ReadField(scope, month) || !ReadField(scope, last_user_id) ||
      !scope.empty()) {
    return std::nullopt;
  }
  return std::make_pair(std::string(month), std::string(last_user_id));
}

std::string EncodePageToken(const PageCursor& cursor) {
  std::string raw(kVersion);
  AppendField(raw, absl::StrCat(static_cast<int>(cursor.list)));
  AppendField(raw, cursor.scope);
  AppendField(raw, absl::StrCat(cursor.time_micros));
  AppendField(raw, absl::StrCat(cursor.seq));
  return absl::WebSafeBase64Escape(raw);
}

std::optional<PageCursor> DecodePageToken(absl::string_view token) {
  std::string raw;
  if (token.empty() || !absl::WebSafeBase64Unescape(token, &raw)) {
    return std::nullopt;
  }
  absl::string_view in(raw);
  if (!absl::ConsumePrefix(&in, kVersion)) return std::nullopt;
  std::vector<absl::string_view> fields(kFields);
  for (absl::string_view& field : fields) {
    if (!ReadField(in, field)) return std::nullopt;
  }
  int list = 0;
  PageCursor cursor;
  if (!in.empty() || !absl::SimpleAtoi(fields[0], &list) ||
      list < static_cast<int>(PagedList::kSessions) ||
      list > static_cast<int>(PagedList::kUsage) ||
      !absl::SimpleAtoi(fields[2], &cursor.time_micros) ||
      !absl::SimpleAtoi(fields[3], &cursor.seq) || cursor.seq < 0) {
    return std::nullopt;
  }
  cursor.list = static_cast<PagedList>(list);
  cursor.scope = std::string(fields[1]);
  return cursor;
}

}  // namespace coach
