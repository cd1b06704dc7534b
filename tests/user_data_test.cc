// Issue 26: the usage ledger and each user's rights over their data, on
// both engines, at the domain level (Chat, Accounts and UserData on a real
// store): usage after sends, kept after a session's deletion and after an
// erasure; a month's usage paged for billing; the export of a user with
// several sessions, in pieces; the erasure (no row, and on SQLite no text
// in the files); the retention purge on the test clock. The RPCs, their
// REST routes and who may call them: user_data_rest_test.cc.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/core/accounts.h"
#include "server/core/chat.h"
#include "server/core/errors.h"
#include "server/core/user_data.h"
#include "tests/support/store_engines.h"
#include "tests/support/test_clock.h"

namespace coach::testing {
namespace {

// Answers at once, as a provider that reports its model and tokens would:
// `model`, 100 prompt tokens and as many completion tokens as characters.
class BilledCoach final : public Coach {
 public:
  void StartReply(CoachRequest request, ReplyCallback done) override {
    const std::string content =
        absl::StrCat("Réponse à : ", request.conversation.back().content);
    done(CoachReply{
        .content = content,
        .model = model,
        .usage = TokenUsage{
            .prompt_tokens = 100,
            .completion_tokens = static_cast<int32_t>(content.size())}});
  }
  std::string model = "gpt-4o-mini-2024-07-18";
};

class UserDataTest : public ::testing::TestWithParam<Engine> {
 protected:
  UserDataTest() : db_(NewTestDatabase(GetParam())) {
    config_.limits.export_page_size = 2;  // several pieces per export
    config_.user_limits.send_rate_per_minute = 1000;
    config_.user_limits.session_create_rate_per_minute = 1000;
    config_.plans.free_monthly_credits = 100;
  }

  void SetUp() override {
    COACH_USE_DATABASE_OR_SKIP(*db_);
    absl::StatusOr<std::unique_ptr<Store>> store = db_->Open(2);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ASSERT_TRUE(store_->BeginRun("test").ok());
    chat_ = std::make_unique<Chat>(config_, *store_, coach_, clock_);
    data_ = std::make_unique<UserData>(config_, *store_, clock_);
  }

  // A send of `user`, into `session_id` (empty: a new one); its session.
  std::string Send(const std::string& user, const std::string& session_id = "",
                   const std::string& message = "Bonjour") {
    absl::StatusOr<SendResult> result;
    absl::Notification sent;
    chat_->SendMessage(user, session_id, message, Caller{},
                       [&](absl::StatusOr<SendResult> outcome) {
                         result = std::move(outcome);
                         sent.Notify();
                       });
    sent.WaitForNotification();
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->session_id : "";
  }

  UsageRecord Usage(const std::string& user, const std::string& month = "") {
    absl::StatusOr<UsageRecord> usage = data_->GetUsage(user, month);
    EXPECT_TRUE(usage.ok()) << usage.status();
    return usage.ok() ? *usage : UsageRecord{};
  }

  // The whole export of `user`, and how many pieces it came in.
  std::string Export(const std::string& user, int* pieces = nullptr) {
    absl::StatusOr<std::unique_ptr<UserExport>> exported = data_->Export(user);
    EXPECT_TRUE(exported.ok()) << exported.status();
    if (!exported.ok()) return "";
    std::string document;
    int count = 0;
    for (;;) {
      absl::StatusOr<std::optional<std::string>> piece = (*exported)->Next();
      EXPECT_TRUE(piece.ok()) << piece.status();
      if (!piece.ok() || !piece->has_value()) break;
      EXPECT_FALSE((*piece)->empty());
      document += **piece;
      ++count;
    }
    if (pieces != nullptr) *pieces = count;
    return document;
  }

  int64_t Count(const std::string& sql) { return db_->Scalar(sql); }

