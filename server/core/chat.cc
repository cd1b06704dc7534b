#include "server/core/chat.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

#include "base/ids.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/text.h"
#include "server/core/errors.h"
#include "server/core/validation.h"
#include "storage/record_columns.h"

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

// What the caller is told when the store refuses a send's exchange.
absl::Status CommitError(const absl::Status& committed, int max_user_sessions) {
  // The session was deleted, or the credit taken back (an admin change),
  // while the coach was writing.
  if (absl::IsNotFound(committed)) return SessionNotFoundError();
  if (absl::IsResourceExhausted(committed)) return NoCreditsError();
  // The send's new session lost a race for the user's last free place.
  if (absl::IsFailedPrecondition(committed)) {
    return SessionLimitReachedError(max_user_sessions);
  }
  // The key's claim expired while the coach wrote, and another send with
  // the key took it: that one runs (this one stores nothing).
  if (absl::IsAborted(committed)) return IdempotencyInProgressError();
  return ToPublicError(committed, "commit exchange");
}

}  // namespace

Chat::Chat(const CoreConfig& config, Store& store, Coach& coach,
           const Clock& clock, CoreMetrics* metrics)
    : config_(config),
      store_(store),
      coach_(coach),
      clock_(clock),
      credits_(config.plans),
      send_rate_(RateRule::PerMinute(config.user_limits.send_rate_per_minute)),
      session_rate_(RateRule::PerMinute(
          config.user_limits.session_create_rate_per_minute)),
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
  COACH_ASSIGN_OR_RETURN(SessionPage sessions,
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
    COACH_ASSIGN_OR_RETURN(session_title,
                           ValidateTitle(*title, config_.limits));
  }
  const absl::Time now = clock_.Now();
  SessionRecord session{.id = NewRandomId(),
                        .user_id = std::string(user_id),
                        .title = std::move(session_title),
                        .last_message = "",
                        .message_count = 0,
                        .created_at = now,
                        .updated_at = now};
  // The creation rate, then the maximum (a refused creation has used its
  // token), decided under the user's row lock.
  absl::Status refusal;
  const int max_sessions = config_.user_limits.max_sessions_per_user;
  const absl::StatusOr<bool> created = store_.CreateSession(
      session, credits_.TermsAt(now), now, [&](const AdmissionState& state) {
        Admission answer{.rates = state.rates,
                         .admitted = false,
                         .key_response = std::nullopt};
        const RateRule::Taken taken =
            session_rate_.Take(state.rates.session_tat, now);
        if (!taken.allowed) {
          refusal = RateLimitedError(taken.retry_after);
          return answer;
        }
        answer.rates.session_tat = taken.tat;
        if (max_sessions > 0 && state.sessions >= max_sessions) {
          refusal = SessionLimitReachedError(max_sessions);
          return answer;
        }
        refusal = absl::OkStatus();
        answer.admitted = true;
        return answer;
      });
  COACH_RETURN_IF_ERROR(ToPublicError(created.status(), "create session"));
  if (!*created) return refusal;
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
      int size,
      ValidatePageSize(page.page_size, config_.limits.max_messages_per_session,
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
  PendingSend pending;
  if (std::optional<absl::StatusOr<SendResult>> ended =
          BeginSend(user_id, session_id, message, caller, pending, request);
      ended.has_value()) {
    metrics_.RecordSend(ended->status());
    done(*std::move(ended));
    return;
  }
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
      [this, asked, pending = std::move(pending), caller = std::move(caller),
       relay = std::move(relay),
       done = std::move(done)](absl::StatusOr<CoachReply> reply) mutable {
        metrics_.RecordReply(reply.ok(),
                             absl::ToDoubleSeconds(absl::Now() - asked));
        // Billed by the provider whether or not the caller still waits.
        if (reply.ok()) {
          metrics_.RecordTokens(
              PlanName(pending.plan), reply->model,
              reply->usage.has_value() ? reply->usage->prompt_tokens : 0,
              reply->usage.has_value() ? reply->usage->completion_tokens : 0);
        }
        absl::StatusOr<SendResult> sent =
            FinishSend(std::move(pending), caller,
                       relay == nullptr ? std::move(reply)
                                        : relay->Check(std::move(reply)));
        if (sent.ok() && relay != nullptr) {
          relay->Complete(sent->assistant_message.content);
        }
        metrics_.RecordSend(sent.status());
        done(std::move(sent));
      });
}

absl::StatusOr<int> Chat::PurgeExpiredKeys(int batches) {
  const int batch = config_.idempotency_purge_batch;
  int purged = 0;
  for (int i = 0; i < batches; ++i) {
    absl::StatusOr<int> deleted =
        store_.PurgeIdempotencyKeys(clock_.Now(), batch);
    if (!deleted.ok()) return deleted.status();
    purged += *deleted;
    if (*deleted < batch) break;
  }
  return purged;
}

