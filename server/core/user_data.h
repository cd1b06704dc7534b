// UserData: what the service keeps about a user, and the user's rights over
// it (GDPR): the usage ledger (what they consumed, month by month), a copy
// of all their data (art. 15 and 20), its erasure (art. 17) and the
// retention limit on conversations (art. 5).
//
// What is kept, and why (docs/product-rules.md "Users' data"):
// - conversations (sessions and messages) until the user deletes them, the
//   user's data is erased, or they are older than CoreConfig::
//   session_retention (when set);
// - the user's row (plan, this month's credits) and the usage ledger, even
//   after an erasure: billing records with no content, so that deleting
//   one's data never gives fresh credits.
//
// Who may call what is the RPC layer's rule (as for Accounts): the caller's
// own data, or any user's for the admin. Every method validates its input
// first (INVALID_ARGUMENT naming the field) and returns only errors.h's
// errors. Thread-safe.
#ifndef COACH_SERVER_CORE_USER_DATA_H_
#define COACH_SERVER_CORE_USER_DATA_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/chat.h"
#include "server/core/clock.h"
#include "server/core/config.h"
#include "server/core/credits.h"
#include "storage/store.h"

namespace coach {

struct UsageList {
  std::vector<UserUsageRecord> users;
  // Set when more users follow.
  std::string next_page_token;
};

// A user's data as one JSON document, produced a piece at a time: each
// piece is read from the store when asked for, so that a user with a long
// history is never held whole in memory. Concatenated, the pieces are the
// document (docs/api.md "Export"):
//   {"userId","exportedAt","plan","status","remainingCredits",
//    "usage":[Usage…],"sessions":[{"id","title","createdAt","updatedAt",
//    "messages":[{"id","role","content","createdAt","model",
//    "promptTokens","completionTokens"}…]}…]}
// Not thread-safe: one call reads it, one piece at a time.
class UserExport {
 public:
  virtual ~UserExport() = default;
  // The next piece (never empty), or nullopt once the document is complete.
  // An error ends the export (the document is then incomplete).
  virtual absl::StatusOr<std::optional<std::string>> Next() = 0;
};

class UserData {
 public:
  // All references must outlive the UserData and its exports.
  UserData(const CoreConfig& config, Store& store, const Clock& clock);

  // The user's usage in `month` ("YYYY-MM"; empty: the current month, UTC).
  absl::StatusOr<UsageRecord> GetUsage(absl::string_view user_id,
                                       absl::string_view month);

  // Every user's usage in `month` (as GetUsage), a page at a time, by
  // userId: pages of Limits::max_page_size by default (capped there), a
  // token valid for the same month only.
  absl::StatusOr<UsageList> ListUsage(absl::string_view month,
                                      const PageRequest& page);

  // A copy of the user's data (see UserExport). An unknown user's is their
  // default plan and nothing else.
  absl::StatusOr<std::unique_ptr<UserExport>> Export(absl::string_view user_id);

  // Erases the user's conversations and idempotency records
  // (Store::EraseUserData).
  absl::StatusOr<ErasedData> Erase(absl::string_view user_id);

  // Deletes the conversations last updated before now -
  // CoreConfig::session_retention, CoreConfig::retention_purge_batch per
  // store transaction and at most `batches` transactions; returns how many.
  // 0 without a retention period. For a background thread of the server's.
  absl::StatusOr<int> PurgeExpiredSessions(int batches);

 private:
  // `month` checked ("YYYY-MM"), or the current one when empty.
  absl::StatusOr<std::string> MonthOf(absl::string_view month) const;

  const CoreConfig& config_;
  Store& store_;
  const Clock& clock_;
  CreditPolicy credits_;
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_USER_DATA_H_