  std::unique_ptr<TestDatabase> db_;
  CoreConfig config_;
  TestClock clock_{MidNovember2026()};
  BilledCoach coach_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Chat> chat_;
  std::unique_ptr<UserData> data_;
};

INSTANTIATE_TEST_SUITE_P(Engines, UserDataTest,
                         ::testing::Values(Engine::kSqlite, Engine::kPostgres),
                         [](const ::testing::TestParamInfo<Engine>& info) {
                           return info.param == Engine::kSqlite ? "Sqlite"
                                                                : "Postgres";
                         });

TEST_P(UserDataTest, UsageCountsRepliesCreditsAndTokensByModelAndMonth) {
  const std::string session = Send("ana", "", "Un");
  Send("ana", session, "Deux");
  coach_.model = "gpt-4o-2024-08-06";
  Send("ana", session, "Trois");
  const UsageRecord usage = Usage("ana");
  EXPECT_EQ(usage.month, "2026-11");
  EXPECT_EQ(usage.replies, 3);
  EXPECT_EQ(usage.credits_charged, 3);
  EXPECT_EQ(usage.prompt_tokens, 300);
  const int64_t completion = 3 * std::string("Réponse à : ").size() + 2 + 4 + 5;
  EXPECT_EQ(usage.completion_tokens, completion);
  ASSERT_EQ(usage.by_model.size(), 2u);
  EXPECT_EQ(usage.by_model[0].model, "gpt-4o-mini-2024-07-18");  // most first
  EXPECT_EQ(usage.by_model[0].replies, 2);
  EXPECT_EQ(usage.by_model[1].model, "gpt-4o-2024-08-06");
  EXPECT_EQ(usage.by_model[1].replies, 1);
  // Another month: its own row; the past one is kept.
  clock_.Advance(absl::Hours(24 * 30));
  Send("ana");
  EXPECT_EQ(Usage("ana").month, "2026-12");
  EXPECT_EQ(Usage("ana").replies, 1);
  EXPECT_EQ(Usage("ana", "2026-11").replies, 3);
  // A month never used, another user: zeros.
  EXPECT_EQ(Usage("ana", "2025-01").replies, 0);
  EXPECT_EQ(Usage("bob").replies, 0);
  // A month that is not one.
  for (const char* bad : {"2026-13", "2026-1", "novembre", "2026-11-01"}) {
    EXPECT_EQ(FieldOf(data_->GetUsage("ana", bad).status()), "month") << bad;
  }
}

TEST_P(UserDataTest, UsageOutlivesDeletedSessionsAndErasure) {
  const std::string session = Send("cleo");
  Send("cleo", session);
  ASSERT_TRUE(chat_->DeleteSession(session, "cleo").ok());
  EXPECT_EQ(Usage("cleo").replies, 2);
  EXPECT_EQ(Usage("cleo").credits_charged, 2);
  Send("cleo");
  ASSERT_TRUE(data_->Erase("cleo").ok());
  EXPECT_EQ(Usage("cleo").replies, 3);
  // Erasing gives no credit back.
  Accounts accounts(config_, *store_, clock_);
  EXPECT_EQ(accounts.GetUserStats("cleo")->remaining_credits, 97);
}

TEST_P(UserDataTest, AMonthsUsageIsPagedByUserForBilling) {
  for (const char* user : {"u3", "u1", "u5", "u2", "u4"}) Send(user);
  std::vector<std::string> seen;
  PageRequest page{.page_size = 2, .page_token = ""};
  for (int pages = 0; pages < 10; ++pages) {
    absl::StatusOr<UsageList> list = data_->ListUsage("2026-11", page);
    ASSERT_TRUE(list.ok()) << list.status();
    for (const UserUsageRecord& user : list->users) {
      seen.push_back(user.user_id);
      EXPECT_EQ(user.usage.replies, 1);
    }
    if (list->next_page_token.empty()) break;
    page.page_token = list->next_page_token;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"u1", "u2", "u3", "u4", "u5"}));
  // A token is for its month only; another month has nobody.
  absl::StatusOr<UsageList> first = data_->ListUsage(
      "2026-11", PageRequest{.page_size = 2, .page_token = ""});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(
      FieldOf(data_
                  ->ListUsage("2026-10",
                              PageRequest{.page_size = 2,
                                          .page_token = first->next_page_token})
                  .status()),
      "pageToken");
  EXPECT_TRUE(data_->ListUsage("2026-10", PageRequest{})->users.empty());
}

TEST_P(UserDataTest, TheExportHoldsEverySessionAndMessageAndComesInPieces) {
  const std::string first = Send("dora", "", "Premier sujet");
  Send("dora", first, "Suite du premier");
  Send("dora", first, "Encore");
  const std::string second = Send("dora", "", "Second sujet");
  Send("eve", "", "Pas à dora");
  int pieces = 0;
  // A clock with nanoseconds (as a real one): the export says microseconds.
  clock_.Advance(absl::Nanoseconds(250123456));
  const std::string text = Export("dora", &pieces);
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << text;
  EXPECT_EQ(doc["userId"], "dora");
  // Written as the API's JSON writes them: timestamps as protobuf prints a
  // Timestamp, at the store's precision (0, 3 or 6 fraction digits), and
  // 64-bit counts as strings (docs/api.md).
  EXPECT_TRUE(
      absl::EndsWith(doc["exportedAt"].get<std::string>(), ":00.250123Z"))
      << doc["exportedAt"];
  EXPECT_EQ(doc["usage"][0]["promptTokens"].type(),
            nlohmann::json::value_t::string)
      << text;
  EXPECT_EQ(doc["usage"][0]["byModel"][0]["completionTokens"].type(),
            nlohmann::json::value_t::string)
      << text;
  EXPECT_EQ(doc["plan"], "FREE");
  EXPECT_EQ(doc["remainingCredits"], 96);
  ASSERT_EQ(doc["usage"].size(), 1u);
  EXPECT_EQ(doc["usage"][0]["replies"], 4);
  ASSERT_EQ(doc["sessions"].size(), 2u);
  int messages = 0;
  for (const auto& session : doc["sessions"]) {
    EXPECT_TRUE(session["id"] == first || session["id"] == second);
    for (const auto& message : session["messages"]) {
      ++messages;
      EXPECT_TRUE(message["role"] == "USER" || message["role"] == "ASSISTANT");
    }
  }
  EXPECT_EQ(messages, 8);
  EXPECT_EQ(text.find("Pas à dora"), std::string::npos);
  // Two sessions a page, two messages a page: more pieces than sessions.
  EXPECT_GT(pieces, 4);
  // A user never seen: their default account, nothing else.
  const nlohmann::json none = nlohmann::json::parse(Export("nobody"));
  EXPECT_EQ(none["plan"], "FREE");
  EXPECT_TRUE(none["sessions"].empty());
  EXPECT_TRUE(none["usage"].empty());
}

