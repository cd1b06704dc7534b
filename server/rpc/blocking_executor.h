// BlockingExecutor: runs work that blocks for long (a send waiting seconds on
// the AI) off gRPC's few callback threads. Threads are started on demand, up
// to `max_threads`, and kept for reuse; beyond that, work waits its turn in
// FIFO order. So the thread count is bounded by configuration, not by load.
#ifndef COACH_SERVER_RPC_BLOCKING_EXECUTOR_H_
#define COACH_SERVER_RPC_BLOCKING_EXECUTOR_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace coach {

class BlockingExecutor {
 public:
  explicit BlockingExecutor(int max_threads);
  // Runs the work already scheduled, then joins every thread.
  ~BlockingExecutor();

  BlockingExecutor(const BlockingExecutor&) = delete;
  BlockingExecutor& operator=(const BlockingExecutor&) = delete;

  void Schedule(std::function<void()> work);

  // Threads started so far (for tests and metrics).
  int thread_count() const;

 private:
  void WorkLoop();

  const int max_threads_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace coach

#endif  // COACH_SERVER_RPC_BLOCKING_EXECUTOR_H_
