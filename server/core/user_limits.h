// Per-user limits of speed, the domain's arithmetic: the generic cell rate
// algorithm (GCRA), the token bucket written as one timestamp per limit.
//
// A limit of N per minute lets a user make a burst of N requests, then one
// every 60/N s: exactly a bucket of N tokens refilled evenly over a minute.
// Its whole state is the "theoretical arrival time" (TAT): when the next
// request would be due if requests came evenly. A request at `now` passes
// when the TAT is at most (N - 1) intervals ahead of now, and moves it one
// interval on. The state lives on the user's row (storage's RateState) and is
// read and advanced in the transaction that decides the request
// (Store::AdmitSend, Store::CreateSession), so one limit holds for every
// coach-server sharing the database; time comes from the injected Clock.
//
// Pure functions of their arguments: thread-safe.
#ifndef COACH_SERVER_CORE_USER_LIMITS_H_
#define COACH_SERVER_CORE_USER_LIMITS_H_

#include "absl/time/time.h"

namespace coach {

class RateRule {
 public:
  // A burst of `per_minute` (> 0), then one every 60/per_minute s.
  static RateRule PerMinute(int per_minute);

  struct Taken {
    // Whether the request passes.
    bool allowed = false;
    // The TAT to store: advanced when allowed, the one given otherwise.
    absl::Time tat;
    // Refused: how long until a request would pass (> 0).
    absl::Duration retry_after;
  };
  // One request at `now` against the stored `tat` (the epoch, or any time
  // in the past: a full burst).
  Taken Take(absl::Time tat, absl::Time now) const;

 private:
  RateRule(absl::Duration interval, absl::Duration tolerance)
      : interval_(interval), tolerance_(tolerance) {}

  // The time one request is worth.
  absl::Duration interval_;
  // How far ahead of now the TAT may be for a request to pass:
  // (burst - 1) intervals.
  absl::Duration tolerance_;
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_USER_LIMITS_H_
