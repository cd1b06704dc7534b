#include "server/core/core_metrics.h"

namespace coach {
namespace {

constexpr size_t kOk = 0;

// The index of `status`'s outcome in CoreMetrics::sends_.
size_t OutcomeIndex(const absl::Status& status) {
  if (status.ok()) return kOk;
  const std::optional<ErrorReason> reason = ReasonOf(status);
  return 1 + static_cast<size_t>(reason.value_or(ErrorReason::kInternal));
}

absl::string_view ReasonName(ErrorReason reason) {
  switch (reason) {
    case ErrorReason::kInvalidArgument: return "invalid_argument";
    case ErrorReason::kSessionNotFound: return "session_not_found";
    case ErrorReason::kSessionForbidden: return "session_forbidden";
    case ErrorReason::kNoCredits: return "no_credits";
    case ErrorReason::kAiUnavailable: return "ai_unavailable";
    case ErrorReason::kContentFiltered: return "content_filtered";
    case ErrorReason::kDeadlineExceeded: return "deadline_exceeded";
    case ErrorReason::kCancelled: return "cancelled";
    case ErrorReason::kUnauthenticated: return "unauthenticated";
    case ErrorReason::kAdminDisabled: return "admin_disabled";
    case ErrorReason::kUnavailable: return "unavailable";
    case ErrorReason::kInternal: return "internal";
    case ErrorReason::kRateLimited: return "rate_limited";
    case ErrorReason::kSessionLimitReached: return "session_limit_reached";
    case ErrorReason::kUserForbidden: return "user_forbidden";
    case ErrorReason::kIdempotencyInProgress: return "idempotency_in_progress";
    case ErrorReason::kIdempotencyKeyReused: return "idempotency_key_reused";
  }
  return "internal";
}

}  // namespace

CoreMetrics::CoreMetrics(metrics::Registry& registry,
                         const std::vector<double>& ai_buckets_seconds) {
  metrics::Family<metrics::Counter>& sends = registry.AddCounter(
      "coach_sends_total",
      "Sends answered, by outcome (ok or the error reason).", {"outcome"});
  for (size_t i = 0; i < kOutcomes; ++i) {
    sends_[i] = &sends.WithLabels({std::string(
        i == kOk ? "ok" : ReasonName(static_cast<ErrorReason>(i - 1)))});
  }
  metrics::Family<metrics::Histogram>& replies = registry.AddHistogram(
      "coach_ai_reply_duration_seconds",
      "Time from asking the coach to its answer, retries included.", {"result"},
      ai_buckets_seconds);
  reply_ok_ = &replies.WithLabels({"ok"});
  reply_error_ = &replies.WithLabels({"error"});
  prompt_tokens_ =
      &registry
           .AddCounter("coach_ai_prompt_tokens_total",
                       "Prompt tokens of the replies received, as the "
                       "provider reports them (0 for the offline coach).")
           .WithLabels({});
  completion_tokens_ =
      &registry
           .AddCounter("coach_ai_completion_tokens_total",
                       "Completion tokens of the replies received, as the "
                       "provider reports them (0 for the offline coach).")
           .WithLabels({});
  replies_by_model_ = &registry.AddCounter(
      "coach_ai_replies_total",
      "Replies received, by the user's plan and the provider's model.",
      {"plan", "model"});
  tokens_by_model_ = &registry.AddCounter(
      "coach_ai_tokens_total",
      "Tokens of the replies received, by the user's plan, the provider's "
      "model and kind (prompt or completion).",
      {"plan", "model", "kind"});
  credit_holds_ = &registry
                       .AddGauge("coach_credit_holds",
                                 "Credits held right now by sends of this "
                                 "process, waiting on the coach.")
                       .WithLabels({});
}

void CoreMetrics::RecordSend(const absl::Status& status) {
  sends_[OutcomeIndex(status)]->Increment();
}

void CoreMetrics::RecordReply(bool ok, double seconds) {
  (ok ? reply_ok_ : reply_error_)->Observe(seconds);
}

void CoreMetrics::RecordTokens(absl::string_view plan, absl::string_view model,
                               int64_t prompt, int64_t completion) {
  prompt_tokens_->Increment(static_cast<double>(prompt));
  completion_tokens_->Increment(static_cast<double>(completion));
  std::string label(model);
  {
    absl::MutexLock lock(&models_mu_);
    if (!models_.contains(label)) {
      if (models_.size() < kMaxModels) {
        models_.insert(label);
      } else {
        label = "other";
      }
    }
  }
  const std::string plan_label(plan);
  replies_by_model_->WithLabels({plan_label, label}).Increment();
  tokens_by_model_->WithLabels({plan_label, label, "prompt"})
      .Increment(static_cast<double>(prompt));
  tokens_by_model_->WithLabels({plan_label, label, "completion"})
      .Increment(static_cast<double>(completion));
}

}  // namespace coach
