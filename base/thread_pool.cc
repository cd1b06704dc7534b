#include "base/thread_pool.h"

#include <algorithm>
#include <utility>

namespace coach {

ThreadPool::ThreadPool(int max_threads)
    : max_threads_(std::max(1, max_threads)) {}

ThreadPool::~ThreadPool() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    threads.swap(threads_);
  }
  for (std::thread& thread : threads) thread.join();
  // Work scheduled by another thread after the workers drained the queue
  // and left: run here rather than drop it.
  for (;;) {
    Work work;
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) return;
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

void ThreadPool::Schedule(Work work) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
  // Every idle thread will take one queued item; start another only if the
  // queue outnumbers them. Once stopping, none: work scheduled by running
  // work is taken by the threads still draining (one is running it).
  if (!stopping_ && static_cast<int>(queue_.size()) > idle_ &&
      static_cast<int>(threads_.size()) < max_threads_) {
    threads_.emplace_back([this] { WorkLoop(); });
  }
}

int ThreadPool::thread_count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(threads_.size());
}

void ThreadPool::WorkLoop() {
  for (;;) {
    Work work;
    {
      absl::MutexLock lock(&mu_);
      ++idle_;
      mu_.Await(absl::Condition(
          +[](ThreadPool* e) { return !e->queue_.empty() || e->stopping_; },
          this));
      --idle_;
      if (queue_.empty()) return;  // stopping, nothing left to run
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

}  // namespace coach
