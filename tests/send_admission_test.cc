// Issue 23: a send's admission is decided in the store, in one transaction
// under the user's row lock, so the per-user limits hold for every server
// sharing a database. Here several Chats, each on a store of its own (as
// several coach-servers), share one database of each engine:
// - the concurrency, send-rate and session-creation limits hold across
//   them, on the test clock (burst, refill, retry delay);
// - a crashed server's reservations stop counting when its run is dropped
//   (restart with the same instance) or when they expire;
// - a send costs two write transactions, with or without an
//   Idempotency-Key (a replay: one), counted by the engines' own commits.
#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "server/core/accounts.h"
#include "server/core/chat.h"
#include "server/core/errors.h"
#include "storage/postgres_store.h"
#include "storage/sqlite_store.h"
#include "tests/support/scripted_coach.h"
#include "tests/support/store_engines.h"
#include "tests/support/test_clock.h"

namespace coach::testing {
namespace {

// Chat::SendMessage, waiting for its outcome.
absl::StatusOr<SendResult> Send(Chat& chat, absl::string_view user_id,
                                absl::string_view session_id = "",
                                std::optional<std::string> key = std::nullopt) {
  absl::StatusOr<SendResult> result;
  absl::Notification sent;
  chat.SendMessage(user_id, session_id, "Comment gagner en confiance ?",
                   Caller{.idempotency_key = std::move(key)},
                   [&](absl::StatusOr<SendResult> outcome) {
                     result = std::move(outcome);
                     sent.Notify();
                   });
  sent.WaitForNotification();
  return result;
}

bool IsRateLimited(const absl::Status& status) {
  return ReasonOf(status) == ErrorReason::kRateLimited;
}

// Write transactions the engine behind `store` has committed.
int64_t WriteTransactions(Store& store) {
  if (auto* sqlite = dynamic_cast<SqliteStore*>(&store)) {
    return sqlite->write_transactions();
  }
  if (auto* postgres = dynamic_cast<PostgresStore*>(&store)) {
    return postgres->write_transactions();
  }
  ADD_FAILURE() << "unknown engine";
  return -1;
}

// One "server": a store of its own on the shared database, and a Chat on it.
struct Server {
  std::unique_ptr<Store> store;
  std::unique_ptr<Chat> chat;
};

class SendAdmissionTest : public ::testing::TestWithParam<Engine> {
 protected:
  SendAdmissionTest() : db_(NewTestDatabase(GetParam())) {
    config_.user_limits = UserLimits{.send_rate_per_minute = 20,
                                     .max_concurrent_sends_per_user = 2,
                                     .session_create_rate_per_minute = 10,
                                     .max_sessions_per_user = 500};
    config_.plans.free_monthly_credits = 1000;
  }

  void SetUp() override { COACH_USE_DATABASE_OR_SKIP(*db_); }

  void TearDown() override {
    // Held replies end before the Chats and stores they call back into.
    coach_.CancelAll();
    for (Started& send : started_) send.done.WaitForNotification();
  }

  // A send started without waiting for it.
  struct Started {
    absl::StatusOr<SendResult> outcome;
    absl::Notification done;
  };
  // Starts a send of `user_id` on `chat` (its outcome is awaited at the
  // latest by TearDown).
  Started& StartSend(Chat& chat, absl::string_view user_id) {
    Started& send = started_.emplace_back();
    chat.SendMessage(user_id, "", "Bonjour", Caller{},
                     [&send](absl::StatusOr<SendResult> outcome) {
                       send.outcome = std::move(outcome);
                       send.done.Notify();
                     });
    return send;
  }

  // A new server on the database, as instance `instance` (a restart when
  // the name was used before: its earlier run's reservations are dropped).
  Chat& StartServer(const std::string& instance) {
    absl::StatusOr<std::unique_ptr<Store>> store = db_->Open(2);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) std::abort();
    EXPECT_TRUE((*store)->BeginRun(instance).ok());
    auto chat = std::make_unique<Chat>(config_, **store, coach_, clock_);
    servers_.push_back(
        Server{.store = *std::move(store), .chat = std::move(chat)});
    return *servers_.back().chat;
  }

