#include "server/core/coach.h"

#include <utility>

#include "absl/synchronization/notification.h"

namespace coach {

absl::StatusOr<CoachReply> Coach::Reply(CoachRequest request) {
  absl::StatusOr<CoachReply> result;
  absl::Notification replied;
  StartReply(std::move(request), [&](absl::StatusOr<CoachReply> reply) {
    result = std::move(reply);
    replied.Notify();
  });
  replied.WaitForNotification();
  return result;
}

}  // namespace coach
