// Chat: the rules of conversations, written once. Both RPC services call it;
// it alone decides validation, ownership, credits, titles and history.
//
// Every method validates its input first (INVALID_ARGUMENT naming the field),
// then applies the rules, and returns only the errors of errors.h: a storage
// or coach failure is logged and surfaces as INTERNAL/UNAVAILABLE/
// AI_UNAVAILABLE, never with a backend message. Thread-safe.
//
// Where storage runs (one rule): Chat calls the store on the thread that
// calls Chat, and starts or hands work to no thread of its own. Each store
// call is short and bounded (SQLite's busy timeout), so a caller's thread may
// wait on it: the gRPC callback thread that received a request runs the
// quick RPCs and the first half of a send (validation, credit hold, context
// read); the second half (storing the exchange, charging) runs on the thread
// the coach calls back on, which coach.h keeps off every event loop: the
// caller's own when the coach answers without I/O, a coach thread otherwise.
#ifndef COACH_SERVER_CORE_CHAT_H_
#define COACH_SERVER_CORE_CHAT_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/cancellation.h"
#include "server/core/clock.h"
#include "server/core/coach.h"
#include "server/core/config.h"
#include "server/core/core_metrics.h"
#include "server/core/credits.h"
#include "server/core/idempotency.h"
#include "server/core/page_token.h"
#include "server/core/user_limits.h"
#include "storage/store.h"

namespace coach {

// The title of a session created without one.
inline constexpr absl::string_view kDefaultSessionTitle =
    "Nouvelle conversation";

// A list request's paging (AIP-158). Neither set: the unpaged list, as
// documented before pagination (capped, no token). Either set: one page.
struct PageRequest {
  // 0: the list's default size; negative: INVALID_ARGUMENT; capped at
  // Limits::max_page_size.
  int page_size = 0;
  // A previous answer's next_page_token, for the same list and scope
  // (INVALID_ARGUMENT on `pageToken` otherwise); empty: the first page.
  std::string page_token;

  bool paged() const { return page_size != 0 || !page_token.empty(); }
};

struct SessionList {
  // Most recently updated first.
  std::vector<SessionRecord> sessions;
  // Set only on a paged request when more sessions follow.
  std::string next_page_token;
};

struct SessionWithMessages {
  SessionRecord session;
  // Oldest first.
  std::vector<MessageRecord> messages;
  // Set only on a paged request when more messages follow.
  std::string next_page_token;
};

struct SendResult {
  std::string session_id;
  MessageRecord user_message;
  MessageRecord assistant_message;
  // Credits left after this send; absent on an unlimited plan.
  std::optional<int32_t> remaining_credits;
  // The stored response of an earlier send with the same idempotency key,
  // given again (nothing ran, nothing was charged).
  bool replayed = false;
};

// The caller of a send: when it stops waiting, and whether it has given up
// (cancelled, disconnected, server shutting down). A reply that comes after
// either is neither stored nor charged: the caller never sees it.
struct Caller {
  absl::Time deadline = absl::InfiniteFuture();
  // Raised when the caller gives up; null: it never does.
  std::shared_ptr<Cancellation> cancellation = nullptr;
  // The caller's Idempotency-Key for this send (see SendMessage); absent:
  // none, every send runs.
  std::optional<std::string> idempotency_key = std::nullopt;

  bool cancelled() const {
    return cancellation != nullptr && cancellation->IsCancelled();
  }
};

struct History {
  // Newest updatedAt first, at most the requested limit.
  std::vector<SessionRecord> sessions;
  // Over all of the user's sessions, whatever the limit or page.
  UserTotals totals;
  // Set only on a paged request when more sessions follow.
  std::string next_page_token;
};

class Chat {
 public:
  // All references must outlive the Chat. Sends are recorded in `metrics`
  // (core_metrics.h; null: in a registry of the Chat's own, never read).
  Chat(const CoreConfig& config, Store& store, Coach& coach, const Clock& clock,
       CoreMetrics* metrics = nullptr);

  // Unpaged: the newest Limits::max_sessions_listed. Paged: pages of
  // max_sessions_listed by default, keyset-based (Store::ListSessionsPage):
  // a walk sees every session that exists throughout exactly once, in order,
  // whatever is created meanwhile.
  absl::StatusOr<SessionList> ListSessions(absl::string_view user_id,
                                           const PageRequest& page = {});

  // `title` absent or empty (""): kDefaultSessionTitle (the API page calls
  // the title optional, and JSON clients send "" for "none"). Otherwise:
  // trimmed, not blank (only spaces: INVALID_ARGUMENT).
  // Then RATE_LIMITED past UserLimits::session_create_rate_per_minute and
  // SESSION_LIMIT_REACHED once the user owns max_sessions_per_user.
  absl::StatusOr<SessionRecord> CreateSession(
      absl::string_view user_id, const std::optional<std::string>& title);

