// CoreMetrics: what the rules record of sends, on a metrics::Registry
// (base/metrics.h) owned by whoever wires the server (CoachServer):
// - coach_sends_total{outcome}: every send Chat answers, by outcome: "ok",
//   or the snake_case name of its ErrorReason ("no_credits",
//   "rate_limited", "ai_unavailable", "cancelled", "invalid_argument"...;
//   "internal" for a status without reason). Sends refused before Chat
//   (authentication) are only in the RPC metrics.
// - coach_ai_reply_duration_seconds{result}: from asking the coach to its
//   answer, retries included; result "ok" or "error".
// - coach_ai_prompt_tokens_total, coach_ai_completion_tokens_total: as the
//   provider reports them (OpenAI's `usage`) for every reply received, even
//   one the caller no longer waits for (the provider bills it). A reply
//   without usage (the offline coach) counts 0: no estimate.
// - coach_ai_replies_total{plan,model}, coach_ai_tokens_total{plan,model,
//   kind}: the same replies and tokens by the user's plan (FREE, BASIC,
//   PREMIUM) and the model the provider named ("" for none); kind is
//   "prompt" or "completion". At most kMaxModels models are told apart, the
//   rest count as "other" (the label is the provider's).
// - coach_credit_holds: credits held by sends of this process right now
//   (CreditHold), the process's own: not other servers', nor rows left by a
//   dead process.
//
// Every series is created here, once: recording takes no lock.
// Thread-safe.
#ifndef COACH_SERVER_CORE_CORE_METRICS_H_
#define COACH_SERVER_CORE_CORE_METRICS_H_

#include <array>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "base/metrics.h"
#include "server/core/errors.h"

namespace coach {

class CoreMetrics {
 public:
  // `ai_buckets_seconds`: the AI latency histogram's upper bounds.
  CoreMetrics(metrics::Registry& registry,
              const std::vector<double>& ai_buckets_seconds);

  void RecordSend(const absl::Status& status);
  void RecordReply(bool ok, double seconds);
  // A reply received for a user on `plan`, from `model`, with its tokens.
  void RecordTokens(absl::string_view plan, absl::string_view model,
                    int64_t prompt, int64_t completion);
  // For CreditHold.
  metrics::Gauge& credit_holds() { return *credit_holds_; }

  // Outcomes: "ok", then one per ErrorReason (the last is
  // kIdempotencyKeyReused).
  static constexpr size_t kOutcomes =
      2 + static_cast<size_t>(ErrorReason::kIdempotencyKeyReused);

 private:
  std::array<metrics::Counter*, kOutcomes> sends_{};
  metrics::Histogram* reply_ok_;
  metrics::Histogram* reply_error_;
  // Distinct models labelled before the others count as "other".
  static constexpr size_t kMaxModels = 32;

  metrics::Counter* prompt_tokens_;
  metrics::Counter* completion_tokens_;
  metrics::Family<metrics::Counter>* replies_by_model_;
  metrics::Family<metrics::Counter>* tokens_by_model_;
  absl::Mutex models_mu_;
  absl::flat_hash_set<std::string> models_ ABSL_GUARDED_BY(models_mu_);
  metrics::Gauge* credit_holds_;
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_CORE_METRICS_H_