Admission Chat::DecideSend(const AdmissionState& state,
                           absl::string_view user_id, bool creates_session,
                           absl::Time now, absl::Status& refusal) const {
  Admission answer{
      .rates = state.rates, .admitted = false, .key_response = std::nullopt};
  refusal = TakeSendTokens(state, creates_session, now, answer.rates);
  if (!refusal.ok()) return answer;
  // From here on, a refused send has used its tokens (every attempt
  // counts).
  const int max_sessions = config_.user_limits.max_sessions_per_user;
  if (creates_session) {
    // Before the coach is asked: a user at the maximum gets the answer now,
    // not after a reply that could not be stored. The commit checks again
    // in its transaction (Exchange::max_user_sessions), which decides races
    // with CreateSession.
    if (max_sessions > 0 && state.sessions >= max_sessions) {
      refusal = SessionLimitReachedError(max_sessions);
      return answer;
    }
  } else if (!state.session.has_value()) {
    refusal = SessionNotFoundError();
  } else if (state.session->user_id != user_id) {
    refusal = SessionForbiddenError();
  }
  if (!refusal.ok()) {
    // Worth replaying to the key's retries (the same request meets it again).
    if (IsReplayableError(refusal)) {
      answer.key_response = EncodeSendError(refusal);
    }
    return answer;
  }
  // Credits: one free beyond the user's live reservations.
  const std::optional<int32_t> remaining =
      credits_.RemainingCredits(state.user, now);
  if (remaining.has_value() && *remaining - state.live_sends <= 0) {
    refusal = NoCreditsError();
    return answer;
  }
  answer.admitted = true;
  return answer;
}

absl::Status Chat::TakeSendTokens(const AdmissionState& state,
                                  bool creates_session, absl::Time now,
                                  RateState& rates) const {
  // Concurrency first: a send refused for it takes no rate token. Its wait
  // is unknown (the sends in flight end when the coach answers): the
  // shortest, one second.
  if (state.live_sends >= config_.user_limits.max_concurrent_sends_per_user) {
    return RateLimitedError(absl::Seconds(1));
  }
  const RateRule::Taken send = send_rate_.Take(state.rates.send_tat, now);
  if (!send.allowed) return RateLimitedError(send.retry_after);
  if (creates_session) {
    const RateRule::Taken create =
        session_rate_.Take(state.rates.session_tat, now);
    // Refused for the session rate: the send's token is not used either.
    if (!create.allowed) return RateLimitedError(create.retry_after);
    rates.session_tat = create.tat;
  }
  rates.send_tat = send.tat;
  return absl::OkStatus();
}

absl::StatusOr<SendResult> Chat::HeldKeyResult(
    const ClaimOutcome& outcome) const {
  switch (outcome.state) {
    case ClaimOutcome::State::kInProgress: return IdempotencyInProgressError();
    case ClaimOutcome::State::kReused: return IdempotencyKeyReusedError();
    case ClaimOutcome::State::kClaimed:
    case ClaimOutcome::State::kCompleted: break;
  }
  if (!outcome.stored.has_value()) {
    return ToPublicError(
        absl::InternalError("a completed key without its response"),
        "replay idempotency key");
  }
  absl::StatusOr<SendResult> replay = DecodeSendResponse(*outcome.stored);
  if (!replay.ok() && !IsReplayed(replay.status())) {
    return ToPublicError(replay.status(), "replay idempotency key");
  }
  return replay;
}

absl::StatusOr<std::string> Chat::CheckSendRequest(absl::string_view user_id,
                                                   absl::string_view session_id,
                                                   absl::string_view message,
                                                   const Caller& caller) const {
  absl::StatusOr<std::string> text =
      ValidateSendInput(user_id, session_id, message, config_.limits);
  if (!text.ok()) return text.status();
  if (caller.idempotency_key.has_value()) {
    if (absl::Status valid =
            ValidateIdempotencyKey(*caller.idempotency_key, config_.limits);
        !valid.ok()) {
      return valid;
    }
  }
  // A send that waited in a queue past its caller's patience stops here.
  if (absl::Status waits = CheckCallerWaits(caller); !waits.ok()) return waits;
  return text;
}

SendAdmissionRequest Chat::AdmissionRequest(absl::string_view user_id,
                                            absl::string_view session_id,
                                            absl::string_view message,
                                            const Caller& caller,
                                            absl::Time now) const {
  SendAdmissionRequest admission{
      .user_id = std::string(user_id),
      .session_id = std::string(session_id),
      .terms = credits_.TermsAt(now),
      .now = now,
      .expires_at = now + config_.credit_reservation_ttl,
      .claim = std::nullopt};
  if (caller.idempotency_key.has_value()) {
    admission.claim = IdempotencyClaim{
        .user_id = std::string(user_id),
        .key = *caller.idempotency_key,
        .request_hash = SendRequestHash(session_id, message),
        .claim_id = NewRandomId(),
        .now = now,
        // A crashed send frees its key as it frees its reservation.
        .claim_expires_at = now + config_.credit_reservation_ttl,
        .expires_at = now + config_.idempotency_ttl};
  }
  return admission;
}

