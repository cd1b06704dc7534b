// Store: everything Coach AI Hub persists, in the domain's words.
//
// Contract, for every implementation (SqliteStore, PostgresStore):
// - Thread-safe: any method may be called from many threads at once.
// - Each method is atomic: it happens entirely or not at all.
// - Errors are values. NOT_FOUND for a missing session where a method says
//   so; RESOURCE_EXHAUSTED from CommitExchange when the reserved credit can no
//   longer be charged; FAILED_PRECONDITION from CommitExchange when the user
//   already owns the maximum of sessions;
//   ABORTED from CommitExchange and CompleteIdempotencyKey when the key's
//   claim is no longer the caller's; INTERNAL (or UNAVAILABLE) when the backend
//   fails. No exception escapes.
// - Reads never create rows; writes that name an unknown user create it on
//   `CreditTerms::new_user_plan`.
#ifndef COACH_STORAGE_STORE_H_
#define COACH_STORAGE_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/records.h"

namespace coach {

// Where a page of a keyset-ordered list ends: the sort key of the last row
// it returned. The next page starts strictly after it, so rows inserted
// meanwhile never shift the rows that follow (see ListSessionsPage).
//
// A user's sessions are ordered by updated_at, newest first, ties broken by
// `seq`: the store's insertion number of the session (SQLite's rowid,
// PostgreSQL's identity column), newest first; ListSessions uses the same
// order. A seq means something only to the store that returned it.
struct SessionKey {
  absl::Time updated_at;
  int64_t seq = 0;
};

// One page of a user's sessions; `next` is set when more follow.
struct SessionPage {
  std::vector<SessionRecord> sessions;
  std::optional<SessionKey> next;
};

// A session's messages are ordered by `seq`, the store's insertion number of
// a message (insertion order is time order, oldest first).
struct MessagePage {
  std::vector<MessageRecord> messages;
  // The seq of the last message returned, set when more follow.
  std::optional<int64_t> next;
};

class Store {
 public:
  virtual ~Store() = default;

  // --- Users ---
  virtual absl::StatusOr<std::optional<UserRecord>> FindUser(
      absl::string_view user_id) = 0;
  // Moves the user to `plan` with a full allowance for `terms.period`.
  virtual absl::StatusOr<UserRecord> SetPlan(absl::string_view user_id,
                                             Plan plan,
                                             const CreditTerms& terms,
                                             absl::Time now) = 0;
  // Refills if the period changed, then adds `credits`. OUT_OF_RANGE, with
  // nothing changed, if the balance would then exceed `max_balance`.
  virtual absl::StatusOr<UserRecord> AddCredits(absl::string_view user_id,
                                                int32_t credits,
                                                int32_t max_balance,
                                                const CreditTerms& terms,
                                                absl::Time now) = 0;
  virtual absl::StatusOr<UserTotals> CountUserActivity(
      absl::string_view user_id) = 0;
  // FindUser and CountUserActivity in one read (one statement, one
  // snapshot): what a stats request needs, at the cost of one.
  virtual absl::StatusOr<UserActivity> FindUserActivity(
      absl::string_view user_id) = 0;

  // --- Server runs ---
  // Makes the holds this store takes from now on belong to a new run of
  // `instance` (a server's stable name, the same after a restart), and
  // drops every hold left by an earlier run of `instance`: that process has
  // ended, so have its sends (a kill -9 leaves no phantom hold). The
  // unfinished idempotency claims of those runs are dropped too (a retry
  // then runs at once). Returns how many holds it dropped. Called once at
  // start, once the server holds its port (a second server refused that
  // port must not call it: it would drop the live one's holds); holds taken
  // before belong to instance "" and are only dropped by their send or
  // their expiry. Two live servers must never share an instance name.
  virtual absl::StatusOr<int> BeginRun(absl::string_view instance) = 0;

