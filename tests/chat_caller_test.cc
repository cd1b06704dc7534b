// A send whose caller stops waiting (deadline passed, cancelled) while the
// coach writes stores nothing and charges nothing: the user never sees the
// reply. Tested at the domain level, where the moment can be chosen exactly.
#include <gtest/gtest.h>

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "server/coach/offline_coach.h"
#include "server/core/accounts.h"
#include "server/core/chat.h"
#include "server/core/errors.h"
#include "storage/sqlite_store.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_clock.h"

namespace coach::testing {
namespace {

// Answers like the offline coach, after running `during_reply` (what happens
// to the caller while the coach writes).
class HookedCoach final : public Coach {
 public:
  explicit HookedCoach(std::function<void()> during_reply)
      : during_reply_(std::move(during_reply)) {}
  void StartReply(CoachRequest request, ReplyCallback done) override {
    last_deadline_ = request.deadline;
    during_reply_();
    offline_.StartReply(std::move(request), std::move(done));
  }
  absl::Time last_deadline() const { return last_deadline_; }

 private:
  std::function<void()> during_reply_;
  OfflineCoach offline_;
  absl::Time last_deadline_;
};

// Chat::SendMessage, waiting for its outcome.
absl::StatusOr<SendResult> Send(Chat& chat, absl::string_view user_id,
                                absl::string_view session_id,
                                absl::string_view message, Caller caller = {}) {
  absl::StatusOr<SendResult> result;
  absl::Notification sent;
  chat.SendMessage(user_id, session_id, message, std::move(caller),
                   [&](absl::StatusOr<SendResult> outcome) {
                     result = std::move(outcome);
                     sent.Notify();
                   });
  sent.WaitForNotification();
  return result;
}

class ChatCallerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = SqliteStore::Open(SqliteOptions{.path = dir_.File("coach.db"),
                                                 .busy_timeout_ms = 1000,
                                                 .reader_connections = 2});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  // Credits of `user` as the domain reports them.
  int32_t Remaining(const std::string& user) {
    Accounts accounts(config_, *store_, clock_);
    auto stats = accounts.GetUserStats(user);
    EXPECT_TRUE(stats.ok());
    return stats.ok() ? stats->remaining_credits.value_or(-1) : -1;
  }

  TempDir dir_;
  CoreConfig config_;
  TestClock clock_{MidNovember2026()};
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(ChatCallerTest, CancelledWhileTheCoachWritesStoresAndChargesNothing) {
  auto cancellation = std::make_shared<Cancellation>();
  HookedCoach coach([&] { cancellation->Cancel(); });
  Chat chat(config_, *store_, coach, clock_);
  const Caller caller{.deadline = absl::InfiniteFuture(),
                      .cancellation = cancellation};

  auto sent = Send(chat, "alice", "", "Bonjour", caller);
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(ReasonOf(sent.status()), ErrorReason::kCancelled);
  auto sessions = chat.ListSessions("alice");
  ASSERT_TRUE(sessions.ok());
  EXPECT_TRUE(sessions->sessions.empty());
  EXPECT_EQ(Remaining("alice"), 5);
  // The hold was given back: five sends still go through.
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(Send(chat, "alice", "", "Encore").ok()) << i;
  }
}

TEST_F(ChatCallerTest, DeadlinePassedWhileTheCoachWritesStoresNothing) {
  // The coach "takes" until past the deadline (real time: deadlines are the
  // transport's, not the business clock's).
  const absl::Time deadline = absl::Now() + absl::Milliseconds(50);
  HookedCoach coach([&] { absl::SleepFor(deadline - absl::Now()); });
  Chat chat(config_, *store_, coach, clock_);

  auto sent = Send(chat, "alice", "", "Bonjour",
                   Caller{.deadline = deadline, .cancellation = nullptr});
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(coach.last_deadline(), deadline);  // the coach was told
  auto sessions = chat.ListSessions("alice");
  ASSERT_TRUE(sessions.ok());
  EXPECT_TRUE(sessions->sessions.empty());
  EXPECT_EQ(Remaining("alice"), 5);
}

TEST_F(ChatCallerTest, ACallerAlreadyGoneNeverReachesTheCoach) {
  int replies = 0;
  HookedCoach coach([&] { ++replies; });
  Chat chat(config_, *store_, coach, clock_);
  auto sent = Send(chat, "alice", "", "Bonjour",
                   Caller{.deadline = absl::Now() - absl::Seconds(1),
                          .cancellation = nullptr});
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(replies, 0);
}

}  // namespace
}  // namespace coach::testing
