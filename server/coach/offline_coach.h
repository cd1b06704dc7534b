// OfflineCoach: the coach used when no OpenAI key is configured. Replies are
// deterministic (the same conversation gets the same reply), in French, warm, and
// useful: it recognises a few common themes and ends with a follow-up
// question. It never fails.
#ifndef COACH_SERVER_COACH_OFFLINE_COACH_H_
#define COACH_SERVER_COACH_OFFLINE_COACH_H_

#include "server/core/coach.h"

namespace coach {

class OfflineCoach final : public Coach {
 public:
  // Answers before returning: pure computation, microseconds.
  void StartReply(CoachRequest request, ReplyCallback done) override;

 private:
  static CoachReply Compose(const CoachRequest& request);
};

}  // namespace coach

#endif  // COACH_SERVER_COACH_OFFLINE_COACH_H_