  // --- Sends ---
  // The first of a send's two write transactions (the exchange's commit is
  // the second). In one transaction:
  //  1. creates the user if unknown, locks its row and refills it;
  //  2. with request.claim, claims the key (see "Idempotency keys" below):
  //     if the key is held (still running, ended, or another request) that
  //     is the answer, and nothing more is written;
  //  3. reads the AdmissionState (live sends, sessions, the named session,
  //     the rate state) and asks `decide`;
  //  4. writes the answer: the rate state; when admitted, a reservation
  //     owned by the current run (BeginRun), expiring at
  //     request.expires_at; when refused with a key, the key's stored
  //     response (Admission::key_response) or the key freed.
  // Every decision on a user is taken under that user's row lock, so
  // concurrent admissions, on any server sharing the database, see each
  // other's reservations and rate state. Expired reservations never count.
  // `decide` must be quick and touch no store: it runs inside the
  // transaction, and may run more than once (a transaction retried after
  // a serialization failure); the last answer is the one written.
  using AdmissionRule = absl::FunctionRef<Admission(const AdmissionState&)>;
  virtual absl::StatusOr<SendAdmissionResult> AdmitSend(
      const SendAdmissionRequest& request, AdmissionRule decide) = 0;
  // Gives a send's reservation back (the reply failed): its credit and its
  // place among the user's concurrent sends. Idempotent.
  virtual absl::Status ReleaseCredit(const CreditReservation& reservation) = 0;

  // --- Sessions and messages ---
  // Creates `session`'s user if unknown and locks its row, reads the
  // AdmissionState (`session` field unset), asks `decide` (as AdmitSend)
  // and writes its rate state; inserts `session` only if admitted. Returns
  // whether it was inserted. One transaction: concurrent creates, on any
  // server, see each other's sessions.
  virtual absl::StatusOr<bool> CreateSession(const SessionRecord& session,
                                             const CreditTerms& terms,
                                             absl::Time now,
                                             AdmissionRule decide) = 0;
  virtual absl::StatusOr<std::optional<SessionRecord>> FindSession(
      absl::string_view session_id) = 0;
  // The user's sessions, most recently updated first, at most `limit`.
  virtual absl::StatusOr<std::vector<SessionRecord>> ListSessions(
      absl::string_view user_id, int limit) = 0;
  // The newest `limit` messages of a session, oldest first.
  virtual absl::StatusOr<std::vector<MessageRecord>> ListRecentMessages(
      absl::string_view session_id, int limit) = 0;

  // --- Pages (keyset pagination) ---
  // One page of the user's sessions in ListSessions' order (SessionKey):
  // the first `page_size` (> 0) sessions strictly after `after` (nullopt:
  // from the newest). `next` is the key of the last session returned when
  // at least one more follows it, nullopt on the last page. Read in one
  // statement; the key makes a walk page by page stable while sessions are
  // created (a new session sorts before every key already handed out, so
  // it shifts nothing after it). A session updated during a walk moves to
  // the front: a walk already past it does not see it again, one not yet
  // there sees it once, later (see docs/adr/0027-cursor-pagination.md).
  virtual absl::StatusOr<SessionPage> ListSessionsPage(
      absl::string_view user_id, const std::optional<SessionKey>& after,
      int page_size) = 0;
  // One page of a session's messages, oldest first: the first `page_size`
  // (> 0) whose seq is greater than `after` (nullopt: from the oldest).
  // `next` as for sessions. Messages are only ever appended, so a walk sees
  // each exactly once, new ones at its end. An unknown session has none.
  virtual absl::StatusOr<MessagePage> ListMessagesPage(
      absl::string_view session_id, std::optional<int64_t> after,
      int page_size) = 0;

  // NOT_FOUND if the session does not exist.
  virtual absl::StatusOr<SessionRecord> RenameSession(
      absl::string_view session_id, absl::string_view title,
      absl::Time now) = 0;
  // Deletes the session and its messages. NOT_FOUND if it does not exist.
  virtual absl::Status DeleteSession(absl::string_view session_id) = 0;

