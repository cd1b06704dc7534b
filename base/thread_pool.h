// ThreadPool: runs work that may block (a SQLite write) off threads that
// must not: an event loop, such as the AI client's. Threads are started on
// demand, up to `max_threads`, and kept for reuse; beyond that, work waits
// its turn in FIFO order. So the thread count is bounded by configuration,
// not by load.
//
// Thread-safe: Schedule may be called from any thread, work included.
#ifndef COACH_BASE_THREAD_POOL_H_
#define COACH_BASE_THREAD_POOL_H_

#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace coach {

class ThreadPool {
 public:
  explicit ThreadPool(int max_threads);
  // Runs the work already scheduled (and any it schedules in turn), then
  // joins every thread.
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  using Work = absl::AnyInvocable<void()>;
  void Schedule(Work work);

  // Threads started so far (for tests and metrics).
  int thread_count() const;

 private:
  void WorkLoop();

  const int max_threads_;
  mutable absl::Mutex mu_;
  std::deque<Work> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coach

#endif  // COACH_BASE_THREAD_POOL_H_
