#include "server/core/rate_limiter.h"

#include <algorithm>
#include <utility>

namespace coach {

RateLimiter::RateLimiter(int per_minute, const Clock& clock)
    : capacity_(per_minute),
      per_token_(absl::Minutes(1) / per_minute),
      clock_(clock) {}

void RateLimiter::Refill(Bucket& bucket, absl::Time now) const {
  // A clock moved backwards refills nothing (and takes nothing back).
  if (now > bucket.updated) {
    bucket.tokens = std::min(
        capacity_, bucket.tokens + absl::FDivDuration(now - bucket.updated,
                                                      per_token_));
  }
  bucket.updated = now;
}

void RateLimiter::SweepLocked(absl::Time now) {
  absl::erase_if(buckets_, [&](auto& entry) {
    Refill(entry.second, now);
    return entry.second.tokens >= capacity_;
  });
  sweep_at_ = std::max<size_t>(1024, 2 * buckets_.size());
}

std::optional<absl::Duration> RateLimiter::TryTake(absl::string_view user_id) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  if (buckets_.size() >= sweep_at_) SweepLocked(now);
  auto [it, inserted] = buckets_.try_emplace(
      user_id, Bucket{.tokens = capacity_, .updated = now});
  Bucket& bucket = it->second;
  Refill(bucket, now);
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return std::nullopt;
  }
  // Ceil to a nanosecond so that waiting exactly this long is enough.
  return std::max(absl::Nanoseconds(1), (1 - bucket.tokens) * per_token_);
}

void RateLimiter::GiveBack(absl::string_view user_id) {
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(user_id);
  if (it == buckets_.end()) return;  // swept: already full
  it->second.tokens = std::min(capacity_, it->second.tokens + 1);
}

size_t RateLimiter::tracked_users() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

ConcurrencySlot::ConcurrencySlot(ConcurrencySlot&& other) noexcept
    : limiter_(std::exchange(other.limiter_, nullptr)),
      user_id_(std::move(other.user_id_)) {}

ConcurrencySlot& ConcurrencySlot::operator=(ConcurrencySlot&& other) noexcept {
  if (this != &other) {
    Release();
    limiter_ = std::exchange(other.limiter_, nullptr);
    user_id_ = std::move(other.user_id_);
  }
  return *this;
}

void ConcurrencySlot::Release() {
  if (limiter_ == nullptr) return;
  std::exchange(limiter_, nullptr)->Release(user_id_);
}

std::optional<ConcurrencySlot> ConcurrencyLimiter::TryAcquire(
    absl::string_view user_id) {
  absl::MutexLock lock(&mu_);
  int& count = in_flight_[user_id];
  if (count >= max_) return std::nullopt;
  ++count;
  return ConcurrencySlot(*this, std::string(user_id));
}

void ConcurrencyLimiter::Release(const std::string& user_id) {
  absl::MutexLock lock(&mu_);
  auto it = in_flight_.find(user_id);
  if (it == in_flight_.end()) return;
  if (--it->second <= 0) in_flight_.erase(it);
}

size_t ConcurrencyLimiter::tracked_users() const {
  absl::MutexLock lock(&mu_);
  return in_flight_.size();
}

}  // namespace coach