  // --- Idempotency keys (a retried send is never run twice) ---
  // A key is claimed by AdmitSend: the claim takes (user_id, key) if it is
  // free, expired (expires_at <= now), or held by an unfinished claim past
  // its claim_expires_at; otherwise it says what holds it: the same request
  // (same request_hash) still running, or ended (its stored response), or
  // another request. The database's unique (user_id, key) decides races,
  // also between servers. The claim belongs to the current run (BeginRun).
  // Frees the key if `claim_id` still holds it unfinished (the send ended
  // with nothing worth replaying). Idempotent.
  virtual absl::Status ReleaseIdempotencyKey(absl::string_view user_id,
                                             absl::string_view key,
                                             absl::string_view claim_id) = 0;
  // Stores `response` (no credits) as the key's final response, outside any
  // exchange (a send that ended in an error worth replaying). ABORTED if
  // `claim_id` no longer holds the key.
  virtual absl::Status CompleteIdempotencyKey(absl::string_view user_id,
                                              absl::string_view key,
                                              absl::string_view claim_id,
                                              absl::string_view response) = 0;
  // Deletes at most `limit` keys expired at `now` (their expires_at <= now),
  // in one short transaction; returns how many. Skips rows other
  // transactions hold (PostgreSQL), so it never makes a send wait long.
  virtual absl::StatusOr<int> PurgeIdempotencyKeys(absl::Time now,
                                                   int limit) = 0;

  // One transaction: creates the session if new, stores both messages,
  // updates the session's summary, charges the reserved credit (if any),
  // counts the reply in the usage ledger (Exchange::user_id, the terms'
  // period, the reply's model and tokens, the credit if charged) and
  // completes the send's idempotency key (if any) with its response.
  // NOT_FOUND if the session vanished meanwhile; RESOURCE_EXHAUSTED if the
  // credit cannot be charged; FAILED_PRECONDITION if the new session would
  // exceed Exchange::max_user_sessions (as CreateSession); ABORTED if the
  // idempotency key's claim is no longer Exchange::idempotency->claim_id.
  // On error nothing is stored.
  virtual absl::StatusOr<ExchangeResult> CommitExchange(
      const Exchange& exchange) = 0;

  // --- Usage (the ledger CommitExchange writes) ---
  // The user's usage in `month` ("YYYY-MM"): zeros, with that month and no
  // model, when they had none.
  virtual absl::StatusOr<UsageRecord> GetUsage(absl::string_view user_id,
                                               absl::string_view month) = 0;
  // Every month the user has usage in, oldest first.
  virtual absl::StatusOr<std::vector<UsageRecord>> ListUserUsage(
      absl::string_view user_id) = 0;
  // One page of `month`'s usage: the first `page_size` (> 0) users with
  // usage that month whose user_id sorts after `after` (nullopt: from the
  // first), by user_id. Keyset-based: a walk sees every user once.
  virtual absl::StatusOr<UsagePage> ListUsage(
      absl::string_view month, const std::optional<std::string>& after,
      int page_size) = 0;

  // --- Users' data rights ---
  // Deletes every session, message and idempotency key of the user, in one
  // transaction; the user's row (plan, credits), its live reservations and
  // its usage stay. Then makes sure no deleted text remains in the
  // database's files where the engine allows it (SqliteStore: its deletes
  // overwrite the freed bytes, and the WAL is checkpointed and truncated;
  // PostgreSQL leaves the bytes to VACUUM: see
  // docs/adr/0048-erasure-and-retention.md). An
  // unknown user has nothing to delete.
  virtual absl::StatusOr<ErasedData> EraseUserData(
      absl::string_view user_id) = 0;
  // Deletes at most `limit` sessions (with their messages) last updated
  // before `cutoff`, in one short transaction; returns how many. Skips
  // sessions other transactions hold (PostgreSQL), so it never makes a send
  // wait. Usage stays.
  virtual absl::StatusOr<int> PurgeSessions(absl::Time cutoff, int limit) = 0;
};

}  // namespace coach

#endif  // COACH_STORAGE_STORE_H_
