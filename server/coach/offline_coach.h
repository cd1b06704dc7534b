// OfflineCoach: the coach used when no OpenAI key is configured. Replies are
// deterministic (the same conversation gets the same reply), in French, warm, and
// useful: it recognises a few common themes and ends with a follow-up
// question. It never fails. It streams too (CoachRequest::on_delta): the
// reply in pieces, one per sentence or clause, so that streaming can be seen
// without an AI key.
#ifndef COACH_SERVER_COACH_OFFLINE_COACH_H_
#define COACH_SERVER_COACH_OFFLINE_COACH_H_

#include <vector>

#include "absl/strings/string_view.h"
#include "server/core/coach.h"

namespace coach {

// `text` cut after each sentence or clause (. ! ? : , or a line end, with
// the spaces after it); the pieces concatenated are `text`. Empty: none.
std::vector<absl::string_view> SentencePieces(absl::string_view text);

class OfflineCoach final : public Coach {
 public:
  // Answers before returning: pure computation, microseconds.
  void StartReply(CoachRequest request, ReplyCallback done) override;

 private:
  static CoachReply Compose(const CoachRequest& request);
};

}  // namespace coach

#endif  // COACH_SERVER_COACH_OFFLINE_COACH_H_
