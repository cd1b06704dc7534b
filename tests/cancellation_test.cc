// Cancellation: raised once; its action runs once, wherever it was
// registered from.
#include "server/core/cancellation.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace coach {
namespace {

TEST(CancellationTest, CancelRunsTheRegisteredActionOnce) {
  Cancellation cancellation;
  int runs = 0;
  cancellation.OnCancel([&] { ++runs; });
  EXPECT_FALSE(cancellation.IsCancelled());
  EXPECT_EQ(runs, 0);
  cancellation.Cancel();
  cancellation.Cancel();
  EXPECT_TRUE(cancellation.IsCancelled());
  EXPECT_EQ(runs, 1);
}

TEST(CancellationTest, AnActionRegisteredAfterTheCancelRunsAtOnce) {
  Cancellation cancellation;
  cancellation.Cancel();
  int runs = 0;
  cancellation.OnCancel([&] { ++runs; });
  EXPECT_EQ(runs, 1);
}

TEST(CancellationTest, OnlyTheLatestActionRuns) {
  Cancellation cancellation;
  int first = 0, second = 0;
  cancellation.OnCancel([&] { ++first; });
  cancellation.OnCancel([&] { ++second; });
  cancellation.Cancel();
  EXPECT_EQ(first, 0);
  EXPECT_EQ(second, 1);
}

TEST(CancellationTest, AClearedActionDoesNotRun) {
  Cancellation cancellation;
  int runs = 0;
  cancellation.OnCancel([&] { ++runs; });
  cancellation.Clear();
  cancellation.Cancel();
  EXPECT_TRUE(cancellation.IsCancelled());
  EXPECT_EQ(runs, 0);
}

// The action may use the cancellation itself (it runs outside its lock).
TEST(CancellationTest, TheActionMayCallBackIntoTheCancellation) {
  Cancellation cancellation;
  bool seen_cancelled = false;
  cancellation.OnCancel([&] {
    seen_cancelled = cancellation.IsCancelled();
    cancellation.Clear();
  });
  cancellation.Cancel();
  EXPECT_TRUE(seen_cancelled);
}

// Raised from several threads while others register actions: each action
// that was registered runs, once, and the last one always does.
TEST(CancellationTest, ConcurrentCancelsRunTheActionOnce) {
  for (int round = 0; round < 200; ++round) {
    Cancellation cancellation;
    std::atomic<int> runs{0};
    cancellation.OnCancel([&runs] { ++runs; });
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&cancellation] { cancellation.Cancel(); });
    }
    for (std::thread& thread : threads) thread.join();
    EXPECT_EQ(runs.load(), 1) << "round " << round;
  }
}

}  // namespace
}  // namespace coach
