// FallbackCoach: one reply from the first of several AI providers that
// gives one (LiteLLM's "fallbacks" with per-deployment "cooldowns").
//
// A reply is asked of the providers in their order, each skipped while its
// circuit breaker is open (circuit_breaker.h). A provider that fails — no
// answer, a timeout, a 429 or a 5xx, after its own retries, or an answer
// that makes no sense — hands the reply over to the next one, unless:
// - a piece of the reply was already given to the caller (a stream):
//   another provider would write another reply after it; the failure is
//   the reply's;
// - the provider refused the request itself (provider_error.h: a 4xx other
//   than 408/409/429), or its content filter did: another would too;
// - the caller left, or its deadline passed.
// With every provider failed or skipped the reply is UNAVAILABLE at once
// (no wait on an open breaker). The reply says which model wrote it
// (CoachReply::model, as the provider answered).
//
// Each provider is a Coach of its own (an OpenAiCoach with its base URL, key,
// model, limits and timeout): its retries, backoff and timeout are its own.
//
// Metrics (RenderMetrics, Prometheus text): coach_ai_provider_requests_total,
// coach_ai_provider_failures_total, coach_ai_provider_duration_seconds and
// coach_ai_provider_breaker_state (0 closed, 1 open, 2 half-open), by
// provider. One log line when a breaker opens or closes.
//
// Thread-safe. `done` runs on the thread of the provider that ended the
// reply (a delivery thread of its own), or on the caller's when no provider
// could be asked.
#ifndef COACH_SERVER_COACH_FALLBACK_COACH_H_
#define COACH_SERVER_COACH_FALLBACK_COACH_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/env.h"
#include "base/metrics.h"
#include "server/coach/circuit_breaker.h"
#include "server/core/coach.h"

namespace coach {

class FallbackCoach final : public Coach {
 public:
  struct Provider {
    // Unique; names the provider in logs and metrics.
    std::string name;
    std::unique_ptr<Coach> coach;
  };

  // `providers`: at least one, in order of preference. `env` must outlive
  // the coach.
  FallbackCoach(std::vector<Provider> providers, BreakerOptions breaker,
                Env& env = Env::Default());
  // Destroys the providers (each delivers what it has in flight), once no
  // fallover is asking one.
  ~FallbackCoach() override;

  void StartReply(CoachRequest request, ReplyCallback done) override;
  // Cancels every provider's replies; from then on a failed reply is
  // delivered as it is (no fallover) and a new one fails at once.
  void CancelAll() override;

  std::string RenderMetrics() const;

 private:
  struct Member;
  struct Call;

  // Asks the first provider from call->next on whose breaker lets it, or
  // ends the call UNAVAILABLE when none is left.
  void AskNext(std::shared_ptr<Call> call);
  // A provider's outcome: deliver it, or fall over to the next provider.
  void OnOutcome(std::shared_ptr<Call> call, size_t index,
                 CircuitBreaker::Pass pass, absl::Duration started,
                 absl::StatusOr<CoachReply> outcome);

  Env& env_;
  const BreakerOptions breaker_;
  // Declared before members_: their metrics series live in it.
  metrics::Registry registry_;
  // The vector is never resized after construction; a member's coach is
  // reset only by the destructor, once `asking_` is 0 with `stopping_` set.
  std::vector<std::unique_ptr<Member>> members_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int asking_ ABSL_GUARDED_BY(mu_) = 0;  // AskNext calls in progress
};

}  // namespace coach

#endif  // COACH_SERVER_COACH_FALLBACK_COACH_H_
