#include "server/core/chat.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

#include "server/core/errors.h"
#include "base/ids.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/text.h"
#include "server/core/validation.h"

namespace coach {

namespace {

// The metrics a Chat records in when it is given none.
CoreMetrics& OwnMetrics(std::unique_ptr<metrics::Registry>& registry,
                        std::unique_ptr<CoreMetrics>& metrics) {
  registry = std::make_unique<metrics::Registry>();
  metrics = std::make_unique<CoreMetrics>(*registry, std::vector<double>{});
  return *metrics;
}

// A send's input, checked before anything else: the message, trimmed.
absl::StatusOr<std::string> ValidateSendInput(absl::string_view user_id,
                                              absl::string_view session_id,
                                              absl::string_view message,
                                              const Limits& limits) {
  COACH_RETURN_IF_ERROR(ValidateUserId(user_id, limits));
  COACH_ASSIGN_OR_RETURN(std::string text, ValidateMessage(message, limits));
  if (!session_id.empty()) {
    COACH_RETURN_IF_ERROR(ValidateSessionId(session_id, limits));
  }
  return text;
}

}  // namespace

Chat::Chat(const CoreConfig& config, Store& store, Coach& coach,
           const Clock& clock, CoreMetrics* metrics)
    : config_(config),
      store_(store),
      coach_(coach),
      clock_(clock),
      credits_(config.plans),
      send_rate_(config.user_limits.send_rate_per_minute, clock),
      session_rate_(config.user_limits.session_create_rate_per_minute, clock),
      send_slots_(config.user_limits.max_concurrent_sends_per_user),
      metrics_(metrics != nullptr ? *metrics
                                  : OwnMetrics(own_registry_, own_metrics_)) {}

namespace {

absl::Status BadPageToken() {
  return InvalidArgumentError(
      "pageToken",
      "Le paramètre « pageToken » est invalide : utilisez le « nextPageToken » "
      "d'une réponse précédente de la même liste.");
}

// The cursor a request's token names, checked against the list and scope
// it is used for; nullopt for the first page.
absl::StatusOr<std::optional<PageCursor>> CursorOf(const PageRequest& page,
                                                   PagedList list,
                                                   absl::string_view scope) {
  if (page.page_token.empty()) return std::optional<PageCursor>();
  std::optional<PageCursor> cursor = DecodePageToken(page.page_token);
  if (!cursor.has_value() || cursor->list != list || cursor->scope != scope) {
    return BadPageToken();
  }
  return cursor;
}

}  // namespace

absl::StatusOr<SessionPage> Chat::SessionsPage(absl::string_view user_id,
                                               PagedList list,
                                               const PageRequest& page,
                                               int default_size) {
  COACH_ASSIGN_OR_RETURN(
      int size, ValidatePageSize(page.page_size, default_size, config_.limits));
  COACH_ASSIGN_OR_RETURN(std::optional<PageCursor> cursor,
                         CursorOf(page, list, user_id));
  std::optional<SessionKey> after;
  if (cursor.has_value()) {
    after = SessionKey{.updated_at = absl::FromUnixMicros(cursor->time_micros),
                       .seq = cursor->seq};
  }
  auto sessions = store_.ListSessionsPage(user_id, after, size);
  if (!sessions.ok()) return ToPublicError(sessions.status(), "list sessions");
  return sessions;
}

namespace {

std::string NextSessionsToken(const SessionPage& page, PagedList list,
                              absl::string_view user_id) {
  if (!page.next.has_value()) return "";
  return EncodePageToken(
      PageCursor{.list = list,
                 .scope = std::string(user_id),
                 .time_micros = absl::ToUnixMicros(page.next->updated_at),
                 .seq = page.next->seq});
}

}  // namespace

absl::StatusOr<SessionList> Chat::ListSessions(absl::string_view user_id,
                                               const PageRequest& page) {
  COACH_RETURN_IF_ERROR(ValidateUserId(user_id, config_.limits));
  if (!page.paged()) {
    auto sessions =
        store_.ListSessions(user_id, config_.limits.max_sessions_listed);
    if (!sessions.ok()) {
      return ToPublicError(sessions.status(), "list sessions");
    }
    return SessionList{.sessions = *std::move(sessions), .next_page_token = ""};
  }
  COACH_ASSIGN_OR_RETURN(
      SessionPage sessions,
      SessionsPage(user_id, PagedList::kSessions, page,
                   config_.limits.max_sessions_listed));
  std::string next = NextSessionsToken(sessions, PagedList::kSessions, user_id);
  return SessionList{.sessions = std::move(sessions.sessions),
                     .next_page_token = std::move(next)};
}

absl::StatusOr<SessionRecord> Chat::CreateSession(
    absl::string_view user_id, const std::optional<std::string>& title) {
  COACH_RETURN_IF_ERROR(ValidateUserId(user_id, config_.limits));
  std::string session_title(kDefaultSessionTitle);
  if (title.has_value() && !title->empty()) {
    COACH_ASSIGN_OR_RETURN(session_title, ValidateTitle(*title, config_.limits));
  }
  if (auto wait = session_rate_.TryTake(user_id); wait.has_value()) {
    return RateLimitedError(*wait);
  }
  const absl::Time now = clock_.Now();
  SessionRecord session{.id = NewRandomId(),
                        .user_id = std::string(user_id),
                        .title = std::move(session_title),
                        .last_message = "",
                        .message_count = 0,
                        .created_at = now,
                        .updated_at = now};
  const int max_sessions = config_.user_limits.max_sessions_per_user;
  const absl::Status created = store_.CreateSession(
      session, max_sessions, credits_.TermsAt(now), now);
  if (absl::IsFailedPrecondition(created)) {
    return SessionLimitReachedError(max_sessions);
  }
  COACH_RETURN_IF_ERROR(ToPublicError(created, "create session"));
  return session;
}

absl::StatusOr<SessionRecord> Chat::LoadOwnedSession(
    absl::string_view session_id, absl::string_view user_id) {
  COACH_RETURN_IF_ERROR(ValidateSessionId(session_id, config_.limits));
  COACH_RETURN_IF_ERROR(ValidateOptionalUserId(user_id, config_.limits));
  auto session = store_.FindSession(session_id);
  if (!session.ok()) return ToPublicError(session.status(), "find session");
  if (!session->has_value()) return SessionNotFoundError();
  if (!user_id.empty() && (*session)->user_id != user_id) {
    return SessionForbiddenError();
  }
  return **std::move(session);
}

absl::StatusOr<SessionWithMessages> Chat::WithRecentMessages(
    SessionRecord session) {
  auto messages = store_.ListRecentMessages(
      session.id, config_.limits.max_messages_per_session);
  if (!messages.ok()) return ToPublicError(messages.status(), "list messages");
  return SessionWithMessages{.session = std::move(session),
                             .messages = *std::move(messages),
                             .next_page_token = ""};
}

absl::StatusOr<SessionWithMessages> Chat::GetSession(
    absl::string_view session_id, absl::string_view user_id,
    const PageRequest& page) {
  COACH_ASSIGN_OR_RETURN(SessionRecord session,
                         LoadOwnedSession(session_id, user_id));
  if (!page.paged()) return WithRecentMessages(std::move(session));
  COACH_ASSIGN_OR_RETURN(
      int size, ValidatePageSize(page.page_size,
                                 config_.limits.max_messages_per_session,
                                 config_.limits));
  // Bound to the session and its owner, whoever asks (user_id is optional).
  const std::string scope = MessagesScope(session.user_id, session.id);
  COACH_ASSIGN_OR_RETURN(std::optional<PageCursor> cursor,
                         CursorOf(page, PagedList::kMessages, scope));
  std::optional<int64_t> after;
  if (cursor.has_value()) after = cursor->seq;
  auto messages = store_.ListMessagesPage(session_id, after, size);
  if (!messages.ok()) return ToPublicError(messages.status(), "list messages");
  std::string next;
  if (messages->next.has_value()) {
    next = EncodePageToken(PageCursor{.list = PagedList::kMessages,
                                      .scope = scope,
                                      .time_micros = 0,
                                      .seq = *messages->next});
  }
  return SessionWithMessages{.session = std::move(session),
                             .messages = std::move(messages->messages),
                             .next_page_token = std::move(next)};
}

absl::StatusOr<SessionWithMessages> Chat::RenameSession(
    absl::string_view session_id, absl::string_view user_id,
    absl::string_view title) {
  // Validation comes first, whatever the session.
  COACH_RETURN_IF_ERROR(ValidateSessionId(session_id, config_.limits));
  COACH_ASSIGN_OR_RETURN(std::string valid_title,
                         ValidateTitle(title, config_.limits));
  COACH_RETURN_IF_ERROR(LoadOwnedSession(session_id, user_id).status());
  auto renamed = store_.RenameSession(session_id, valid_title, clock_.Now());
  if (absl::IsNotFound(renamed.status())) return SessionNotFoundError();
  if (!renamed.ok()) return ToPublicError(renamed.status(), "rename session");
  return WithRecentMessages(*std::move(renamed));
}

absl::Status Chat::DeleteSession(absl::string_view session_id,
                                 absl::string_view user_id) {
  COACH_RETURN_IF_ERROR(LoadOwnedSession(session_id, user_id).status());
  absl::Status deleted = store_.DeleteSession(session_id);
  if (absl::IsNotFound(deleted)) return SessionNotFoundError();
  return ToPublicError(deleted, "delete session");
}

absl::StatusOr<CreditHold> Chat::HoldCredit(absl::string_view user_id,
                                            absl::Time now) {
  auto user = store_.FindUser(user_id);
  if (!user.ok()) return ToPublicError(user.status(), "find user");
  const Plan plan = user->has_value() ? (*user)->plan : Plan::kFree;
  if (credits_.IsUnlimited(plan)) return CreditHold();
  auto reservation =
      store_.ReserveCredit(user_id, credits_.TermsAt(now), now,
                           now + config_.credit_reservation_ttl);
  if (!reservation.ok()) {
    return ToPublicError(reservation.status(), "reserve credit");
  }
  if (!reservation->has_value()) return NoCreditsError();
  return CreditHold(store_, **std::move(reservation),
                    &metrics_.credit_holds());
}

absl::StatusOr<ConcurrencySlot> Chat::CheckSendLimits(
    absl::string_view user_id, bool creates_session) {
  // Concurrency first: a send refused for it takes no rate token. Its wait
  // is unknown (the sends in flight end when the coach answers): the
  // shortest, one second.
  std::optional<ConcurrencySlot> slot = send_slots_.TryAcquire(user_id);
  if (!slot.has_value()) return RateLimitedError(absl::Seconds(1));
  if (auto wait = send_rate_.TryTake(user_id); wait.has_value()) {
    return RateLimitedError(*wait);
  }
  if (creates_session) {
    if (auto wait = session_rate_.TryTake(user_id); wait.has_value()) {
      // Refused for the session rate: the send's token was not used.
      send_rate_.GiveBack(user_id);
      return RateLimitedError(*wait);
    }
    // Before the coach is asked: a user at the maximum gets the answer now,
    // not after a reply that could not be stored. The commit checks again
    // in its transaction (Exchange::max_user_sessions), which decides races.
    auto activity = store_.CountUserActivity(user_id);
    if (!activity.ok()) return ToPublicError(activity.status(), "count sessions");
    const int max_sessions = config_.user_limits.max_sessions_per_user;
    if (activity->sessions >= max_sessions) {
      return SessionLimitReachedError(max_sessions);
    }
  }
  return *std::move(slot);
}

absl::Status Chat::CheckCallerWaits(const Caller& caller) const {
  // The deadline first: gRPC also reports a deadline as a cancel.
  // Real time, not clock_: the deadline is the transport's, while clock_ is
  // business time (months and refills), which tests move at will.
  if (absl::Now() >= caller.deadline) return CallerDeadlineError();
  if (caller.cancelled()) return CallerCancelledError();
  return absl::OkStatus();
}

void Chat::SendMessage(absl::string_view user_id, absl::string_view session_id,
                       absl::string_view message, Caller caller,
                       SendCallback done) {
  StreamMessage(user_id, session_id, message, std::move(caller), nullptr,
                std::move(done));
}

namespace {

// Between a streaming coach and the caller's on_delta: passes the pieces on
// and remembers what was passed, so that the pieces and the stored reply
// agree.
class DeltaRelay {
 public:
  explicit DeltaRelay(Chat::DeltaCallback to) : to_(std::move(to)) {}

