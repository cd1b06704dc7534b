#include "server/coach/fallback_coach.h"

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "server/coach/provider_error.h"
#include "server/core/errors.h"

namespace coach {

struct FallbackCoach::Member {
  std::string name;
  std::unique_ptr<Coach> coach;
  CircuitBreaker breaker;
  metrics::Counter* requests;
  metrics::Counter* failures;
  metrics::Histogram* duration;
  metrics::Gauge* state;
};

// One reply across the providers asked for it.
struct FallbackCoach::Call {
  // Kept whole: each provider gets its own copy.
  CoachRequest request;
  ReplyCallback done;
  // The next provider to consider.
  size_t next = 0;
  // Set once a piece of the reply reached the caller.
  std::shared_ptr<std::atomic<bool>> forwarded =
      std::make_shared<std::atomic<bool>>(false);
  absl::Status last_error = absl::UnavailableError("no AI provider asked");
};

namespace {

// Seconds, for the latency histogram: from a fast cache hit to a timeout.
const std::vector<double> kDurationBuckets = {0.1, 0.25, 0.5, 1,  2.5,
                                              5,   10,   20,  45, 90};

double StateValue(CircuitBreaker::State state) {
  switch (state) {
    case CircuitBreaker::State::kClosed: return 0;
    case CircuitBreaker::State::kOpen: return 1;
    case CircuitBreaker::State::kHalfOpen: return 2;
  }
  return 0;
}

}  // namespace

FallbackCoach::FallbackCoach(std::vector<Provider> providers,
                             BreakerOptions breaker, Env& env)
    : env_(env), breaker_(breaker) {
  metrics::Family<metrics::Counter>& requests = registry_.AddCounter(
      "coach_ai_provider_requests_total",
      "Replies asked of each AI provider (its own retries count once).",
      {"provider"});
  metrics::Family<metrics::Counter>& failures = registry_.AddCounter(
      "coach_ai_provider_failures_total",
      "Replies an AI provider failed to give (counted by its breaker).",
      {"provider"});
  metrics::Family<metrics::Histogram>& duration = registry_.AddHistogram(
      "coach_ai_provider_duration_seconds",
      "Time from asking an AI provider to its outcome, retries included.",
      {"provider"}, kDurationBuckets);
  metrics::Family<metrics::Gauge>& state = registry_.AddGauge(
      "coach_ai_provider_breaker_state",
      "Each AI provider's circuit breaker: 0 closed, 1 open, 2 half-open.",
      {"provider"});
  for (Provider& provider : providers) {
    const std::vector<std::string> label = {provider.name};
    // new: a breaker (its mutex) is built in place, never moved.
    members_.push_back(std::unique_ptr<Member>(
        new Member{.name = provider.name,
                   .coach = std::move(provider.coach),
                   .breaker = CircuitBreaker(breaker, env_),
                   .requests = &requests.WithLabels(label),
                   .failures = &failures.WithLabels(label),
                   .duration = &duration.WithLabels(label),
                   .state = &state.WithLabels(label)}));
  }
}

FallbackCoach::~FallbackCoach() {
  // No fallover starts from now on (a provider's destruction delivers its
  // replies in flight, on its own threads), and one under way (reading
  // another member's coach) ends before any coach goes.
  CancelAll();
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* asking) { return *asking == 0; }, &asking_));
  }
  for (auto it = members_.rbegin(); it != members_.rend(); ++it) {
    (*it)->coach.reset();
  }
}

void FallbackCoach::CancelAll() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (const auto& member : members_) {
    if (member->coach != nullptr) member->coach->CancelAll();
  }
}

std::string FallbackCoach::RenderMetrics() const {
  for (const auto& member : members_) {
    // Open turns half-open with time alone: read it now.
    member->state->Set(StateValue(member->breaker.state()));
  }
  return registry_.Render();
}

void FallbackCoach::StartReply(CoachRequest request, ReplyCallback done) {
  auto call = std::make_shared<Call>(
      Call{.request = std::move(request), .done = std::move(done)});
  if (call->request.on_delta) {
    call->request.on_delta =
        [forwarded = call->forwarded,
         to = std::move(call->request.on_delta)](absl::string_view piece) {
          forwarded->store(true, std::memory_order_relaxed);
          to(piece);
        };
  }
  AskNext(std::move(call));
}

void FallbackCoach::AskNext(std::shared_ptr<Call> call) {
  bool stopped;
  {
    absl::MutexLock lock(&mu_);
    stopped = stopping_;
    if (!stopped) ++asking_;
  }
  if (stopped) {
    // Cancelled (or being destroyed): no provider is asked any more.
    return call->done(call->last_error.ok()
                          ? absl::UnavailableError("AI providers stopped")
                          : call->last_error);
  }
  // Ends the section the destructor waits on, on every path below.
  const auto asked = [this] {
    absl::MutexLock lock(&mu_);
    --asking_;
  };
  for (; call->next < members_.size(); ++call->next) {
    Member& member = *members_[call->next];
    if (member.coach == nullptr) continue;  // being destroyed
    const CircuitBreaker::Pass pass = member.breaker.Allow();
    if (pass == CircuitBreaker::Pass::kRefused) continue;
    const size_t index = call->next++;
    member.requests->Increment();
    const absl::Duration started = env_.MonotonicNow();
    member.coach->StartReply(
        call->request, [this, call, index, pass,
                        started](absl::StatusOr<CoachReply> outcome) mutable {
          OnOutcome(std::move(call), index, pass, started, std::move(outcome));
        });
    return asked();
  }
  asked();
  call->done(absl::UnavailableError(
      absl::StrCat("every AI provider failed or is cooling down; last: ",
                   call->last_error.message())));
}

void FallbackCoach::OnOutcome(std::shared_ptr<Call> call, size_t index,
                              CircuitBreaker::Pass pass, absl::Duration started,
                              absl::StatusOr<CoachReply> outcome) {
  Member& member = *members_[index];
  member.duration->Observe(
      absl::ToDoubleSeconds(env_.MonotonicNow() - started));
  if (outcome.ok()) {
    if (member.breaker.Succeeded(pass)) {
      LogTo(env_, LogLevel::kInfo, "ai: provider %s answers again (closed)",
            member.name);
    }
    return call->done(std::move(outcome));
  }
  const absl::Status& error = outcome.status();
  const bool caller_left = absl::IsCancelled(error) ||
                           (call->request.cancellation != nullptr &&
                            call->request.cancellation->IsCancelled()) ||
                           call->request.deadline <= env_.Now();
  // Neither the provider's fault nor another's chance: the request itself
  // (refused, filtered), or a caller who is gone.
  if (caller_left || IsRequestRefused(error) || ReasonOf(error).has_value()) {
    member.breaker.Abandoned(pass);
    return call->done(std::move(outcome));
  }
  member.failures->Increment();
  if (member.breaker.Failed(pass)) {
    LogTo(env_, LogLevel::kWarning,
          "ai: provider %s skipped for %s (breaker open after %d failures in "
          "a row, or a failed probe): %s",
          member.name, absl::FormatDuration(breaker_.cooldown),
          breaker_.failures, error.message());
  }
  // Pieces of this reply reached the caller: it cannot be another's.
  if (call->forwarded->load(std::memory_order_relaxed)) {
    return call->done(std::move(outcome));
  }
  LogTo(env_, LogLevel::kWarning, "ai: provider %s failed, %s: %s", member.name,
        index + 1 < members_.size() ? "falling over" : "none left",
        error.message());
  call->last_error = error;
  AskNext(std::move(call));
}

}  // namespace coach
