// Per-user limits of speed and concurrency, counted in this process.
//
// RateLimiter: a token bucket per user. Each user may take `per_minute`
// tokens in a burst; the bucket refills evenly (one token every
// 60/per_minute s) up to that size. Time comes from the injected Clock, so
// tests move it at will. Memory stays bounded by recent activity, not by the
// number of user ids ever seen: a bucket that has refilled to full is the
// same as no bucket, so such entries are dropped by a sweep that runs
// whenever the table has doubled since the last one (amortised O(1) per
// call). The table therefore holds at most the users that took a token
// within the last minute (plus one sweep's growth): a flood of distinct user
// ids costs memory for as long as it lasts, then disappears.
//
// ConcurrencyLimiter: at most `max` slots per user at once. A slot is a
// move-only RAII value (like CreditHold): destroying it gives it back,
// whatever path the send took. A user with no slot held has no entry.
//
// Both are thread-safe.
#ifndef COACH_SERVER_CORE_RATE_LIMITER_H_
#define COACH_SERVER_CORE_RATE_LIMITER_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/clock.h"

namespace coach {

class RateLimiter {
 public:
  // `per_minute` > 0; `clock` must outlive the limiter.
  RateLimiter(int per_minute, const Clock& clock);

  // Takes one of `user_id`'s tokens: nullopt when taken, otherwise how long
  // until one is free (> 0), and nothing is taken.
  std::optional<absl::Duration> TryTake(absl::string_view user_id);
  // Gives back a token taken by TryTake (the request was refused by a later
  // check that consumed nothing else). Never past a full bucket.
  void GiveBack(absl::string_view user_id);

  // Users with a bucket that is not full (for tests of the memory bound).
  size_t tracked_users() const;

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time updated;
  };
  // Refills `bucket` up to `now`.
  void Refill(Bucket& bucket, absl::Time now) const;
  // Drops the buckets that are full again at `now`.
  void SweepLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const double capacity_;
  // Time for one token to come back.
  const absl::Duration per_token_;
  const Clock& clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  size_t sweep_at_ ABSL_GUARDED_BY(mu_) = 1024;
};

class ConcurrencyLimiter;

// One slot of a user's concurrency, given back when destroyed. Empty after
// being moved from. Not thread-safe: one send owns it at a time.
class ConcurrencySlot {
 public:
  ConcurrencySlot() = default;
  ConcurrencySlot(ConcurrencySlot&& other) noexcept;
  ConcurrencySlot& operator=(ConcurrencySlot&& other) noexcept;
  ConcurrencySlot(const ConcurrencySlot&) = delete;
  ConcurrencySlot& operator=(const ConcurrencySlot&) = delete;
  ~ConcurrencySlot() { Release(); }

  bool held() const { return limiter_ != nullptr; }
  // Gives the slot back now, if still held.
  void Release();

 private:
  friend class ConcurrencyLimiter;
  ConcurrencySlot(ConcurrencyLimiter& limiter, std::string user_id)
      : limiter_(&limiter), user_id_(std::move(user_id)) {}

  ConcurrencyLimiter* limiter_ = nullptr;
  std::string user_id_;
};

class ConcurrencyLimiter {
 public:
  // `max_per_user` > 0.
  explicit ConcurrencyLimiter(int max_per_user) : max_(max_per_user) {}

  // A held slot, or nullopt when `user_id` already holds the maximum. The
  // limiter must outlive its slots.
  std::optional<ConcurrencySlot> TryAcquire(absl::string_view user_id);

  // Users holding at least one slot.
  size_t tracked_users() const;

 private:
  friend class ConcurrencySlot;
  void Release(const std::string& user_id);

  const int max_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_RATE_LIMITER_H_
