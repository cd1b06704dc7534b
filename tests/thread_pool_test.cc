// ThreadPool: bounded threads, FIFO beyond them, everything run.
#include "base/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace coach {
namespace {

TEST(ThreadPoolTest, RunsEveryScheduledTaskBeforeItIsDestroyed) {
  std::atomic<int> done{0};
  {
    ThreadPool executor(4);
    for (int i = 0; i < 100; ++i) executor.Schedule([&done] { ++done; });
  }
  EXPECT_EQ(done.load(), 100);
}

// Work may schedule more work, even while the executor drains on
// destruction: all of it runs, and no thread is left unjoined.
TEST(ThreadPoolTest, WorkScheduledByWorkRunsToo) {
  std::atomic<int> done{0};
  {
    ThreadPool executor(2);
    for (int i = 0; i < 50; ++i) {
      executor.Schedule([&] {
        executor.Schedule([&done] { ++done; });
        ++done;
      });
    }
  }
  EXPECT_EQ(done.load(), 100);
}

TEST(ThreadPoolTest, ThreadsGrowWithBlockedWorkUpToTheBound) {
  absl::Notification release;
  absl::Mutex mu;
  int running = 0;
  ThreadPool executor(3);
  for (int i = 0; i < 5; ++i) {
    executor.Schedule([&] {
      {
        absl::MutexLock lock(&mu);
        ++running;
      }
      release.WaitForNotificationWithTimeout(absl::Seconds(20));
    });
  }
  // Three tasks run at once (one per thread); the other two wait their turn.
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(
                                +[](int* r) { return *r == 3; }, &running),
                            absl::Seconds(20)));
  }
  EXPECT_EQ(executor.thread_count(), 3);
  release.Notify();
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(
                                +[](int* r) { return *r == 5; }, &running),
                            absl::Seconds(20)));
  }
  EXPECT_EQ(executor.thread_count(), 3);
}
}  // namespace
}  // namespace coach