  // `user_id` is optional: session ids are unguessable capabilities. When
  // given it must be the owner's (SESSION_FORBIDDEN otherwise).
  // Unpaged: the newest Limits::max_messages_per_session messages. Paged:
  // the messages from the oldest on, max_messages_per_session per page by
  // default; new messages come at the end of a walk.
  absl::StatusOr<SessionWithMessages> GetSession(absl::string_view session_id,
                                                 absl::string_view user_id,
                                                 const PageRequest& page = {});
  // Renames the session and returns it as GetSession (unpaged) would: with
  // its messages, so that an answer never shows a session with messages as
  // empty.
  absl::StatusOr<SessionWithMessages> RenameSession(
      absl::string_view session_id, absl::string_view user_id,
      absl::string_view title);
  absl::Status DeleteSession(absl::string_view session_id,
                             absl::string_view user_id);

  // Runs exactly once, with the send's outcome.
  using SendCallback = absl::AnyInvocable<void(absl::StatusOr<SendResult>)>;
  // Receives a piece of the reply's text (see StreamMessage).
  using DeltaCallback = std::function<void(absl::string_view piece)>;

  // Sends `message` into `session_id` (empty: a new session titled from the
  // message) and delivers the coach's reply to `done`. One credit is reserved
  // before the coach is asked (NO_CREDITS if none is free) and charged in the
  // same transaction that stores both messages; a failed reply stores and
  // charges nothing.
  //
  // Order of the checks: validation (INVALID_ARGUMENT), the caller's
  // deadline, then the per-user limits (UserLimits: RATE_LIMITED for
  // concurrency, send rate and, without session_id, session creation rate;
  // SESSION_LIMIT_REACHED), then ownership (SESSION_NOT_FOUND/FORBIDDEN) and
  // credits. A send refused by a limit holds, charges and stores nothing and
  // never reaches the coach; one refused later has used its rate token
  // (every attempt counts). The key, the limits, ownership and credits are
  // decided in one store transaction under the user's lock
  // (Store::AdmitSend), so the limits hold across every server sharing the
  // store; storing the reply is the send's second and last.
  //
  // Returns once the coach is asked. `done` runs before that when the send
  // fails early or the coach answers without I/O, otherwise on one of the
  // coach's threads once the reply is stored. If caller.cancellation is
  // raised meanwhile, the coach stops and the send ends CANCELLED, charging
  // and storing nothing.
  //
  // With caller.idempotency_key (checked with the input: 1 to
  // Limits::max_idempotency_key_length printable ASCII characters), the key
  // is claimed for the user before the limits: a key whose send ended gives
  // its stored response again (SendResult::replayed; a stored error marked
  // IsReplayed) if the request is the same (SendRequestHash), and
  // IDEMPOTENCY_KEY_REUSED if not; a key whose send still runs,
  // IDEMPOTENCY_IN_PROGRESS (or REUSED). Neither holds, charges nor
  // stores anything, nor takes a rate token. A send that claimed the key
  // stores its response with it in the exchange's transaction, or an error
  // worth replaying (idempotency.h) after; any other end frees the key, so a
  // retry runs. Keys live CoreConfig::idempotency_ttl.
  //
  // SendMessage is StreamMessage without `on_delta`.
  void SendMessage(absl::string_view user_id, absl::string_view session_id,
                   absl::string_view message, Caller caller, SendCallback done);

  // SendMessage (same checks, same order, same outcome), also giving the
  // reply's text to `on_delta` as the coach writes it: non-empty valid UTF-8
  // pieces, in order. Every piece is given before `done` runs, and on
  // success the pieces concatenated equal the stored
  // assistant_message.content exactly (the coach's text as it returned it,
  // untrimmed): what the coach did not report as pieces is given as one last
  // piece once the exchange is stored. A coach whose pieces disagree with its
  // reply fails the send (INTERNAL, nothing stored). No piece is given when
  // the send fails before the coach is asked; pieces already given are not
  // taken back when it fails later (the caller ends its stream with the
  // error). `on_delta` runs on the coach's threads, possibly its event loop:
  // it must be quick and never block. Null: SendMessage.
  void StreamMessage(absl::string_view user_id, absl::string_view session_id,
                     absl::string_view message, Caller caller,
                     DeltaCallback on_delta, SendCallback done);

  // Unpaged: the newest `limit` sessions (ValidateHistoryLimit). Paged:
  // pages in the same order, of `limit`'s default size unless pageSize says;
  // `limit` and `pageSize` together are INVALID_ARGUMENT (on `limit`).
  absl::StatusOr<History> GetHistory(absl::string_view user_id,
                                     std::optional<int> limit,
                                     const PageRequest& page = {});

  // Deletes the idempotency keys expired by now, at most
  // CoreConfig::idempotency_purge_batch per store transaction and `batches`
  // transactions; returns how many. For a background thread of the server's
  // (sends never wait for it). Thread-safe.
  absl::StatusOr<int> PurgeExpiredKeys(int batches);