SessionRecord Chat::NewSession(absl::string_view user_id,
                               absl::string_view text, absl::Time now) const {
  return SessionRecord{
      .id = NewRandomId(),
      .user_id = std::string(user_id),
      .title =
          Shorten(text, static_cast<size_t>(config_.limits.auto_title_length)),
      .last_message = "",
      .message_count = 0,
      .created_at = now,
      .updated_at = now};
}

std::optional<absl::StatusOr<SendResult>> Chat::BeginSend(
    absl::string_view user_id, absl::string_view session_id,
    absl::string_view message, const Caller& caller, PendingSend& pending,
    CoachRequest& request) {
  absl::StatusOr<std::string> text =
      CheckSendRequest(user_id, session_id, message, caller);
  if (!text.ok()) return text.status();

  const absl::Time now = clock_.Now();
  const bool creates_session = session_id.empty();
  SendAdmissionRequest admission =
      AdmissionRequest(user_id, session_id, message, caller, now);
  // The key, then the per-user limits, ownership and credits, whatever the
  // plan, in one transaction under the user's lock: a refused send holds
  // nothing and never reaches the coach.
  absl::Status refusal;
  Plan plan = Plan::kFree;
  absl::StatusOr<SendAdmissionResult> admitted =
      store_.AdmitSend(admission, [&](const AdmissionState& state) {
        refusal = absl::OkStatus();
        plan = state.user.plan;
        return DecideSend(state, user_id, creates_session, now, refusal);
      });
  if (!admitted.ok()) return ToPublicError(admitted.status(), "admit send");
  if (admitted->claim.state != ClaimOutcome::State::kClaimed) {
    return HeldKeyResult(admitted->claim);
  }
  // Refused: the store has already stored the key's outcome or freed it.
  if (!admitted->reservation.has_value()) return refusal;

  pending.user_id = std::string(user_id);
  pending.plan = plan;
  pending.session_id = std::string(session_id);
  pending.text = *std::move(text);
  pending.started = now;
  pending.hold = CreditHold(store_, *std::move(admitted->reservation),
                            &metrics_.credit_holds());
  if (admission.claim.has_value()) {
    pending.claim = KeyClaim(store_, std::string(user_id), admission.claim->key,
                             std::move(admission.claim->claim_id));
  }
  if (creates_session) {
    pending.new_session = NewSession(user_id, pending.text, now);
    pending.session_id = pending.new_session->id;
  }
  if (absl::Status loaded = LoadConversation(pending, request); !loaded.ok()) {
    // The reservation and the key given back before the caller hears.
    pending.hold.Release();
    return pending.claim.Settle(loaded);
  }
  return std::nullopt;
}

absl::Status Chat::LoadConversation(const PendingSend& pending,
                                    CoachRequest& request) {
  // No transaction is open while the coach writes.
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
  return absl::OkStatus();
}

absl::StatusOr<SendResult> Chat::FinishSend(PendingSend pending,
                                            const Caller& caller,
                                            absl::StatusOr<CoachReply> reply) {
  absl::StatusOr<SendResult> sent =
      StoreReply(pending, caller, std::move(reply));
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
  COACH_RETURN_IF_ERROR(CheckReply(reply, caller));
  Exchange exchange = ExchangeOf(pending, *std::move(reply), hold);

  // The caller gave up while the coach wrote: nothing stored, nothing
  // charged, as for any reply the user does not get.
  COACH_RETURN_IF_ERROR(CheckCallerWaits(caller));
  absl::StatusOr<ExchangeResult> committed = store_.CommitExchange(exchange);
  if (!committed.ok()) {
    return CommitError(committed.status(), exchange.max_user_sessions);
  }
  hold.Consume();           // the commit charged it and removed the hold
  pending.claim.Consume();  // and completed the key with the response
  return SendResult{.session_id = pending.session_id,
                    .user_message = std::move(exchange.user_message),
                    .assistant_message = std::move(exchange.assistant_message),
                    .remaining_credits = committed->remaining_credits};
}

absl::Status Chat::CheckReply(const absl::StatusOr<CoachReply>& reply,
                              const Caller& caller) const {
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
  return absl::OkStatus();
}

Exchange Chat::ExchangeOf(PendingSend& pending, CoachReply reply,
                          const CreditHold& hold) const {
  const absl::Time replied = clock_.Now();
  Exchange exchange;
  exchange.user_id = pending.user_id;
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
                    .content = std::move(reply.content),
                    .created_at = replied,
                    .model = std::move(reply.model),
                    .usage = reply.usage};
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
  return exchange;
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
