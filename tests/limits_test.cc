// The per-user limits (UserLimits) end to end: a real server on loopback
// with its TestClock, over gRPC (RESOURCE_EXHAUSTED / RATE_LIMITED with a
// google.rpc.RetryInfo; FAILED_PRECONDITION / SESSION_LIMIT_REACHED) and
// over REST through the real proxy (429 with Retry-After, 409), each limit
// at its edge.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "tests/support/ports.h"
#include "tests/support/test_server.h"
#include "tests/support/test_stack.h"

namespace coach::testing {
namespace {

// The limits of a test: TestConfig's (out of the way) unless lowered.
Config LimitsConfig(int send_rate, int concurrent, int session_rate,
                    int max_sessions) {
  Config config = TestConfig();
  config.user_limits.send_rate_per_minute = send_rate;
  config.user_limits.max_concurrent_sends_per_user = concurrent;
  config.user_limits.session_create_rate_per_minute = session_rate;
  config.user_limits.max_sessions_per_user = max_sessions;
  return config;
}

constexpr int kHigh = 100000;

std::optional<absl::Duration> RetryDelayOf(const grpc::Status& status) {
  return ErrorInfoOf(status).retry_delay;
}

::testing::AssertionResult IsRateLimited(const grpc::Status& status) {
  const ErrorDetail info = ErrorInfoOf(status);
  if (status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED ||
      info.reason != "RATE_LIMITED" || info.domain != "coach.v1") {
    return ::testing::AssertionFailure()
           << "expected RESOURCE_EXHAUSTED RATE_LIMITED; got code "
           << status.error_code() << " reason '" << info.reason
           << "': " << status.error_message();
  }
  if (!RetryDelayOf(status).has_value()) {
    return ::testing::AssertionFailure() << "no RetryInfo";
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult IsSessionLimit(const grpc::Status& status) {
  const ErrorDetail info = ErrorInfoOf(status);
  if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
      info.reason == "SESSION_LIMIT_REACHED") {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "expected FAILED_PRECONDITION SESSION_LIMIT_REACHED; got code "
         << status.error_code() << " reason '" << info.reason
         << "': " << status.error_message();
}

class LimitsTest : public ::testing::Test {
 protected:
  // Starts the server with `config` (each test its own limits).
  void Start(Config config) {
    server_ = std::make_unique<TestServer>(std::move(config));
    ASSERT_TRUE(server_->start_error().ok()) << server_->start_error();
  }
  TestServer& server() { return *server_; }

  grpc::Status Send(const std::string& user_id, const std::string& session_id,
                    const std::string& message,
                    v1::SendMessageResponse* out = nullptr) {
    return server_->Send(user_id, session_id, message, out);
  }
  grpc::Status Create(const std::string& user_id, std::string* id = nullptr) {
    v1::CreateSessionRequest request;
    request.set_user_id(user_id);
    v1::CreateSessionResponse response;
    grpc::Status status =
        server_->chat().CreateSession(Context().get(), request, &response);
    if (id != nullptr) *id = response.session().id();
    return status;
  }
  std::string MustCreate(const std::string& user_id) {
    std::string id;
    const grpc::Status status = Create(user_id, &id);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return id;
  }
  void SetPlan(const std::string& user_id, v1::Plan plan) {
    v1::SetPlanRequest request;
    request.set_user_id(user_id);
    request.set_plan(plan);
    v1::SetPlanResponse response;
    ASSERT_TRUE(server_->users()
                    .SetPlan(AdminContext().get(), request, &response)
                    .ok());
  }
  v1::UserStats Stats(const std::string& user_id) {
    v1::GetUserStatsRequest request;
    request.set_user_id(user_id);
    v1::GetUserStatsResponse response;
    EXPECT_TRUE(server_->users()
                    .GetUserStats(Context().get(), request, &response)
                    .ok());
    return response.stats();
  }
  // Bounded wait (no sleep) until the coach has seen `n` requests.
  bool AwaitCoachRequests(int n) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (server_->coach().request_count() < n &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    return server_->coach().request_count() >= n;
  }

 private:
  std::unique_ptr<TestServer> server_;
};

TEST_F(LimitsTest, TwentiethSendInAMinutePassesTwentyFirstIsRateLimited) {
  Start(LimitsConfig(/*send_rate=*/20, kHigh, kHigh, 500));
  SetPlan("bea", v1::BASIC);  // 50 credits: credits are not what stops her
  const std::string session = MustCreate("bea");
  for (int i = 1; i <= 20; ++i) {
    ASSERT_TRUE(Send("bea", session, absl::StrCat("Question ", i)).ok())
        << "send " << i;
  }
  const grpc::Status refused = Send("bea", session, "Question 21");
  EXPECT_TRUE(IsRateLimited(refused));
  // One token comes back every 60/20 = 3 s.
  EXPECT_EQ(RetryDelayOf(refused), absl::Seconds(3));
  EXPECT_EQ(refused.error_message(),
            "Trop de requêtes en peu de temps. Réessayez dans 3 s.");
  // Nothing held, charged, stored, nor asked of the coach.
  EXPECT_EQ(server().coach().request_count(), 20);
  EXPECT_EQ(Stats("bea").remaining_credits(), 30);
  EXPECT_EQ(Stats("bea").total_messages(), 40);

  // Just before the token is back: still refused, with the wait left.
  server().clock().Advance(absl::Milliseconds(2900));
  const grpc::Status early = Send("bea", session, "Trop tôt");
  EXPECT_TRUE(IsRateLimited(early));
  EXPECT_EQ(RetryDelayOf(early), absl::Milliseconds(100));
  server().clock().Advance(absl::Milliseconds(100));
  EXPECT_TRUE(Send("bea", session, "Question 21").ok());
  // Other users have their own budget.
  EXPECT_TRUE(Send("carl", "", "Bonjour").ok());
}

TEST_F(LimitsTest, PremiumIsRateLimitedToo) {
  Start(LimitsConfig(/*send_rate=*/3, kHigh, kHigh, 500));
  SetPlan("vip", v1::PREMIUM);
  const std::string session = MustCreate("vip");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Send("vip", session, "Vite").ok());
  EXPECT_TRUE(IsRateLimited(Send("vip", session, "Encore")));
  EXPECT_EQ(server().coach().request_count(), 3);
}

TEST_F(LimitsTest, ThirdConcurrentSendIsRateLimitedAndChargesNothing) {
  Start(LimitsConfig(kHigh, /*concurrent=*/2, kHigh, 500));
  const std::string session = MustCreate("dan");
  // Dan's two sends wait in the coach until a third call arrives (Eve's).
  server().coach().HoldUntilConcurrent(3);
  grpc::Status held[2];
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back(
        [&, i] { held[i] = Send("dan", session, absl::StrCat("En vol ", i)); });
  }
  const bool both_in_coach = AwaitCoachRequests(2);
  EXPECT_TRUE(both_in_coach);
  if (both_in_coach) {
    const grpc::Status third = Send("dan", session, "Troisième");
    EXPECT_TRUE(IsRateLimited(third));
    EXPECT_EQ(RetryDelayOf(third), absl::Seconds(1));
    // Refused before the coach; nothing charged (the two in flight only
    // hold theirs).
    EXPECT_EQ(server().coach().request_count(), 2);
    EXPECT_EQ(Stats("dan").remaining_credits(), 5);
  }
  // Another user is not held back by Dan's sends; hers releases them.
  EXPECT_TRUE(Send("eve", "", "Bonjour").ok());
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(held[0].ok()) << held[0].error_message();
  EXPECT_TRUE(held[1].ok()) << held[1].error_message();
  EXPECT_EQ(Stats("dan").remaining_credits(), 3);
  EXPECT_EQ(Stats("dan").total_messages(), 4);
  // The slots came back when the sends ended.
  EXPECT_TRUE(Send("dan", session, "Après").ok());
}

TEST_F(LimitsTest, SessionCreationRateCountsSendsWithoutSessionId) {
  // Two sends a minute: a send refused for the session rate must give its
  // send token back, or the last send below would be refused too.
  Start(LimitsConfig(/*send_rate=*/2, kHigh, /*session_rate=*/3, 500));
  ASSERT_TRUE(Send("fay", "", "Un").ok());  // starts a session: counts
  MustCreate("fay");
  MustCreate("fay");
  const grpc::Status refused = Create("fay");
  EXPECT_TRUE(IsRateLimited(refused));
  EXPECT_EQ(RetryDelayOf(refused), absl::Seconds(20));  // 60/3
  // A send that would start a session is refused too, before the coach...
  EXPECT_TRUE(IsRateLimited(Send("fay", "", "Deux")));
  EXPECT_EQ(server().coach().request_count(), 1);
  EXPECT_EQ(Stats("fay").total_chats(), 3);
  // ...without using a send token (one left of two; 20 s bring back only
  // 2/3 of another).
  server().clock().Advance(absl::Seconds(20));
  EXPECT_TRUE(Send("fay", "", "Deux").ok());
  EXPECT_EQ(Stats("fay").total_chats(), 4);
}

TEST_F(LimitsTest, MaximumOfSessionsPerUserHoldsForCreatesAndSends) {
  Start(LimitsConfig(kHigh, kHigh, kHigh, /*max_sessions=*/3));
  const std::string first = MustCreate("gil");
  MustCreate("gil");
  ASSERT_TRUE(Send("gil", "", "Troisième conversation").ok());
  const grpc::Status refused = Create("gil");
  EXPECT_TRUE(IsSessionLimit(refused));
  EXPECT_EQ(refused.error_message(),
            "Nombre maximal de conversations atteint (3) : supprimez-en une "
            "pour en commencer une nouvelle.");
  EXPECT_FALSE(RetryDelayOf(refused).has_value());  // waiting does not help
  // A send that would start a fourth: refused before the coach, free.
  EXPECT_TRUE(IsSessionLimit(Send("gil", "", "Quatrième")));
  EXPECT_EQ(server().coach().request_count(), 1);
  EXPECT_EQ(Stats("gil").remaining_credits(), 4);
  EXPECT_EQ(Stats("gil").total_chats(), 3);
  // Sending into an existing session is not creating one.
  EXPECT_TRUE(Send("gil", first, "Suite").ok());

  v1::DeleteSessionRequest request;
  request.set_session_id(first);
  request.set_user_id("gil");
  v1::DeleteSessionResponse response;
  ASSERT_TRUE(
      server().chat().DeleteSession(Context().get(), request, &response).ok());
  EXPECT_TRUE(Create("gil").ok());
}

TEST_F(LimitsTest, RacingCreatesAtMaxMinusOneLetExactlyOneThrough) {
  constexpr int kMax = 5;
  constexpr int kRacers = 8;
  Start(LimitsConfig(kHigh, kHigh, kHigh, kMax));
  for (int i = 0; i < kMax - 1; ++i) MustCreate("hal");
  std::atomic<int> created{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&] {
      const grpc::Status status = Create("hal");
      if (status.ok()) ++created;
      if (IsSessionLimit(status)) ++refused;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(refused.load(), kRacers - 1);
  EXPECT_EQ(Stats("hal").total_chats(), kMax);
}

// Sends without sessionId at max - 1, all in the coach at once: each passed
// the early check; the commit's transaction lets exactly one store its new
// session, and the others charge and store nothing.
TEST_F(LimitsTest, RacingSendsAtMaxMinusOneStoreExactlyOneNewSession) {
  constexpr int kMax = 3;
  constexpr int kRacers = 4;
  Start(LimitsConfig(kHigh, kHigh, kHigh, kMax));
  for (int i = 0; i < kMax - 1; ++i) MustCreate("ida");
  server().coach().HoldUntilConcurrent(kRacers);
  std::vector<grpc::Status> statuses(kRacers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back(
        [&, i] { statuses[i] = Send("ida", "", absl::StrCat("Course ", i)); });
  }
  for (std::thread& t : threads) t.join();
  int ok = 0;
  for (const grpc::Status& status : statuses) {
    if (status.ok()) {
      ++ok;
    } else {
      EXPECT_TRUE(IsSessionLimit(status));
    }
  }
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(server().coach().request_count(), kRacers);
  EXPECT_EQ(Stats("ida").total_chats(), kMax);
  EXPECT_EQ(Stats("ida").total_messages(), 2);
  EXPECT_EQ(Stats("ida").remaining_credits(), 4);
}

// --- REST -------------------------------------------------------------------

struct HttpReply {
  int status = 0;
  std::string retry_after;
  bool has_retry_after = false;
  std::string body;
};

HttpReply Post(httplib::Client& client, const std::string& path,
               const nlohmann::json& body) {
  HttpReply reply;
  httplib::Result result = client.Post(path, body.dump(), "application/json");
  if (!result) {
    ADD_FAILURE() << "no answer: " << httplib::to_string(result.error());
    return reply;
  }
  reply.status = result->status;
  reply.has_retry_after = result->has_header("Retry-After");
  reply.retry_after = result->get_header_value("Retry-After");
  reply.body = result->body;
  return reply;
}

TEST(LimitsRestTest, RateLimitedSendIs429WithRetryAfterAndTheDocumentedBody) {
  TestStack stack(LimitsConfig(/*send_rate=*/2, kHigh, kHigh, 500));
  ASSERT_TRUE(stack.start_error().ok()) << stack.start_error();
  const nlohmann::json send = {{"userId", "jo"}, {"message", "Bonjour"}};
  for (int i = 0; i < 2; ++i) {
    const HttpReply ok = Post(stack.http(), "/api/chat/send", send);
    EXPECT_EQ(ok.status, 200) << ok.body;
    EXPECT_FALSE(ok.has_retry_after);
  }
  const HttpReply limited = Post(stack.http(), "/api/chat/send", send);
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.retry_after, "30");  // 60/2 s
  EXPECT_EQ(limited.body,
            R"({"error":"Trop de requêtes","code":"RATE_LIMITED",)"
            R"("message":"Trop de requêtes en peu de temps. Réessayez dans )"
            R"(30 s."})");
  // Not to be confused with 402: jo still has credits.
  EXPECT_EQ(stack.server().coach().request_count(), 2);