 private:
  // What a send holds while the coach writes.
  struct PendingSend {
    std::string user_id;
    // The user's plan when the send was admitted (for the metrics).
    Plan plan = Plan::kFree;
    std::string session_id;
    // Set when the send creates its session (stored with the messages).
    std::optional<SessionRecord> new_session;
    std::string text;  // the validated message
    absl::Time started;
    // The send's reservation (one of the user's concurrent sends, and on a
    // limited plan one credit), given back by any path that does not
    // commit the exchange.
    CreditHold hold;
    // The send's idempotency key, if any: completed by the commit, settled
    // (stored error or released) by any other end.
    KeyClaim claim;
  };
  // Validates the send, then claims its key and admits it in one store
  // transaction (Store::AdmitSend, deciding with DecideSend). The send runs
  // when this returns nullopt, with `pending` and `request` (the
  // conversation for the coach) filled; otherwise it ends with the result
  // returned: a replay, or why it cannot run.
  std::optional<absl::StatusOr<SendResult>> BeginSend(
      absl::string_view user_id, absl::string_view session_id,
      absl::string_view message, const Caller& caller, PendingSend& pending,
      CoachRequest& request);
  // BeginSend's checks before the store: the input, the idempotency key,
  // the caller's patience, in that order; the message trimmed.
  absl::StatusOr<std::string> CheckSendRequest(absl::string_view user_id,
                                               absl::string_view session_id,
                                               absl::string_view message,
                                               const Caller& caller) const;
  // What BeginSend asks Store::AdmitSend at `now`, with the key's claim if
  // the caller gave one.
  SendAdmissionRequest AdmissionRequest(absl::string_view user_id,
                                        absl::string_view session_id,
                                        absl::string_view message,
                                        const Caller& caller,
                                        absl::Time now) const;
  // The session a send without a session creates, titled from its message.
  SessionRecord NewSession(absl::string_view user_id, absl::string_view text,
                           absl::Time now) const;
  // The rules of a send's admission, in their order (see SendMessage), on
  // the state the store read under the user's lock: the answer to write,
  // and in `refusal` why it was refused (OK when admitted).
  Admission DecideSend(const AdmissionState& state, absl::string_view user_id,
                       bool creates_session, absl::Time now,
                       absl::Status& refusal) const;
  // DecideSend's first rules: the user's concurrent sends, then the send
  // rate, then (`creates_session`) the session rate. OK with the tokens
  // taken written to `rates`; else why, `rates` untouched.
  absl::Status TakeSendTokens(const AdmissionState& state, bool creates_session,
                              absl::Time now, RateState& rates) const;
  // A replay of the key's stored outcome, or why the key is unavailable.
  absl::StatusOr<SendResult> HeldKeyResult(const ClaimOutcome& outcome) const;
  // Stores and charges the exchange; on any failure the credit held is given
  // back before this returns.
  absl::StatusOr<SendResult> FinishSend(PendingSend pending,
                                        const Caller& caller,
                                        absl::StatusOr<CoachReply> reply);
  // FinishSend's work, the key's claim apart (settled by FinishSend).
  absl::StatusOr<SendResult> StoreReply(PendingSend& pending,
                                        const Caller& caller,
                                        absl::StatusOr<CoachReply> reply);
  // OK if the coach's reply can be stored; else what the caller is told (a
  // caller gone, the coach's reasoned error, AI unavailable, INTERNAL).
  absl::Status CheckReply(const absl::StatusOr<CoachReply>& reply,
                          const Caller& caller) const;
  // The exchange StoreReply commits: the pending send's message (moved
  // from `pending`) and the reply, stamped now, with the key's completion.
  Exchange ExchangeOf(PendingSend& pending, CoachReply reply,
                      const CreditHold& hold) const;
  // The conversation so far for the coach, then the new message.
  absl::Status LoadConversation(const PendingSend& pending,
                                CoachRequest& request);

  // Loads a session and checks that `user_id` (when not empty) owns it.
  absl::StatusOr<SessionRecord> LoadOwnedSession(absl::string_view session_id,
                                                 absl::string_view user_id);
  // `session` with its newest max_messages_per_session messages (unpaged).
  absl::StatusOr<SessionWithMessages> WithRecentMessages(SessionRecord session);
  // One page of the user's sessions for `list` (kSessions or kHistory).
  absl::StatusOr<SessionPage> SessionsPage(absl::string_view user_id,
                                           PagedList list,
                                           const PageRequest& page,
                                           int default_size);
  // DEADLINE_EXCEEDED or CANCELLED if `caller` no longer waits.
  absl::Status CheckCallerWaits(const Caller& caller) const;

  const CoreConfig& config_;
  Store& store_;
  Coach& coach_;
  const Clock& clock_;
  CreditPolicy credits_;
  // Per user, for every server sharing the store (see user_limits.h).
  const RateRule send_rate_;
  const RateRule session_rate_;
  // Without metrics given: the Chat's own.
  std::unique_ptr<metrics::Registry> own_registry_;
  std::unique_ptr<CoreMetrics> own_metrics_;
  CoreMetrics& metrics_;
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_CHAT_H_
