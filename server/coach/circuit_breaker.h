// CircuitBreaker: whether one AI provider is worth asking, from its recent
// answers (LiteLLM's "cooldown", the classic breaker's three states).
//
// - Closed: every request may go. `failures` failures in a row open it.
// - Open: none may go until `cooldown` has passed since it opened.
// - Half-open: then one request (the probe) may go; its success closes the
//   breaker, its failure opens it again for another cooldown. While the
//   probe is out, others are refused.
// A request that ends neither way (the caller left) gives its probe back.
//
// Time is the Env's monotonic clock. Thread-safe.
#ifndef COACH_SERVER_COACH_CIRCUIT_BREAKER_H_
#define COACH_SERVER_COACH_CIRCUIT_BREAKER_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/env.h"

namespace coach {

struct BreakerOptions {
  // Failures in a row that open the breaker (> 0).
  int failures = 5;
  // How long an open breaker refuses every request.
  absl::Duration cooldown = absl::Seconds(30);
};

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  // What Allow granted: a plain pass, or the half-open probe.
  enum class Pass { kRefused, kAllowed, kProbe };

  // `env` must outlive the breaker.
  CircuitBreaker(BreakerOptions options, Env& env)
      : options_(options), env_(env) {}

  // Whether a request may go now; a kProbe pass must be ended by
  // Succeeded, Failed or Abandoned.
  Pass Allow();
  // The request's outcome. Each says whether it changed the state (for the
  // one log line a change deserves): Succeeded when it closed an open
  // breaker, Failed when it opened it (or a failed probe opened it again).
  bool Succeeded(Pass pass);
  bool Failed(Pass pass);
  // Neither: the caller left. A probe is given back.
  void Abandoned(Pass pass);

  State state();

 private:
  State StateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const BreakerOptions options_;
  Env& env_;
  absl::Mutex mu_;
  int failures_ ABSL_GUARDED_BY(mu_) = 0;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration opened_at_ ABSL_GUARDED_BY(mu_);
  bool probing_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coach

#endif  // COACH_SERVER_COACH_CIRCUIT_BREAKER_H_