  // A fraction of a second still to wait is announced as one whole second.
  stack.server().clock().Advance(absl::Seconds(29) + absl::Milliseconds(500));
  const HttpReply almost = Post(stack.http(), "/api/chat/send", send);
  EXPECT_EQ(almost.status, 429);
  EXPECT_EQ(almost.retry_after, "1");
  stack.server().clock().Advance(absl::Milliseconds(500));
  EXPECT_EQ(Post(stack.http(), "/api/chat/send", send).status, 200);
}

TEST(LimitsRestTest, SessionMaximumIs409WithTheDocumentedBody) {
  TestStack stack(LimitsConfig(kHigh, kHigh, kHigh, /*max_sessions=*/1));
  ASSERT_TRUE(stack.start_error().ok()) << stack.start_error();
  const nlohmann::json create = {{"userId", "kay"}};
  EXPECT_EQ(Post(stack.http(), "/api/chat/sessions", create).status, 200);
  const HttpReply refused = Post(stack.http(), "/api/chat/sessions", create);
  EXPECT_EQ(refused.status, 409);
  EXPECT_FALSE(refused.has_retry_after);
  EXPECT_EQ(refused.body,
            R"({"error":"Limite de conversations atteinte",)"
            R"("code":"SESSION_LIMIT_REACHED","message":"Nombre maximal de )"
            R"(conversations atteint (1) : supprimez-en une pour en )"
            R"(commencer une nouvelle."})");
}

