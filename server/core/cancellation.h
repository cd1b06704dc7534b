// Cancellation: a caller's "I gave up" (a cancelled or disconnected RPC),
// raised at most once. Whoever works for the caller can poll it, or register
// what to stop when it is raised (an HTTP request to the AI, say), so that a
// user who leaves stops costing tokens and sockets at once.
#ifndef COACH_SERVER_CORE_CANCELLATION_H_
#define COACH_SERVER_CORE_CANCELLATION_H_

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace coach {

class Cancellation {
 public:
  using Action = absl::AnyInvocable<void()>;

  // Raises it and runs the registered action, on this thread. Later calls do
  // nothing. Thread-safe.
  void Cancel();
  bool IsCancelled() const;

  // `action` runs when Cancel is called: at once, on this thread, if it
  // already was. Replaces the action registered before. Thread-safe.
  void OnCancel(Action action);
  // Forgets the registered action: the work it would stop is over.
  void Clear();

 private:
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  Action action_ ABSL_GUARDED_BY(mu_);
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_CANCELLATION_H_
