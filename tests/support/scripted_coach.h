// Coaches for tests of the rules around the AI seam (the OpenAI client gets
// its own tests against a local HTTP server).
#ifndef COACH_TESTS_SUPPORT_SCRIPTED_COACH_H_
#define COACH_TESTS_SUPPORT_SCRIPTED_COACH_H_

#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/coach/coach.h"
#include "server/coach/offline_coach.h"

namespace coach::testing {

// Answers like the offline coach, records every request, and can be told to
// fail, or to hold replies until `n` calls are waiting at once (so that a
// test sees sends truly overlapping, without sleeping).
class ScriptedCoach final : public Coach {
 public:
  // Blocks while it holds a reply (MayBlock stays true): the server then
  // runs sends on its BlockingExecutor, as it does for any blocking coach.
  void StartReply(CoachRequest request, ReplyCallback done) override {
    done(Answer(request));
  }

  void FailWith(absl::Status status) {
    absl::MutexLock lock(&mu_);
    failure_ = std::move(status);
  }
  void ReplyWith(std::string content) {
    absl::MutexLock lock(&mu_);
    reply_ = std::move(content);
  }
  // Replies wait until `n` calls are in StartReply at the same time.
  void HoldUntilConcurrent(int n) {
    absl::MutexLock lock(&mu_);
    hold_until_ = n;
    released_ = false;
  }
  int request_count() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(requests_.size());
  }
  std::vector<CoachRequest> requests() const {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  absl::StatusOr<CoachReply> Answer(const CoachRequest& request) {
    absl::MutexLock lock(&mu_);
    requests_.push_back(request);
    // CoachRequest::system_prompt is a view of a static string: safe to keep.
    ++waiting_;
    if (hold_until_ > 0) {
      // Bounded: a broken rule fails the test instead of hanging it.
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](ScriptedCoach* c) {
                                 return c->waiting_ >= c->hold_until_ ||
                                        c->released_;
                               },
                               this),
                           absl::Seconds(20));
      released_ = true;
    }
    --waiting_;
    if (!failure_.ok()) return failure_;
    if (reply_.has_value()) {
      CoachReply reply;
      reply.content = *reply_;
      return reply;
    }
    return offline_.Reply(request);
  }

  mutable absl::Mutex mu_;
  OfflineCoach offline_;
  std::vector<CoachRequest> requests_;
  absl::Status failure_;
  std::optional<std::string> reply_;
  int waiting_ = 0;
  int hold_until_ = 0;
  bool released_ = false;
};

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_SCRIPTED_COACH_H_