// A second coach-server started by mistake on the same host and port (so
// with the live one's default instance name) fails to bind and stops (ADR
// 0020), and leaves the live server's holds and idempotency claims alone:
// its sends in flight still count, and their keyed commits succeed. (Before,
// it called Store::BeginRun before binding, which dropped them: the second
// send below was admitted and the first refused at its commit.)
TEST_F(LimitsTest, ASecondServerRefusedOnTheSamePortLeavesTheLiveHoldsAlone) {
  const int port = FreeLoopbackPort();
  ASSERT_NE(port, 0);
  Config config = LimitsConfig(kHigh, /*concurrent=*/1, kHigh, 500);
  config.grpc_listen = absl::StrCat("127.0.0.1:", port);
  Start(config);
  const std::string session = MustCreate("dan");
  // Dan's first send waits in the coach until a second call is waiting.
  server().coach().HoldUntilConcurrent(2);
  grpc::Status first;
  std::thread in_flight([&] {
    // Sent with an Idempotency-Key, as a mobile client does.
    v1::SendMessageRequest request;
    request.set_user_id("dan");
    request.set_session_id(session);
    request.set_message("En vol");
    v1::SendMessageResponse response;
    std::unique_ptr<grpc::ClientContext> context = Context();
    context->AddMetadata("idempotency-key", "dan-1");
    first = server().chat().SendMessage(context.get(), request, &response);
  });
  ASSERT_TRUE(AwaitCoachRequests(1));

  // The same binary, same settings, started again on the same port.
  auto rogue_store = SqliteStore::Open(SqliteOptions{.path = server().db_path(),
                                                     .busy_timeout_ms = 5000,
                                                     .reader_connections = 1});
  ASSERT_TRUE(rogue_store.ok()) << rogue_store.status();
  Config rogue_config = config;
  rogue_config.db_path = server().db_path();
  ScriptedCoach rogue_coach;
  auto rogue = CoachServer::Start(rogue_config, **rogue_store, rogue_coach,
                                  server().clock());
  EXPECT_FALSE(rogue.ok()) << "two servers on one port";

  // Dan's send is still in flight on the live server: a second one is
  // beyond his concurrency of 1.
  const grpc::Status second = Send("dan", session, "Deuxième");
  EXPECT_TRUE(IsRateLimited(second))
      << "the live server's hold was dropped by the refused server";
  if (IsRateLimited(second)) {
    EXPECT_TRUE(Send("eve", "", "Bonjour").ok());  // releases Dan's
  }
  in_flight.join();
  // Nothing else used Dan's key: his send must be stored and answered, not
  // refused at its commit because its claim was deleted under it.
  EXPECT_TRUE(first.ok()) << "code " << first.error_code() << " reason "
                          << ErrorInfoOf(first).reason << ": "
                          << first.error_message();
}

}  // namespace
}  // namespace coach::testing
