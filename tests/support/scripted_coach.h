// Coaches for tests of the rules around the AI seam (the OpenAI client gets
// its own tests against a local HTTP server).
#ifndef COACH_TESTS_SUPPORT_SCRIPTED_COACH_H_
#define COACH_TESTS_SUPPORT_SCRIPTED_COACH_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/thread_pool.h"
#include "server/coach/offline_coach.h"
#include "server/core/coach.h"

namespace coach::testing {

// Answers like the offline coach, records every request, and can be told to
// fail, or to hold replies until `n` calls are waiting at once (so that a
// test sees sends truly overlapping, without sleeping).
//
// Asynchronous, as the production coaches are: StartReply returns at once
// and the reply comes back on one of the coach's own threads, as the OpenAI
// coach delivers its replies. So the suites run the path production runs.
class ScriptedCoach final : public Coach {
 public:
  ScriptedCoach() = default;
  // Releases what is held, then delivers every reply before returning.
  ~ScriptedCoach() override { CancelAll(); }

  void StartReply(CoachRequest request, ReplyCallback done) override {
    {
      absl::MutexLock lock(&mu_);
      // CoachRequest::system_prompt views a static string: safe to keep.
      requests_.push_back(request);
      ++waiting_;
    }
    delivery_.Schedule(
        [this, request = std::move(request), done = std::move(done)]() mutable {
          done(Answer(request));
        });
  }

  // Held replies are released now.
  void CancelAll() override {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }

  void FailWith(absl::Status status) {
    absl::MutexLock lock(&mu_);
    failure_ = std::move(status);
  }
  void ReplyWith(std::string content) {
    absl::MutexLock lock(&mu_);
    reply_ = std::move(content);
  }
  // Replies wait until `n` calls are waiting for theirs at the same time.
  void HoldUntilConcurrent(int n) {
    absl::MutexLock lock(&mu_);
    hold_until_ = n;
    released_ = false;
  }
  // Waits (bounded) until `n` replies have been asked for; false if they
  // were not within `timeout`.
  bool WaitForRequests(int n,
                       absl::Duration timeout = absl::Seconds(20)) const {
    struct Arg {
      const ScriptedCoach* coach;
      int n;
    } arg{this, n};
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(
        absl::Condition(
            +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return static_cast<int>(a->coach->requests_.size()) >= a->n;
            },
            &arg),
        timeout);
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
  // On a delivery thread: waits while held, then answers.
  absl::StatusOr<CoachReply> Answer(const CoachRequest& request) {
    absl::MutexLock lock(&mu_);
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
  std::vector<CoachRequest> requests_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> reply_ ABSL_GUARDED_BY(mu_);
  // Calls started and not yet answered.
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  int hold_until_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  // Last: destroyed first, delivering what is left while the rest lives.
  // As many threads as sends a test holds at once.
  ThreadPool delivery_{64};
};

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_SCRIPTED_COACH_H_
