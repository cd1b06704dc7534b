// OfflineCoach: the coach used when no OpenAI key is configured. Replies are
// deterministic (the same conversation gets the same reply), in French, warm,
// and useful: it recognises a few common themes and ends with a follow-up
// question. It never fails (but for a caller that cancels or a server that
// shuts down). It streams too (CoachRequest::on_delta): the reply in pieces,
// one per sentence or clause, paced like a model's (`piece_delay` apart), so
// that streaming can be seen, and a typing animation built, without an AI
// key.
#ifndef COACH_SERVER_COACH_OFFLINE_COACH_H_
#define COACH_SERVER_COACH_OFFLINE_COACH_H_

#include <memory>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/core/coach.h"

namespace coach {

// `text` cut after each sentence or clause (. ! ? : , or a line end, with
// the spaces after it); the pieces concatenated are `text`. Empty: none.
std::vector<absl::string_view> SentencePieces(absl::string_view text);

// Thread-safe.
class OfflineCoach final : public Coach {
 public:
  // `piece_delay` zero: every reply is written before StartReply returns
  // (pure computation, microseconds), its pieces reported at once. Above
  // zero: a streamed reply's pieces are reported `piece_delay` apart by a
  // thread of the coach's own, then `done` runs there; a cancelled request
  // stops there and fails with CANCELLED. A reply that is not streamed is
  // always written at once.
  explicit OfflineCoach(absl::Duration piece_delay = absl::ZeroDuration());
  ~OfflineCoach() override;  // Fails the replies still being streamed.

  // The longest a streamed reply takes with `piece_delay`: its credit hold
  // must outlive it.
  static absl::Duration LongestReply(absl::Duration piece_delay);

  void StartReply(CoachRequest request, ReplyCallback done) override;
  // Fails the streams being paced, and every later paced one (a reply
  // written at once is never in progress).
  void CancelAll() override;

 private:
  class Pacer;
  static CoachReply Compose(const CoachRequest& request);

  const absl::Duration piece_delay_;
  std::unique_ptr<Pacer> pacer_;  // null when piece_delay_ is zero
};

}  // namespace coach

#endif  // COACH_SERVER_COACH_OFFLINE_COACH_H_
