// Cancellation: raised once; its action runs once, wherever it was
// registered from.
#include "server/core/cancellation.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace coach
