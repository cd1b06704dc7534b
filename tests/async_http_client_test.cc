// AsyncHttpClient against a real HTTP server on loopback: answers, the
// failures it names, per-request cancellation and timers (on a fake clock).
#include "server/coach/async_http_client.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "tests/support/fake_openai.h"
#include "tests/support/test_env.h"

namespace coach::testing {
namespace {

// A transfer's outcome, waited for (bounded: a lost callback fails the test).
struct Outcome {
  absl::Notification done;
  absl::StatusOr<HttpAnswer> answer;

  AsyncHttpClient::AnswerCallback Callback() {
    return [this](absl::StatusOr<HttpAnswer> a) {
      answer = std::move(a);
      done.Notify();
    };
  }
  bool Wait() { return done.WaitForNotificationWithTimeout(absl::Seconds(20)); }
};

std::unique_ptr<AsyncHttpClient> NewClient(AsyncHttpOptions options = {},
                                           Env& env = Env::Default()) {
  auto client = AsyncHttpClient::Create(options, env);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

HttpPost PostTo(const FakeOpenAi& server, absl::Duration timeout) {
  return HttpPost{.url = absl::StrCat(server.base_url(), "/chat/completions"),
                  .headers = {"Content-Type: application/json"},
                  .body = std::make_shared<const std::string>("{}"),
                  .deadline = absl::Now() + timeout,
                  .connect_timeout = absl::Seconds(5)};
}

TEST(AsyncHttpClientTest, DeliversStatusBodyAndLowerCasedHeaders) {
  FakeOpenAi server;
  server.Script({FakeResponse{.status = 429,
                              .body = "{\"error\":{}}",
                              .headers = {{"Retry-After", "7"}},
                              .delay = absl::ZeroDuration(),
                              .stream = {}}});
  auto client = NewClient();
  Outcome outcome;
  client->Post(PostTo(server, absl::Seconds(10)), outcome.Callback());
  ASSERT_TRUE(outcome.Wait());
  ASSERT_TRUE(outcome.answer.ok()) << outcome.answer.status();
  EXPECT_EQ(outcome.answer->status, 429);
  EXPECT_EQ(outcome.answer->body, "{\"error\":{}}");
  EXPECT_EQ(outcome.answer->Header("retry-after"), "7");
  EXPECT_EQ(outcome.answer->Header("absent"), "");
}

TEST(AsyncHttpClientTest, AnAnswerOverTheCapIsAbandoned) {
  FakeOpenAi server;
  server.Script({FakeResponse{.status = 200,
                              .body = std::string(4096, 'a'),
                              .headers = {},
                              .delay = absl::ZeroDuration(),
                              .stream = {}}});
  auto client = NewClient(AsyncHttpOptions{
      .max_idle_connections = 1, .max_answer_bytes = 1024, .proxy = ""});
  Outcome outcome;
  client->Post(PostTo(server, absl::Seconds(10)), outcome.Callback());
  ASSERT_TRUE(outcome.Wait());
  EXPECT_EQ(outcome.answer.status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(AsyncHttpClientTest, ADeadlineAlreadyPassedSendsNothing) {
  FakeOpenAi server;
  auto client = NewClient();
  Outcome outcome;
  client->Post(PostTo(server, -absl::Seconds(1)), outcome.Callback());
  ASSERT_TRUE(outcome.Wait());
  EXPECT_EQ(outcome.answer.status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(server.request_count(), 0);
}

// The deadline is read against the Env's clock, not the machine's.
TEST(AsyncHttpClientTest, TheDeadlineIsReadOnTheEnvClock) {
  FakeOpenAi server;
  FakeClockEnv env;
  env.Advance(absl::Hours(1));
  auto client = NewClient({}, env);
  Outcome outcome;
  // Ten minutes ahead of the machine's clock, an hour behind the Env's.
  client->Post(PostTo(server, absl::Minutes(10)), outcome.Callback());
  ASSERT_TRUE(outcome.Wait());
  EXPECT_EQ(outcome.answer.status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(server.request_count(), 0);
}

// On real time: the cut is libcurl's transfer timeout.
TEST(AsyncHttpClientTest, TheDeadlineEndsATransferTheServerHolds) {
  FakeOpenAi server;
  server.HoldAnswers();
  auto client = NewClient();
  Outcome outcome;
  client->Post(PostTo(server, absl::Milliseconds(300)), outcome.Callback());
  ASSERT_TRUE(outcome.Wait());
  EXPECT_EQ(outcome.answer.status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(AsyncHttpClientTest, CancelEndsOneTransferInFlight) {
  FakeOpenAi server;
  server.HoldAnswers();
  auto client = NewClient();
  Outcome cancelled, kept;
  const AsyncHttpClient::Id id =
      client->Post(PostTo(server, absl::Seconds(60)), cancelled.Callback());
  client->Post(PostTo(server, absl::Seconds(60)), kept.Callback());
  ASSERT_TRUE(server.AwaitRequests(2, absl::Seconds(20)));
  client->Cancel(id);
  ASSERT_TRUE(cancelled.Wait());
  EXPECT_EQ(cancelled.answer.status().code(), absl::StatusCode::kCancelled);
  // The other one is untouched, and answered once released.
  EXPECT_FALSE(kept.done.HasBeenNotified());
  server.ReleaseAnswers();
  ASSERT_TRUE(kept.Wait());
  EXPECT_TRUE(kept.answer.ok()) << kept.answer.status();
}

// Cancelled before the loop has started it, or after: CANCELLED either way.
TEST(AsyncHttpClientTest, CancelRightAfterPostEndsTheTransfer) {
  FakeOpenAi server;
  server.HoldAnswers();
  auto client = NewClient();
  Outcome outcome;
  client->Cancel(
      client->Post(PostTo(server, absl::Seconds(60)), outcome.Callback()));
  ASSERT_TRUE(outcome.Wait());
  EXPECT_EQ(outcome.answer.status().code(), absl::StatusCode::kCancelled);
}

// An id that names nothing (never used, or already over) changes nothing.
TEST(AsyncHttpClientTest, CancelOfAnUnknownIdIsHarmless) {
  FakeOpenAi server;
  auto client = NewClient();
  Outcome first, second;
  const AsyncHttpClient::Id done_id =
      client->Post(PostTo(server, absl::Seconds(10)), first.Callback());
  ASSERT_TRUE(first.Wait());
  client->Cancel(done_id);
  client->Cancel(done_id + 1000);
  client->Post(PostTo(server, absl::Seconds(10)), second.Callback());
  ASSERT_TRUE(second.Wait());
  EXPECT_TRUE(second.answer.ok()) << second.answer.status();
}

// A task is due when the Env's clock reaches it, not a moment before, and
// runs then without waiting for real time.
TEST(AsyncHttpClientTest, ATaskRunsWhenTheEnvClockPassesItsDelay) {
  FakeClockEnv env;
  auto client = NewClient({}, env);
  absl::Notification ran;
  client->RunAfter(absl::Milliseconds(300), [&ran] { ran.Notify(); });
  // Advance returns once the loop has run what the new time makes due.
  env.Advance(absl::Milliseconds(299));
  EXPECT_FALSE(ran.HasBeenNotified());
  env.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(ran.HasBeenNotified());
}

// Tasks run in the order they fall due, each at its own time.
TEST(AsyncHttpClientTest, TasksFallDueInTurn) {
  FakeClockEnv env;
  auto client = NewClient({}, env);
  std::vector<int> order;  // the loop thread's, read after each Advance
  client->RunAfter(absl::Seconds(2), [&order] { order.push_back(2); });
  client->RunAfter(absl::Seconds(1), [&order] { order.push_back(1); });
  env.Advance(absl::Seconds(1));
  EXPECT_EQ(order, std::vector<int>({1}));
  env.Advance(absl::Seconds(1));
  EXPECT_EQ(order, std::vector<int>({1, 2}));
}

TEST(AsyncHttpClientTest, CancelRunsAWaitingTaskAtOnce) {
  auto client = NewClient();
  absl::Notification ran;
  const AsyncHttpClient::Id id =
      client->RunAfter(absl::Hours(1), [&ran] { ran.Notify(); });
  client->Cancel(id);
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(20)));
}

TEST(AsyncHttpClientTest, CancelAllEndsEverythingNowAndLater) {
  FakeOpenAi server;
  server.HoldAnswers();
  auto client = NewClient();
  Outcome in_flight, later;
  absl::Notification task_ran;
  client->Post(PostTo(server, absl::Seconds(60)), in_flight.Callback());
  client->RunAfter(absl::Hours(1), [&task_ran] { task_ran.Notify(); });
  ASSERT_TRUE(server.AwaitRequests(1, absl::Seconds(20)));
  client->CancelAll();
  ASSERT_TRUE(in_flight.Wait());
  EXPECT_EQ(in_flight.answer.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(task_ran.WaitForNotificationWithTimeout(absl::Seconds(20)));
  client->Post(PostTo(server, absl::Seconds(60)), later.Callback());
  ASSERT_TRUE(later.Wait());
  EXPECT_EQ(later.answer.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(server.request_count(), 1);
}

// Destruction delivers every callback, including work callbacks add then.
TEST(AsyncHttpClientTest, DestructionDeliversEveryCallback) {
  FakeOpenAi server;
  server.HoldAnswers();
  int delivered = 0;
  {
    auto client = NewClient();
    AsyncHttpClient* raw = client.get();
    for (int i = 0; i < 5; ++i) {
      client->Post(PostTo(server, absl::Seconds(60)),
                   [&delivered, raw, &server](absl::StatusOr<HttpAnswer>) {
                     ++delivered;
                     // A retry-like follow-up, added during destruction.
                     raw->Post(PostTo(server, absl::Seconds(60)),
                               [&delivered](absl::StatusOr<HttpAnswer> a) {
                                 if (absl::IsCancelled(a.status())) ++delivered;
                               });
                   });
    }
    ASSERT_TRUE(server.AwaitRequests(5, absl::Seconds(20)));
  }
  EXPECT_EQ(delivered, 10);
}

}  // namespace
}  // namespace coach::testing
