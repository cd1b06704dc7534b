#include "server/coach/circuit_breaker.h"

namespace coach {

CircuitBreaker::State CircuitBreaker::StateLocked() {
  if (!open_) return State::kClosed;
  if (env_.MonotonicNow() - opened_at_ < options_.cooldown) return State::kOpen;
  return State::kHalfOpen;
}

CircuitBreaker::State CircuitBreaker::state() {
  absl::MutexLock lock(&mu_);
  return StateLocked();
}

CircuitBreaker::Pass CircuitBreaker::Allow() {
  absl::MutexLock lock(&mu_);
  switch (StateLocked()) {
    case State::kClosed: return Pass::kAllowed;
    case State::kOpen: return Pass::kRefused;
    case State::kHalfOpen:
      if (probing_) return Pass::kRefused;
      probing_ = true;
      return Pass::kProbe;
  }
  return Pass::kRefused;
}

bool CircuitBreaker::Succeeded(Pass pass) {
  absl::MutexLock lock(&mu_);
  if (pass == Pass::kProbe) probing_ = false;
  failures_ = 0;
  if (!open_) return false;
  // A probe's success, or a late success of a request sent before the
  // breaker opened: either way the provider answers again.
  open_ = false;
  return true;
}

bool CircuitBreaker::Failed(Pass pass) {
  absl::MutexLock lock(&mu_);
  if (pass == Pass::kProbe) {
    probing_ = false;
    opened_at_ = env_.MonotonicNow();  // another cooldown
    return true;
  }
  if (open_) return false;  // a late failure: already open
  if (++failures_ < options_.failures) return false;
  open_ = true;
  opened_at_ = env_.MonotonicNow();
  return true;
}

void CircuitBreaker::Abandoned(Pass pass) {
  absl::MutexLock lock(&mu_);
  if (pass == Pass::kProbe) probing_ = false;
}

}  // namespace coach
