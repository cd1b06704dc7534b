// Page tokens (AIP-158): the opaque `pageToken`/`nextPageToken` of the
// paged lists. A token names where the previous page ended (the sort key
// of its last row, storage/store.h) and what it was handed out for: the
// list and its scope (the user, or the user and session). Chat accepts a
// token only for the list and scope it came from.
//
// Not signed: a client that edits a token (the base64url of a few fields)
// can only move within its own list, which it may read anyway; what does not
// decode, or names another list or scope, is refused. Pure functions,
// thread-safe.
#ifndef COACH_SERVER_CORE_PAGE_TOKEN_H_
#define COACH_SERVER_CORE_PAGE_TOKEN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace coach {

// The lists that hand out tokens. A token is valid only in its own list.
enum class PagedList { kSessions = 1, kHistory = 2, kMessages = 3, kUsage = 4 };

struct PageCursor {
  PagedList list = PagedList::kSessions;
  // Whose list: the user id (sessions, history), or the session's owner and
  // its id (messages, see MessagesScope); for a month's usage, the month and
  // the last user id (UsageScope).
  std::string scope;
  // The last row's sort key: for sessions updated_at (Unix micros) and seq;
  // for messages only seq (time 0).
  int64_t time_micros = 0;
  int64_t seq = 0;
};

// The scope of a session's messages.
std::string MessagesScope(absl::string_view owner,
                          absl::string_view session_id);

// The scope of a month's usage list after `last_user_id`, and back
// (nullopt if `scope` is not one UsageScope made).
std::string UsageScope(absl::string_view month, absl::string_view last_user_id);
std::optional<std::pair<std::string, std::string>> ParseUsageScope(
    absl::string_view scope);

// base64url (no padding) of the cursor's fields, prefixed by a version.
std::string EncodePageToken(const PageCursor& cursor);
// nullopt when `token` is not one EncodePageToken makes (bad base64, another
// version, a field missing or left over).
std::optional<PageCursor> DecodePageToken(absl::string_view token);

}  // namespace coach

#endif  // COACH_SERVER_CORE_PAGE_TOKEN_H_
