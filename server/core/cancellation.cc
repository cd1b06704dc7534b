#include "server/core/cancellation.h"

#include <utility>

namespace coach {

void Cancellation::Cancel() {
  Action action;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return;
    cancelled_ = true;
    action = std::move(action_);
  }
  // Outside the lock: the action may call back into this object.
  if (action) action();
}

bool Cancellation::IsCancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

void Cancellation::OnCancel(Action action) {
  {
    absl::MutexLock lock(&mu_);
    if (!cancelled_) {
      action_ = std::move(action);
      return;
    }
  }
  action();
}

void Cancellation::Clear() {
  Action dropped;
  {
    absl::MutexLock lock(&mu_);
    dropped = std::move(action_);
  }
  // `dropped` is destroyed here, outside the lock.
}

}  // namespace coach