  Store& StoreOf(size_t server) { return *servers_.at(server).store; }

  std::unique_ptr<TestDatabase> db_;
  CoreConfig config_;
  TestClock clock_{MidNovember2026()};
  ScriptedCoach coach_;
  std::vector<Server> servers_;
  std::deque<Started> started_;
};

INSTANTIATE_TEST_SUITE_P(Engines, SendAdmissionTest,
                         ::testing::Values(Engine::kSqlite, Engine::kPostgres),
                         [](const ::testing::TestParamInfo<Engine>& info) {
                           return info.param == Engine::kSqlite ? "Sqlite"
                                                                : "Postgres";
                         });

TEST_P(SendAdmissionTest, TheSendRateHoldsAcrossServersWithItsRefillAndDelay) {
  std::vector<Chat*> chats = {&StartServer("a"), &StartServer("b"),
                              &StartServer("c")};
  // A burst of 20 spread over three servers (into one session: the
  // session-creation rate is another limit), then refused everywhere.
  absl::StatusOr<SendResult> first = Send(*chats[0], "ana");
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string session = first->session_id;
  for (int i = 1; i < 20; ++i) {
    ASSERT_TRUE(Send(*chats[i % 3], "ana", session).ok()) << "send " << i;
  }
  for (Chat* chat : chats) {
    const absl::Status refused = Send(*chat, "ana", session).status();
    EXPECT_TRUE(IsRateLimited(refused)) << refused;
    EXPECT_EQ(RetryDelayOf(refused), absl::Seconds(3));
  }
  // One token every 60/20 s, whichever server takes it.
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(RetryDelayOf(Send(*chats[1], "ana", session).status()),
            absl::Seconds(1));
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(Send(*chats[2], "ana", session).ok());
  EXPECT_TRUE(IsRateLimited(Send(*chats[0], "ana", session).status()));
  // Another user has a limit of their own.
  EXPECT_TRUE(Send(*chats[0], "bea").ok());
}

TEST_P(SendAdmissionTest, SessionCreationsHoldAcrossServers) {
  std::vector<Chat*> chats = {&StartServer("a"), &StartServer("b"),
                              &StartServer("c")};
  int created = 0;
  for (int i = 0; i < 24; ++i) {
    if (chats[i % 3]->CreateSession("cleo", std::nullopt).ok()) ++created;
  }
  EXPECT_EQ(created, 10);
  // Sends without a session count against the same limit, on any server.
  const absl::Status refused = Send(*chats[1], "cleo").status();
  EXPECT_TRUE(IsRateLimited(refused)) << refused;
  EXPECT_EQ(RetryDelayOf(refused), absl::Seconds(6));
  clock_.Advance(absl::Seconds(6));
  EXPECT_TRUE(Send(*chats[1], "cleo").ok());
  EXPECT_FALSE(chats[2]->CreateSession("cleo", std::nullopt).ok());
}

TEST_P(SendAdmissionTest, ConcurrentSendsHoldAcrossServers) {
  std::vector<Chat*> chats = {&StartServer("a"), &StartServer("b"),
                              &StartServer("c")};
  coach_.HoldUntilConcurrent(1000);  // replies wait until released
  constexpr int kSends = 12;
  std::vector<Started*> sends;
  for (int i = 0; i < kSends; ++i) {
    sends.push_back(&StartSend(*chats[i % 3], "dora"));
  }
  // Two reached the coach; the ten others were refused at once.
  int refused = 0;
  for (Started* send : sends) {
    if (send->done.HasBeenNotified()) {
      EXPECT_TRUE(IsRateLimited(send->outcome.status()))
          << send->outcome.status();
      ++refused;
    }
  }
  EXPECT_EQ(refused, kSends - 2);
  EXPECT_EQ(coach_.request_count(), 2);
  coach_.CancelAll();
  int answered = 0;
  for (Started* send : sends) {
    send->done.WaitForNotification();
    answered += send->outcome.ok() ? 1 : 0;
  }
  EXPECT_EQ(answered, 2);
  // Their reservations settled: the user may send again.
  EXPECT_TRUE(Send(*chats[0], "dora").ok());
}

TEST_P(SendAdmissionTest,
       ACrashedServersSendsStopCountingAtItsRestartOrExpiry) {
  Chat& doomed = StartServer("doomed");
  Chat& other = StartServer("other");
  coach_.HoldUntilConcurrent(1000);
  StartSend(doomed, "eli");
  StartSend(doomed, "eli");
  ASSERT_TRUE(coach_.WaitForRequests(2));
  EXPECT_TRUE(IsRateLimited(Send(other, "eli").status()));

  // "doomed" dies (its two sends never end) and comes back: its new run
  // drops the old run's reservations.
  Chat& restarted = StartServer("doomed");
  StartSend(restarted, "eli");
  StartSend(other, "eli");
  ASSERT_TRUE(coach_.WaitForRequests(4)) << "refused after the restart";
  EXPECT_TRUE(IsRateLimited(Send(other, "eli").status()));

  // Without a restart, reservations expire: the two in flight now count
  // until their TTL has passed.
  clock_.Advance(config_.credit_reservation_ttl);
  StartSend(other, "eli");
  EXPECT_TRUE(coach_.WaitForRequests(5)) << "refused after the expiry";
}

TEST_P(SendAdmissionTest, ASendIsTwoWriteTransactionsWithOrWithoutAKey) {
  Chat& chat = StartServer("a");
  Store& store = StoreOf(0);
  const auto cost = [&](auto&& send) {
    const int64_t before = WriteTransactions(store);
    send();
    return WriteTransactions(store) - before;
  };
  std::string session_id;
  EXPECT_EQ(cost([&] {
              absl::StatusOr<SendResult> sent = Send(chat, "fay");
              ASSERT_TRUE(sent.ok()) << sent.status();
              session_id = sent->session_id;
            }),
            2)
      << "a send starting a session";
  EXPECT_EQ(cost([&] { ASSERT_TRUE(Send(chat, "fay", session_id).ok()); }), 2)
      << "a send into a session";
  EXPECT_EQ(cost([&] { ASSERT_TRUE(Send(chat, "fay", "", "key-1").ok()); }), 2)
      << "a keyed send";
  EXPECT_EQ(cost([&] {
              absl::StatusOr<SendResult> replay =
                  Send(chat, "fay", "", "key-1");
              ASSERT_TRUE(replay.ok()) << replay.status();
              EXPECT_TRUE(replay->replayed);
            }),
            1)
      << "a replay";
  // PREMIUM: reserved and settled all the same, nothing charged.
  Accounts accounts(config_, store, clock_);
  ASSERT_TRUE(accounts.SetPlan("gus", Plan::kPremium).ok());
  EXPECT_EQ(cost([&] { ASSERT_TRUE(Send(chat, "gus", "", "key-2").ok()); }), 2)
      << "a keyed PREMIUM send";
  // Refused sends cost one, and store the key's replayable outcome in it.
  EXPECT_EQ(
      cost([&] {
        EXPECT_EQ(
            ReasonOf(Send(chat, "fay", "no-such-session", "key-3").status()),
            ErrorReason::kSessionNotFound);
      }),
      1)
      << "a refused keyed send";
  EXPECT_EQ(cost([&] {
              const absl::Status replayed =
                  Send(chat, "fay", "no-such-session", "key-3").status();
              EXPECT_EQ(ReasonOf(replayed), ErrorReason::kSessionNotFound);
              EXPECT_TRUE(IsReplayed(replayed));
            }),
            1)
      << "its replay";
}

}  // namespace
}  // namespace coach::testing