  // From the coach.
  void Piece(absl::string_view piece) {
    {
      absl::MutexLock lock(&mu_);
      if (broken_ || piece.empty()) return;
      if (!IsValidUtf8(piece)) {
        broken_ = true;
        return;
      }
      sent_.append(piece.data(), piece.size());
    }
    to_(piece);
  }

  // The coach's reply, or INTERNAL if what was passed on is not its start.
  absl::StatusOr<CoachReply> Check(absl::StatusOr<CoachReply> reply) {
    if (!reply.ok()) return reply;
    absl::MutexLock lock(&mu_);
    if (broken_ || !absl::StartsWith(reply->content, sent_)) {
      return absl::InternalError(
          "the coach's streamed pieces disagree with its reply");
    }
    return reply;
  }

  // After the exchange is stored as `content`: gives what the coach did not.
  void Complete(absl::string_view content) {
    size_t sent = 0;
    {
      absl::MutexLock lock(&mu_);
      sent = sent_.size();
    }
    if (content.size() > sent) to_(content.substr(sent));
  }

 private:
  const Chat::DeltaCallback to_;
  absl::Mutex mu_;
  std::string sent_ ABSL_GUARDED_BY(mu_);
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

void Chat::StreamMessage(absl::string_view user_id,
                         absl::string_view session_id,
                         absl::string_view message, Caller caller,
                         DeltaCallback on_delta, SendCallback done) {
  CoachRequest request{.system_prompt = SystemPrompt(),
                       .conversation = {},
                       .deadline = caller.deadline,
                       .cancellation = caller.cancellation,
                       .on_delta = nullptr};
  KeyClaim claim;
  if (std::optional<absl::StatusOr<SendResult>> ended =
          ClaimKey(user_id, session_id, message, caller, claim);
      ended.has_value()) {
    metrics_.RecordSend(ended->status());
    done(*std::move(ended));
    return;
  }
  absl::StatusOr<PendingSend> pending =
      BeginSend(user_id, session_id, message, caller, request);
  if (!pending.ok()) {
    const absl::Status failed = claim.Settle(pending.status());
    metrics_.RecordSend(failed);
    done(failed);
    return;
  }
  pending->claim = std::move(claim);
  std::shared_ptr<DeltaRelay> relay;
  if (on_delta) {
    relay = std::make_shared<DeltaRelay>(std::move(on_delta));
    request.on_delta = [relay](absl::string_view piece) {
      relay->Piece(piece);
    };
  }
  // Real time, as for deadlines: clock_ is business time.
  const absl::Time asked = absl::Now();
  coach_.StartReply(
      std::move(request),
      [this, asked, pending = *std::move(pending), caller = std::move(caller),
       relay = std::move(relay),
       done = std::move(done)](absl::StatusOr<CoachReply> reply) mutable {
        metrics_.RecordReply(reply.ok(),
                             absl::ToDoubleSeconds(absl::Now() - asked));
        // Billed by the provider whether or not the caller still waits.
        if (reply.ok() && reply->usage.has_value()) {
          metrics_.RecordTokens(reply->usage->prompt_tokens,
                                reply->usage->completion_tokens);
        }
        absl::StatusOr<SendResult> sent = FinishSend(
            std::move(pending), caller,
            relay == nullptr ? std::move(reply)
                             : relay->Check(std::move(reply)));
        if (sent.ok() && relay != nullptr) {
          relay->Complete(sent->assistant_message.content);
        }
        metrics_.RecordSend(sent.status());
        done(std::move(sent));
      });
}

std::optional<absl::StatusOr<SendResult>> Chat::ClaimKey(
    absl::string_view user_id, absl::string_view session_id,
    absl::string_view message, const Caller& caller, KeyClaim& claim) {
  if (!caller.idempotency_key.has_value()) return std::nullopt;
  const std::string& key = *caller.idempotency_key;
  // The input first, as for any send: a request refused for it claims
  // nothing.
  if (absl::Status valid =
          ValidateSendInput(user_id, session_id, message, config_.limits)
              .status();
      !valid.ok()) {
    return valid;
  }
  if (absl::Status valid = ValidateIdempotencyKey(key, config_.limits);
      !valid.ok()) {
    return valid;
  }
  const absl::Time now = clock_.Now();
  std::string claim_id = NewRandomId();
  absl::StatusOr<ClaimOutcome> outcome =
      store_.ClaimIdempotencyKey(IdempotencyClaim{
          .user_id = std::string(user_id),
          .key = key,
          .request_hash = SendRequestHash(session_id, message),
          .claim_id = claim_id,
          .now = now,
          // A crashed send frees its key as it frees its credit.
          .claim_expires_at = now + config_.credit_reservation_ttl,
          .expires_at = now + config_.idempotency_ttl});
  if (!outcome.ok()) {
    return ToPublicError(outcome.status(), "claim idempotency key");
  }
  switch (outcome->state) {
    case ClaimOutcome::State::kClaimed:
      claim = KeyClaim(store_, std::string(user_id), key, std::move(claim_id));
      return std::nullopt;
    case ClaimOutcome::State::kInProgress:
      return IdempotencyInProgressError();
    case ClaimOutcome::State::kReused:
      return IdempotencyKeyReusedError();
    case ClaimOutcome::State::kCompleted:
      break;
  }
  absl::StatusOr<SendResult> replay = DecodeSendResponse(*outcome->stored);
  if (!replay.ok() && !IsReplayed(replay.status())) {
    return ToPublicError(replay.status(), "replay idempotency key");
  }
  return replay;
}

absl::StatusOr<int> Chat::PurgeExpiredKeys(int batches) {
  const int batch = config_.idempotency_purge_batch;
  int purged = 0;
  for (int i = 0; i < batches; ++i) {
    absl::StatusOr<int> deleted = store_.PurgeIdempotencyKeys(clock_.Now(), batch);
    if (!deleted.ok()) return deleted.status();
    purged += *deleted;
    if (*deleted < batch) break;
  }
  return purged;
}

absl::StatusOr<Chat::PendingSend> Chat::BeginSend(absl::string_view user_id,
                                                  absl::string_view session_id,
                                                  absl::string_view message,
                                                  const Caller& caller,
                                                  CoachRequest& request) {
  COACH_ASSIGN_OR_RETURN(
      std::string text,
      ValidateSendInput(user_id, session_id, message, config_.limits));

  // A send that waited in a queue past its caller's patience stops here.
  COACH_RETURN_IF_ERROR(CheckCallerWaits(caller));

  // The per-user limits, whatever the plan, before anything is read, held
  // or asked: a refused send costs nothing and never reaches the coach.
  COACH_ASSIGN_OR_RETURN(ConcurrencySlot slot,
                         CheckSendLimits(user_id, session_id.empty()));

  // The session, existing (owned by the user) or to be created.
  PendingSend pending{.session_id = std::string(session_id),
                      .new_session = std::nullopt,
                      .text = std::move(text),
                      .started = clock_.Now(),
                      .slot = std::move(slot),
                      .hold = CreditHold(),
                      .claim = KeyClaim()};
  if (session_id.empty()) {
    pending.new_session =
        SessionRecord{.id = NewRandomId(),
                      .user_id = std::string(user_id),
                      .title = Shorten(pending.text,
                                       static_cast<size_t>(
                                           config_.limits.auto_title_length)),
                      .last_message = "",
                      .message_count = 0,
                      .created_at = pending.started,
                      .updated_at = pending.started};
    pending.session_id = pending.new_session->id;
  } else {
    COACH_RETURN_IF_ERROR(LoadOwnedSession(session_id, user_id).status());
  }

  // Credits are checked, and one is held, before the coach is asked.
  COACH_ASSIGN_OR_RETURN(pending.hold, HoldCredit(user_id, pending.started));

  // The conversation so far, then the new message; no transaction is open
  // while the coach writes.
  if (!pending.new_session.has_value()) {
    auto recent = store_.ListRecentMessages(
        pending.session_id, config_.limits.coach_context_messages);
    if (!recent.ok()) return ToPublicError(recent.status(), "list messages");
    for (MessageRecord& m : *recent) {
      request.conversation.push_back(
          CoachTurn{.role = m.role, .content = std::move(m.content)});
    }
  }
  request.conversation.push_back(
      CoachTurn{.role = Role::kUser, .content = pending.text});
  return pending;
}

absl::StatusOr<SendResult> Chat::FinishSend(PendingSend pending,
                                            const Caller& caller,
                                            absl::StatusOr<CoachReply> reply) {
  absl::StatusOr<SendResult> sent = StoreReply(pending, caller, std::move(reply));
  // A success completed the key in its commit; the rest settle it here.
  if (!sent.ok()) return pending.claim.Settle(sent.status());
  return sent;
}

absl::StatusOr<SendResult> Chat::StoreReply(PendingSend& pending,
                                            const Caller& caller,
                                            absl::StatusOr<CoachReply> reply) {
  // Local, so that whatever the outcome it is settled before this returns
  // (and so before the caller hears of it), not when the caller's
  // expression ends.
  CreditHold hold = std::move(pending.hold);
  // Likewise the user's concurrency slot: free again before they hear back.
  ConcurrencySlot slot = std::move(pending.slot);
  if (!reply.ok()) {
    // The coach stopped because the caller left: say that, not AI trouble.
    COACH_RETURN_IF_ERROR(CheckCallerWaits(caller));
    // A reasoned error (e.g. CONTENT_FILTERED) is meant for the user.
    if (ReasonOf(reply.status()).has_value()) return reply.status();
    LogWarning("coach reply failed: %s", reply.status().ToString());
    return absl::IsUnavailable(reply.status()) ||
                   absl::IsDeadlineExceeded(reply.status())
               ? AiUnavailableError()
               : InternalError();
  }
  if (TrimSpaces(reply->content).empty() || !IsValidUtf8(reply->content)) {
    LogWarning("coach reply rejected: empty or not UTF-8");
    return InternalError();
  }

  const absl::Time replied = clock_.Now();
  Exchange exchange;
  exchange.new_session = std::move(pending.new_session);
  exchange.max_user_sessions = config_.user_limits.max_sessions_per_user;
  exchange.session_id = pending.session_id;
  exchange.user_message = MessageRecord{.id = NewRandomId(),
                                        .session_id = pending.session_id,
                                        .role = Role::kUser,
                                        .content = std::move(pending.text),
                                        .created_at = pending.started,
                                        .model = {},
                                        .usage = std::nullopt};
  exchange.assistant_message =
      MessageRecord{.id = NewRandomId(),
                    .session_id = pending.session_id,
                    .role = Role::kAssistant,
                    .content = std::move(reply->content),
                    .created_at = replied,
                    .model = std::move(reply->model),
                    .usage = reply->usage};
  exchange.last_message =
      Shorten(exchange.assistant_message.content,
              static_cast<size_t>(config_.limits.preview_length));
  exchange.reservation = hold.reservation();
  exchange.terms = credits_.TermsAt(replied);
  exchange.now = replied;
  if (pending.claim.held()) {
    exchange.idempotency = pending.claim.Completion(EncodeSendResponse(
        pending.session_id, exchange.user_message, exchange.assistant_message));
  }

  // The caller gave up while the coach wrote: nothing stored, nothing
  // charged, as for any reply the user does not get.
  COACH_RETURN_IF_ERROR(CheckCallerWaits(caller));
  absl::StatusOr<ExchangeResult> committed = store_.CommitExchange(exchange);
  if (!committed.ok()) {
    // The session was deleted, or the credit taken back (an admin change),
    // while the coach was writing.
    if (absl::IsNotFound(committed.status())) return SessionNotFoundError();
    if (absl::IsResourceExhausted(committed.status())) return NoCreditsError();
    // The send's new session lost a race for the user's last free place.
    if (absl::IsFailedPrecondition(committed.status())) {
      return SessionLimitReachedError(exchange.max_user_sessions);
    }
    // The key's claim expired while the coach wrote, and another send with
    // the key took it: that one runs (this one stores nothing).
    if (absl::IsAborted(committed.status())) return IdempotencyInProgressError();
    return ToPublicError(committed.status(), "commit exchange");
  }
  hold.Consume();  // the commit charged it and removed the hold
  pending.claim.Consume();  // and completed the key with the response
  return SendResult{.session_id = pending.session_id,
                    .user_message = std::move(exchange.user_message),
                    .assistant_message = std::move(exchange.assistant_message),
                    .remaining_credits = committed->remaining_credits};
}

absl::StatusOr<History> Chat::GetHistory(absl::string_view user_id,
                                         std::optional<int> limit,
                                         const PageRequest& page) {
  COACH_RETURN_IF_ERROR(ValidateUserId(user_id, config_.limits));
  COACH_ASSIGN_OR_RETURN(int effective_limit,
                         ValidateHistoryLimit(limit, config_.limits));
  if (limit.has_value() && page.page_size != 0) {
    return InvalidArgumentError(
        "limit",
        "Les paramètres « limit » et « pageSize » ne peuvent pas être "
        "utilisés ensemble : utilisez « pageSize ».");
  }
  History history;
  if (!page.paged()) {
    auto sessions = store_.ListSessions(user_id, effective_limit);
    if (!sessions.ok()) {
      return ToPublicError(sessions.status(), "list sessions");
    }
    history.sessions = *std::move(sessions);
  } else {
    COACH_ASSIGN_OR_RETURN(
        SessionPage sessions,
        SessionsPage(user_id, PagedList::kHistory, page, effective_limit));
    history.next_page_token =
        NextSessionsToken(sessions, PagedList::kHistory, user_id);
    history.sessions = std::move(sessions.sessions);
  }
  auto totals = store_.CountUserActivity(user_id);
  if (!totals.ok()) return ToPublicError(totals.status(), "count activity");
  history.totals = *totals;
  return history;
}

}  // namespace coach