TEST_P(UserDataTest, ErasureLeavesNoRowOfTheUsersConversations) {
  const std::string session = Send("fay", "", "Mon secret très intime");
  Send("fay", session);
  {
    absl::StatusOr<SendResult> keyed;
    absl::Notification sent;
    chat_->SendMessage("fay", "", "Avec une clé",
                       Caller{.idempotency_key = std::string("key-1")},
                       [&](absl::StatusOr<SendResult> outcome) {
                         keyed = std::move(outcome);
                         sent.Notify();
                       });
    sent.WaitForNotification();
    ASSERT_TRUE(keyed.ok()) << keyed.status();
  }
  Send("gus", "", "Gardé");
  absl::StatusOr<ErasedData> erased = data_->Erase("fay");
  ASSERT_TRUE(erased.ok()) << erased.status();
  EXPECT_EQ(erased->sessions, 2);
  EXPECT_EQ(erased->messages, 6);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM sessions WHERE user_id = 'fay'"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM messages WHERE content LIKE "
                  "'%secret%'"),
            0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM idempotency_keys WHERE user_id = "
                  "'fay'"),
            0);
  // The others' data, the user's account and usage stay.
  EXPECT_EQ(Count("SELECT COUNT(*) FROM sessions WHERE user_id = 'gus'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM users WHERE id = 'fay'"), 1);
  EXPECT_EQ(Usage("fay").replies, 3);
  // The key's retry runs again (no replay of erased content).
  EXPECT_EQ(nlohmann::json::parse(Export("fay"))["sessions"].size(), 0u);
}

TEST_P(UserDataTest, RetentionDeletesOnlyConversationsPastItsPeriod) {
  config_.session_retention = absl::Hours(24);
  config_.retention_purge_batch = 2;
  for (int i = 0; i < 5; ++i) Send("hal", "", absl::StrCat("Ancien ", i));
  clock_.Advance(absl::Hours(20));
  const std::string recent = Send("hal", "", "Récent");
  clock_.Advance(absl::Hours(5));  // the five are 25 h old, `recent` 5 h
  EXPECT_EQ(*data_->PurgeExpiredSessions(/*batches=*/1), 2);  // one batch
  EXPECT_EQ(*data_->PurgeExpiredSessions(/*batches=*/10), 3);
  EXPECT_EQ(*data_->PurgeExpiredSessions(/*batches=*/10), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM sessions"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM messages"), 2);
  EXPECT_EQ(Usage("hal").replies, 6);
  // Off (0): nothing is ever purged.
  config_.session_retention = absl::ZeroDuration();
  clock_.Advance(absl::Hours(24 * 365));
  EXPECT_EQ(*data_->PurgeExpiredSessions(10), 0);
}

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_P(UserDataTest, ErasedTextIsInNoneOfSqlitesFiles) {
  if (GetParam() != Engine::kSqlite) GTEST_SKIP() << "SQLite's files";
  auto* sqlite = dynamic_cast<SqliteDatabase*>(db_.get());
  ASSERT_NE(sqlite, nullptr);
  const std::string secret = "Mon-secret-de-confiance-tres-intime";
  const std::string session = Send("ivy", "", secret);
  Send("ivy", session, "Encore " + secret);
  Send("jay", "", "Reste");
  const std::string db = sqlite->path();
  // Into the database file itself (as SQLite does on its own every 1000
  // pages): the erasure must clear it there, not only in the WAL.
  {
    SQLite::Database file(db, SQLite::OPEN_READWRITE);
    ASSERT_EQ(file.execAndGet("PRAGMA wal_checkpoint(TRUNCATE)").getInt(), 0);
  }
  ASSERT_NE(FileBytes(db).find(secret), std::string::npos)
      << "the test's text should be in the file before the erasure";
  ASSERT_TRUE(data_->Erase("ivy").ok());
  EXPECT_EQ(FileBytes(db).find(secret), std::string::npos) << "in " << db;
  EXPECT_EQ(FileBytes(db + "-wal").find(secret), std::string::npos)
      << "in the WAL";
  EXPECT_NE(FileBytes(db).find("Reste"), std::string::npos)
      << "another user's text must stay";
}

}  // namespace
}  // namespace coach::testing
