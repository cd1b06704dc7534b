// The Store contract on both engines, one suite parameterised over the
// engine (tests/support/store_engines.h): SQLite on a file in a temporary
// directory, PostgreSQL on a real server (COACH_TEST_DATABASE_URL, set by
// tools/test.sh; unset, those tests skip and say so). The same rules, the
// same answers: atomic transactions, the credit holds and the monthly
// refill, orderings and timestamps, errors as values, several stores
// (servers) on one database. Then what only one engine has: SQLite's file
// format and query plans, PostgreSQL's migration lock. The database is
// inspected through a separate connection, as another process would see it.
#include <SQLiteCpp/SQLiteCpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storage/postgres_schema.h"
#include "storage/postgres_store.h"
#include "storage/sqlite_schema.h"
#include "storage/sqlite_store.h"
#include "tests/support/ports.h"
#include "tests/support/store_calls.h"
#include "tests/support/store_engines.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_clock.h"

namespace coach {
namespace {

// Far above any balance these tests build.
constexpr int32_t kMaxBalance = 1000000;
// CreateSession's max_user_sessions when a test is not about it.
constexpr int kNoMaximum = 0;

using testing::CreateSessionAtMost;
using testing::Engine;
using ::testing::HasSubstr;
using testing::MidNovember2026;
using ::testing::Not;
using testing::PostgresDatabase;
using testing::ReserveCredit;
using testing::SqliteDatabase;
using testing::TempDir;
using testing::TestDatabase;

// The terms of a month with the default allowances (FREE 5, BASIC 50).
CreditTerms TermsFor(const std::string& period, int32_t free_credits = 5,
                     int32_t basic_credits = 50) {
  CreditTerms terms;
  terms.period = period;
  terms.allowance = {{Plan::kFree, free_credits},
                     {Plan::kBasic, basic_credits}};
  terms.new_user_plan = Plan::kFree;
  return terms;
}

SessionRecord MakeSession(const std::string& id, const std::string& user_id,
                          absl::Time at) {
  return SessionRecord{.id = id,
                       .user_id = user_id,
                       .title = "Titre " + id,
                       .last_message = "",
                       .message_count = 0,
                       .created_at = at,
                       .updated_at = at};
}

// A send's worth of data for `session_id`, ids derived from `tag`.
Exchange MakeExchange(const std::string& session_id, const std::string& tag,
                      absl::Time now,
                      std::optional<CreditReservation> reservation) {
  Exchange exchange;
  exchange.session_id = session_id;
  exchange.user_message = MessageRecord{.id = tag + "-user",
                                        .session_id = session_id,
                                        .role = Role::kUser,
                                        .content = "Question " + tag,
                                        .created_at = now,
                                        .model = {},
                                        .usage = std::nullopt};
  exchange.assistant_message = MessageRecord{
      .id = tag + "-assistant",
      .session_id = session_id,
      .role = Role::kAssistant,
      .content = "Réponse " + tag,
      .created_at = now,
      .model = "test-model",
      .usage = TokenUsage{.prompt_tokens = 120, .completion_tokens = 45}};
  exchange.last_message = "Réponse " + tag;
  // The payer's usage (tests without a reservation count none that they
  // check).
  if (reservation.has_value()) exchange.user_id = reservation->user_id;
  exchange.reservation = std::move(reservation);
  exchange.terms = TermsFor("2026-11");
  exchange.now = now;
  return exchange;
}

class StoreTestBase : public ::testing::Test {
 protected:
  explicit StoreTestBase(Engine engine)
      : engine_(engine), db_(testing::NewTestDatabase(engine)) {}

  void SetUp() override {
    COACH_USE_DATABASE_OR_SKIP(*db_);
    Reopen();
  }

  // Closes the store (if open) and opens the same database again.
  void Reopen() {
    store_.reset();
    auto store = db_->Open();
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  int LatestVersion() const {
    return engine_ == Engine::kSqlite ? LatestSchemaVersion()
                                      : LatestPostgresSchemaVersion();
  }

  int64_t Scalar(const std::string& sql) const { return db_->Scalar(sql); }

  int64_t CountRows(const std::string& table) const {
    return Scalar("SELECT COUNT(*) FROM " + table);
  }

  // Ids in these tests hold no quote.
  int64_t CountMessagesOf(const std::string& session_id) const {
    return Scalar("SELECT COUNT(*) FROM messages WHERE session_id = '" +
                  session_id + "'");
  }

  UserRecord User(const std::string& id) {
    auto user = store_->FindUser(id);
    EXPECT_TRUE(user.ok()) << user.status();
    EXPECT_TRUE(user.ok() && user->has_value()) << "no user " << id;
    return user.ok() && user->has_value() ? **user : UserRecord{};
  }

  SessionRecord Session(const std::string& id) {
    auto session = store_->FindSession(id);
    EXPECT_TRUE(session.ok()) << session.status();
    EXPECT_TRUE(session.ok() && session->has_value()) << "no session " << id;
    return session.ok() && session->has_value() ? **session : SessionRecord{};
  }

  void CreateSession(const std::string& id, const std::string& user_id,
                     const CreditTerms& terms = TermsFor("2026-11")) {
    ASSERT_TRUE(CreateSessionAtMost(*store_, MakeSession(id, user_id, now_),
                                    kNoMaximum, terms, now_)
                    .ok());
  }

  std::optional<CreditReservation> Reserve(
      const std::string& user_id, absl::Time at,
      const CreditTerms& terms = TermsFor("2026-11")) {
    auto reservation =
        ReserveCredit(*store_, user_id, terms, at, at + absl::Minutes(5));
    EXPECT_TRUE(reservation.ok()) << reservation.status();
    return reservation.ok() ? *reservation : std::nullopt;
  }

  const Engine engine_;
  const std::unique_ptr<TestDatabase> db_;
  const absl::Time now_ = MidNovember2026();
  std::unique_ptr<Store> store_;
};

// The behaviour every engine shares.
class StoreTest : public StoreTestBase,
                  public ::testing::WithParamInterface<Engine> {
 protected:
  StoreTest() : StoreTestBase(GetParam()) {}
};

INSTANTIATE_TEST_SUITE_P(Engines, StoreTest,
                         ::testing::Values(Engine::kSqlite, Engine::kPostgres),
                         [](const ::testing::TestParamInfo<Engine>& info) {
                           return info.param == Engine::kSqlite ? "Sqlite"
                                                                : "Postgres";
                         });

// SQLite only: its file.
class SqliteStoreTest : public StoreTestBase {
 protected:
  SqliteStoreTest() : StoreTestBase(Engine::kSqlite) {}

  // A separate read-only connection, as another process would see the file.
  SQLite::Database Inspect() const {
    return SQLite::Database(path_, SQLite::OPEN_READONLY);
  }

  // The whole EXPLAIN QUERY PLAN output of `sql`, one detail per line.
  std::string QueryPlan(const std::string& sql) const {
    SQLite::Database db = Inspect();
    SQLite::Statement q(db, "EXPLAIN QUERY PLAN " + sql);
    std::string plan;
    while (q.executeStep()) plan += q.getColumn(3).getString() + "\n";
    return plan;
  }

  SqliteDatabase& sqlite_ = static_cast<SqliteDatabase&>(*db_);
  TempDir& dir_ = sqlite_.dir();
  const std::string& path_ = sqlite_.path();
};

// PostgreSQL only: its server.
class PostgresStoreTest : public StoreTestBase {
 protected:
  PostgresStoreTest() : StoreTestBase(Engine::kPostgres) {}
  PostgresDatabase& pg_ = static_cast<PostgresDatabase&>(*db_);
};

// --- Schema, file format
// ------------------------------------------------------

TEST_P(StoreTest, CreatesTheSchemaAtTheLatestVersion) {
  EXPECT_GE(LatestVersion(), 1);
  EXPECT_EQ(db_->SchemaVersion(), LatestVersion());
  for (const char* table :
       {"users", "sessions", "messages", "credit_reservations"}) {
    EXPECT_EQ(CountRows(table), 0) << table;  // -1: no such table
  }
}

TEST_P(StoreTest, ReopeningKeepsDataAndDoesNotMigrateAgain) {
  CreateSession("s1", "alice");
  const int64_t schema_objects = db_->SchemaObjects();
  Reopen();
  // A second run of migration 1 would have failed on CREATE TABLE; the
  // version and the set of schema objects are unchanged.
  EXPECT_EQ(db_->SchemaVersion(), LatestVersion());
  EXPECT_EQ(db_->SchemaObjects(), schema_objects);
  EXPECT_EQ(Session("s1").user_id, "alice");
  EXPECT_EQ(User("alice").credits, 5);
}

TEST_F(SqliteStoreTest, RefusesAFileFromANewerBuild) {
  store_.reset();
  const std::string newer = dir_.File("newer.db");
  {
    SQLite::Database db(newer, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA user_version = " +
            std::to_string(LatestSchemaVersion() + 1));
  }
  auto store = SqliteStore::Open(SqliteOptions{.path = newer});
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition)
      << store.status();
  // Left as it was: no table created, version untouched.
  SQLite::Database db(newer, SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("PRAGMA user_version").getInt(),
            LatestSchemaVersion() + 1);
  EXPECT_FALSE(db.tableExists("users"));
}

TEST_F(SqliteStoreTest, UsesWriteAheadLogging) {
  SQLite::Database db = Inspect();
  EXPECT_EQ(db.execAndGet("PRAGMA journal_mode").getString(), "wal");
}

// The same SQL shapes as sqlite_store.cc's list queries.
TEST_F(SqliteStoreTest, ListingSessionsUsesTheUserUpdatedIndex) {
  const std::string plan = QueryPlan(
      "SELECT id, user_id, title, last_message, message_count, created_at, "
      "updated_at FROM sessions WHERE user_id = ?1 "
      "ORDER BY updated_at DESC, rowid DESC LIMIT ?2");
  EXPECT_THAT(plan, HasSubstr("INDEX sessions_by_user_updated")) << plan;
  // Newest first comes from scanning the index backwards, not from a sort.
  EXPECT_THAT(plan, Not(HasSubstr("TEMP B-TREE"))) << plan;
  EXPECT_THAT(plan, Not(HasSubstr("SCAN sessions\n"))) << plan;
}

TEST_F(SqliteStoreTest, ListingMessagesUsesTheSessionIndex) {
  const std::string plan = QueryPlan(
      "SELECT id, session_id, role, content, created_at FROM ("
      "  SELECT seq, id, session_id, role, content, created_at FROM messages"
      "  WHERE session_id = ?1 ORDER BY seq DESC LIMIT ?2"
      ") ORDER BY seq ASC");
  EXPECT_THAT(plan, HasSubstr("INDEX messages_by_session")) << plan;
  EXPECT_THAT(plan, Not(HasSubstr("SCAN messages\n"))) << plan;
}

TEST_F(SqliteStoreTest, SessionPagesUseTheUserUpdatedIndexWithoutASort) {
  const std::string plan = QueryPlan(
      "SELECT id, user_id, title, last_message, message_count, created_at, "
      "updated_at, rowid FROM sessions WHERE user_id = ?1 "
      "AND (updated_at, rowid) < (?2, ?3) "
      "ORDER BY updated_at DESC, rowid DESC LIMIT ?4");
  EXPECT_THAT(plan, HasSubstr("INDEX sessions_by_user_updated")) << plan;
  EXPECT_THAT(plan, Not(HasSubstr("TEMP B-TREE"))) << plan;
}

TEST_F(SqliteStoreTest, MessagePagesUseTheSessionIndex) {
  const std::string plan = QueryPlan(
      "SELECT id, session_id, role, content, created_at, model, "
      "prompt_tokens, completion_tokens, seq FROM messages "
      "WHERE session_id = ?1 AND seq > ?2 ORDER BY seq ASC LIMIT ?3");
  EXPECT_THAT(plan, HasSubstr("INDEX messages_by_session")) << plan;
  EXPECT_THAT(plan, Not(HasSubstr("TEMP B-TREE"))) << plan;
}

TEST_F(SqliteStoreTest, CountingActivityUsesAnIndex) {
  const std::string plan = QueryPlan(
      "SELECT COUNT(*), COALESCE(SUM(message_count), 0) FROM sessions "
      "WHERE user_id = ?1");
  EXPECT_THAT(plan, HasSubstr("INDEX sessions_by_user_updated")) << plan;
}

TEST_F(SqliteStoreTest, FindingUserActivityUsesIndexes) {
  // FindUserActivity's statement: the totals by the index, the user by its
  // key; neither table scanned.
  const std::string plan = QueryPlan(
      "SELECT u.id, u.plan, u.credits, u.credit_period, u.created_at, "
      "a.sessions, a.messages FROM (SELECT COUNT(*) AS sessions, "
      "COALESCE(SUM(message_count), 0) AS messages FROM sessions WHERE "
      "user_id = ?1) AS a LEFT JOIN users AS u ON u.id = ?1");
  EXPECT_THAT(plan, HasSubstr("SEARCH sessions USING INDEX "
                              "sessions_by_user_updated"))
      << plan;
  EXPECT_THAT(plan, HasSubstr("SEARCH u USING INDEX")) << plan;
}

// --- Errors are values
// ---------------------------------------------------------

TEST_F(SqliteStoreTest, OpenFailuresAreStatusesNotExceptions) {
  absl::StatusOr<std::unique_ptr<SqliteStore>> missing_dir;
  EXPECT_NO_THROW(missing_dir = SqliteStore::Open(
                      SqliteOptions{.path = dir_.File("nope/coach.db")}));
  EXPECT_FALSE(missing_dir.ok());

  absl::StatusOr<std::unique_ptr<SqliteStore>> directory;
  EXPECT_NO_THROW(directory =
                      SqliteStore::Open(SqliteOptions{.path = dir_.path()}));
  EXPECT_FALSE(directory.ok());

  auto empty = SqliteStore::Open(SqliteOptions{.path = ""});
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);

  const std::string not_a_database = dir_.File("notes.txt");
  std::ofstream(not_a_database) << "Ceci n'est pas une base de données.\n"
                                << std::string(4096, 'x');
  absl::StatusOr<std::unique_ptr<SqliteStore>> garbage;
  EXPECT_NO_THROW(garbage =
                      SqliteStore::Open(SqliteOptions{.path = not_a_database}));
  EXPECT_FALSE(garbage.ok());
}

TEST_P(StoreTest, AFailedWriteIsAStatusAndChangesNothing) {
  CreateSession("s1", "una");
  // A duplicate primary key: the backend throws, the store returns.
  absl::Status duplicate;
  EXPECT_NO_THROW(
      duplicate = CreateSessionAtMost(*store_, MakeSession("s1", "una", now_),
                                      kNoMaximum, TermsFor("2026-11"), now_));
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kInternal) << duplicate;

  // credits >= 0 is a constraint of the table: the whole update is undone.
  absl::StatusOr<UserRecord> negative;
  EXPECT_NO_THROW(negative = store_->AddCredits("una", -100, kMaxBalance,
                                                TermsFor("2026-11"), now_));
  EXPECT_FALSE(negative.ok());
  EXPECT_EQ(User("una").credits, 5);
  // The store is still usable afterwards.
  EXPECT_TRUE(Reserve("una", now_).has_value());
}

// --- Users
// ----------------------------------------------------------------------

TEST_P(StoreTest, ReadsNeverCreateAUser) {
  auto user = store_->FindUser("ghost");
  ASSERT_TRUE(user.ok());
  EXPECT_FALSE(user->has_value());
  auto totals = store_->CountUserActivity("ghost");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->sessions, 0);
  EXPECT_EQ(totals->messages, 0);
  auto activity = store_->FindUserActivity("ghost");
  ASSERT_TRUE(activity.ok()) << activity.status();
  EXPECT_FALSE(activity->user.has_value());
  EXPECT_EQ(activity->totals.sessions, 0);
  EXPECT_EQ(activity->totals.messages, 0);
  auto sessions = store_->ListSessions("ghost", 10);
  ASSERT_TRUE(sessions.ok());
  EXPECT_TRUE(sessions->empty());
  auto session = store_->FindSession("nowhere");
  ASSERT_TRUE(session.ok());
  EXPECT_FALSE(session->has_value());
  EXPECT_EQ(CountRows("users"), 0);
}

TEST_P(StoreTest, AWriteCreatesTheUserOnTheNewUserPlan) {
  CreateSession("s1", "bob");
  const UserRecord bob = User("bob");
  EXPECT_EQ(bob.plan, Plan::kFree);
  EXPECT_EQ(bob.status, UserStatus::kActive);
  EXPECT_EQ(bob.credits, 5);
  EXPECT_EQ(bob.credit_period, "2026-11");
  EXPECT_EQ(bob.created_at, now_);
}

TEST_P(StoreTest, FindUserActivityReadsTheUserAndItsTotalsTogether) {
  CreateSession("s1", "dina");
  CreateSession("s2", "dina");
  CreateSession("other", "omar");
  for (const std::string tag : {"a", "b"}) {
    ASSERT_TRUE(
        store_->CommitExchange(MakeExchange("s1", tag, now_, std::nullopt))
            .ok());
  }
  ASSERT_TRUE(
      store_->CommitExchange(MakeExchange("other", "c", now_, std::nullopt))
          .ok());
  ASSERT_TRUE(
      store_->SetPlan("dina", Plan::kBasic, TermsFor("2026-11"), now_).ok());

  auto activity = store_->FindUserActivity("dina");
  ASSERT_TRUE(activity.ok()) << activity.status();
  ASSERT_TRUE(activity->user.has_value());
  const UserRecord dina = User("dina");
  EXPECT_EQ(activity->user->id, "dina");
  EXPECT_EQ(activity->user->plan, Plan::kBasic);
  EXPECT_EQ(activity->user->credits, dina.credits);
  EXPECT_EQ(activity->user->credit_period, "2026-11");
  EXPECT_EQ(activity->user->created_at, dina.created_at);
  // The same totals as CountUserActivity: 2 sessions, 2 exchanges of two
  // messages each; omar's are not counted.
  auto totals = store_->CountUserActivity("dina");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(activity->totals.sessions, 2);
  EXPECT_EQ(activity->totals.messages, 4);
  EXPECT_EQ(activity->totals.sessions, totals->sessions);
  EXPECT_EQ(activity->totals.messages, totals->messages);

  // A user with a row but no session.
  ASSERT_TRUE(
      store_->SetPlan("pia", Plan::kPremium, TermsFor("2026-11"), now_).ok());
  auto pia = store_->FindUserActivity("pia");
  ASSERT_TRUE(pia.ok()) << pia.status();
  ASSERT_TRUE(pia->user.has_value());
  EXPECT_EQ(pia->user->plan, Plan::kPremium);
  EXPECT_EQ(pia->totals.sessions, 0);
  EXPECT_EQ(pia->totals.messages, 0);
}

TEST_P(StoreTest, SetPlanGivesThePlansFullAllowance) {
  const CreditTerms terms = TermsFor("2026-11");
  auto basic = store_->SetPlan("carol", Plan::kBasic, terms, now_);
  ASSERT_TRUE(basic.ok()) << basic.status();
  EXPECT_EQ(basic->plan, Plan::kBasic);
  EXPECT_EQ(basic->credits, 50);
  EXPECT_EQ(User("carol").credits, 50);

  auto premium = store_->SetPlan("carol", Plan::kPremium, terms, now_);
  ASSERT_TRUE(premium.ok());
  EXPECT_EQ(User("carol").plan, Plan::kPremium);

  auto free = store_->SetPlan("carol", Plan::kFree, terms, now_);
  ASSERT_TRUE(free.ok());
  EXPECT_EQ(free->credits, 5);
  EXPECT_EQ(User("carol").plan, Plan::kFree);
  EXPECT_EQ(User("carol").credits, 5);
}

TEST_P(StoreTest, AddCreditsAddsToThisMonthsBalance) {
  auto user =
      store_->AddCredits("dave", 3, kMaxBalance, TermsFor("2026-11"), now_);
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->credits, 8);
  EXPECT_EQ(User("dave").credits, 8);
}

TEST_P(StoreTest, AddCreditsNeverPassesTheMaximumBalance) {
  // Up to the maximum exactly: allowed.
  auto user = store_->AddCredits("gil", 15, /*max_balance=*/20,
                                 TermsFor("2026-11"), now_);
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->credits, 20);
  // One more: refused, nothing changed.
  user = store_->AddCredits("gil", 1, 20, TermsFor("2026-11"), now_);
  EXPECT_EQ(user.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(User("gil").credits, 20);
  // A sum past 32 bits is refused, not wrapped around.
  constexpr int32_t kMax32 = std::numeric_limits<int32_t>::max();
  user = store_->AddCredits("gil", kMax32, kMax32, TermsFor("2026-11"), now_);
  EXPECT_EQ(user.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(User("gil").credits, 20);
}

TEST_P(StoreTest, ARowFromLastMonthIsRefilledFirst) {
  // Created in October with nothing left.
  CreateSession("s1", "erin", TermsFor("2026-10", /*free_credits=*/0));
  EXPECT_EQ(User("erin").credits, 0);
  EXPECT_EQ(User("erin").credit_period, "2026-10");

  // November: refilled before the reservation is decided.
  EXPECT_TRUE(Reserve("erin", now_, TermsFor("2026-11")).has_value());
  EXPECT_EQ(User("erin").credits, 5);
  EXPECT_EQ(User("erin").credit_period, "2026-11");
}

TEST_P(StoreTest, AddCreditsRefillsABasicRowFromLastMonthFirst) {
  ASSERT_TRUE(
      store_->SetPlan("fay", Plan::kBasic, TermsFor("2026-10", 5, 0), now_)
          .ok());
  EXPECT_EQ(User("fay").credits, 0);
  auto user =
      store_->AddCredits("fay", 2, kMaxBalance, TermsFor("2026-11"), now_);
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->credits, 52);
  EXPECT_EQ(User("fay").credit_period, "2026-11");
}

TEST_P(StoreTest, InjectionLookingIdsAreStoredVerbatim) {
  const std::string user_id = "x'); DROP TABLE users;--";
  const std::string session_id = "s' OR '1'='1";
  SessionRecord session = MakeSession(session_id, user_id, now_);
  session.title = "\"; DELETE FROM sessions; --";
  ASSERT_TRUE(CreateSessionAtMost(*store_, session, kNoMaximum,
                                  TermsFor("2026-11"), now_)
                  .ok());

  EXPECT_EQ(User(user_id).id, user_id);
  const SessionRecord found = Session(session_id);
  EXPECT_EQ(found.user_id, user_id);
  EXPECT_EQ(found.title, session.title);
  auto listed = store_->ListSessions(user_id, 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id, session_id);
  // A near miss matches nothing: the quote is data, not SQL.
  auto other = store_->FindSession("s");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
  EXPECT_EQ(CountRows("users"), 1);
  EXPECT_EQ(CountRows("sessions"), 1);
}

// --- Sessions
// --------------------------------------------------------------------

TEST_P(StoreTest, ListsSessionsNewestUpdatedFirstWithinTheLimit) {
  for (int i = 0; i < 3; ++i) {
    SessionRecord s =
        MakeSession("s" + std::to_string(i), "gus", now_ + absl::Minutes(i));
    ASSERT_TRUE(
        CreateSessionAtMost(*store_, s, kNoMaximum, TermsFor("2026-11"), now_)
            .ok());
  }
  // Renaming bumps updated_at: s0 becomes the newest.
  ASSERT_TRUE(
      store_->RenameSession("s0", "Renommée", now_ + absl::Hours(1)).ok());
  auto sessions = store_->ListSessions("gus", 2);
  ASSERT_TRUE(sessions.ok());
  ASSERT_EQ(sessions->size(), 2u);
  EXPECT_EQ((*sessions)[0].id, "s0");
  EXPECT_EQ((*sessions)[0].title, "Renommée");
  EXPECT_EQ((*sessions)[1].id, "s2");
}

// --- Pages (keyset pagination)
// ------------------------------------------------

// Every session of `user_id` page by page, calling `between` after each page.
std::vector<std::string> WalkSessions(Store& store, const std::string& user_id,
                                      int page_size, int* pages,
                                      const std::function<void()>& between) {
  std::vector<std::string> seen;
  std::optional<SessionKey> after;
  *pages = 0;
  for (;;) {
    auto page = store.ListSessionsPage(user_id, after, page_size);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) return seen;
    ++*pages;
    EXPECT_LE(page->sessions.size(), static_cast<size_t>(page_size));
    for (const SessionRecord& s : page->sessions) seen.push_back(s.id);
    if (!page->next.has_value()) return seen;
    EXPECT_EQ(page->sessions.size(), static_cast<size_t>(page_size));
    // The key names the last session returned.
    EXPECT_EQ(page->next->updated_at, page->sessions.back().updated_at);
    after = page->next;
    between();
  }
}

TEST_P(StoreTest, SessionPagesWalkTheListInItsOrderWhileSessionsAreCreated) {
  // Seven sessions, three of them at the very same instant (ties are broken
  // by insertion order, newest first, as ListSessions does).
  const std::vector<int> minutes = {0, 1, 1, 1, 2, 3, 5};
  for (size_t i = 0; i < minutes.size(); ++i) {
    ASSERT_TRUE(
        CreateSessionAtMost(*store_,
                            MakeSession("s" + std::to_string(i), "pia",
                                        now_ + absl::Minutes(minutes[i])),
                            kNoMaximum, TermsFor("2026-11"), now_)
            .ok());
  }
  CreateSession("other", "quentin");
  auto unpaged = store_->ListSessions("pia", 100);
  ASSERT_TRUE(unpaged.ok());
  std::vector<std::string> expected;
  for (const SessionRecord& s : *unpaged) expected.push_back(s.id);
  ASSERT_EQ(expected, (std::vector<std::string>{"s6", "s5", "s4", "s3", "s2",
                                                "s1", "s0"}));

  for (int size : {1, 2, 3, 7, 50}) {
    int pages = 0;
    int created = 0;
    const std::vector<std::string> seen =
        WalkSessions(*store_, "pia", size, &pages, [&] {
          // A new session between pages sorts first: the walk is past it.
          ASSERT_TRUE(CreateSessionAtMost(
                          *store_,
                          MakeSession(absl::StrCat("new", size, "-", created++),
                                      "pia", now_ + absl::Hours(1)),
                          kNoMaximum, TermsFor("2026-11"), now_)
                          .ok());
        });
    EXPECT_EQ(seen, expected) << "page size " << size;
    EXPECT_EQ(pages, (7 + size - 1) / size) << "page size " << size;
    // Clean up the sessions the walk created, for the next size.
    for (int i = 0; i < created; ++i) {
      ASSERT_TRUE(
          store_->DeleteSession(absl::StrCat("new", size, "-", i)).ok());
    }
  }

  auto none = store_->ListSessionsPage("nobody", std::nullopt, 10);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->sessions.empty());
  EXPECT_FALSE(none->next.has_value());
}

TEST_P(StoreTest, MessagePagesGoFromTheOldestAndSeeNewMessagesAtTheEnd) {
  CreateSession("s1", "rita");
  CreateSession("s2", "rita");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store_
                    ->CommitExchange(MakeExchange("s1", "a" + std::to_string(i),
                                                  now_, std::nullopt))
                    .ok());
    ASSERT_TRUE(store_
                    ->CommitExchange(MakeExchange("s2", "b" + std::to_string(i),
                                                  now_, std::nullopt))
                    .ok());
  }
  std::vector<std::string> seen;
  std::optional<int64_t> after;
  int pages = 0;
  for (;;) {
    auto page = store_->ListMessagesPage("s1", after, 4);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    for (const MessageRecord& m : page->messages) {
      EXPECT_EQ(m.session_id, "s1");
      seen.push_back(m.id);
    }
    if (pages == 1) {
      // Read back whole: the usage of a reply survives the page query.
      ASSERT_EQ(page->messages.size(), 4u);
      ASSERT_TRUE(page->messages[1].usage.has_value());
      EXPECT_EQ(page->messages[1].usage->completion_tokens, 45);
      EXPECT_EQ(page->messages[1].model, "test-model");
      // Appended during the walk: seen at its end.
      ASSERT_TRUE(
          store_->CommitExchange(MakeExchange("s1", "late", now_, std::nullopt))
              .ok());
    }
    if (!page->next.has_value()) break;
    after = page->next;
  }
  EXPECT_EQ(seen,
            (std::vector<std::string>{"a0-user", "a0-assistant", "a1-user",
                                      "a1-assistant", "a2-user", "a2-assistant",
                                      "late-user", "late-assistant"}));
  EXPECT_EQ(pages, 2);
  auto none = store_->ListMessagesPage("nowhere", std::nullopt, 4);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->messages.empty());
  EXPECT_FALSE(none->next.has_value());
}

TEST_P(StoreTest, RenamingAMissingSessionIsNotFound) {
  EXPECT_EQ(store_->RenameSession("nowhere", "t", now_).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StoreTest, CreateSessionStopsAtTheUsersMaximum) {
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(CreateSessionAtMost(
                    *store_, MakeSession("s" + std::to_string(i), "kim", now_),
                    /*max_user_sessions=*/2, TermsFor("2026-11"), now_)
                    .ok());
  }
  const absl::Status third = CreateSessionAtMost(
      *store_, MakeSession("s2", "kim", now_), 2, TermsFor("2026-11"), now_);
  EXPECT_EQ(third.code(), absl::StatusCode::kFailedPrecondition) << third;
  EXPECT_FALSE(store_->FindSession("s2")->has_value());
  // Another user's sessions do not count.
  EXPECT_TRUE(CreateSessionAtMost(*store_, MakeSession("t0", "lou", now_), 2,
                                  TermsFor("2026-11"), now_)
                  .ok());
  // A send that starts a session obeys the same maximum, storing nothing.
  Exchange exchange = MakeExchange("s3", "x", now_, std::nullopt);
  exchange.new_session = MakeSession("s3", "kim", now_);
  exchange.max_user_sessions = 2;
  EXPECT_EQ(store_->CommitExchange(exchange).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(store_->FindSession("s3")->has_value());
  EXPECT_EQ(CountMessagesOf("s3"), 0);
  // Deleting one makes room again.
  ASSERT_TRUE(store_->DeleteSession("s0").ok());
  EXPECT_TRUE(store_->CommitExchange(exchange).ok());
}

TEST_P(StoreTest, RacingCreatesAtTheMaximumLetExactlyOneThrough) {
  constexpr int kMax = 5;
  for (int i = 0; i < kMax - 1; ++i) {
    CreateSession("s" + std::to_string(i), "max");
  }
  constexpr int kRacers = 8;
  std::atomic<int> created{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      const absl::Status status = CreateSessionAtMost(
          *store_, MakeSession("r" + std::to_string(i), "max", now_), kMax,
          TermsFor("2026-11"), now_);
      if (status.ok()) ++created;
      if (status.code() == absl::StatusCode::kFailedPrecondition) ++refused;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(refused.load(), kRacers - 1);
  EXPECT_EQ(store_->CountUserActivity("max")->sessions, kMax);
}

TEST_P(StoreTest, DeleteSessionRemovesItsMessagesOnly) {
  CreateSession("doomed", "hal");
  CreateSession("kept", "hal");
  ASSERT_TRUE(
      store_->CommitExchange(MakeExchange("doomed", "a", now_, std::nullopt))
          .ok());
  ASSERT_TRUE(
      store_->CommitExchange(MakeExchange("kept", "b", now_, std::nullopt))
          .ok());
  ASSERT_EQ(CountMessagesOf("doomed"), 2);

  EXPECT_TRUE(store_->DeleteSession("doomed").ok());
  EXPECT_EQ(CountMessagesOf("doomed"), 0);
  EXPECT_FALSE(store_->FindSession("doomed")->has_value());
  EXPECT_EQ(CountMessagesOf("kept"), 2);

  EXPECT_EQ(store_->DeleteSession("doomed").code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StoreTest, ListRecentMessagesReturnsTheNewestOldestFirst) {
  CreateSession("s1", "ivy");
  for (const char* tag : {"m1", "m2", "m3"}) {
    ASSERT_TRUE(
        store_->CommitExchange(MakeExchange("s1", tag, now_, std::nullopt))
            .ok());
  }
  auto messages = store_->ListRecentMessages("s1", 3);
  ASSERT_TRUE(messages.ok());
  ASSERT_EQ(messages->size(), 3u);
  EXPECT_EQ((*messages)[0].id, "m2-assistant");
  EXPECT_EQ((*messages)[1].id, "m3-user");
  EXPECT_EQ((*messages)[1].role, Role::kUser);
  EXPECT_EQ((*messages)[2].id, "m3-assistant");
  EXPECT_EQ((*messages)[2].role, Role::kAssistant);
}

// --- Credit reservations
// ----------------------------------------------------------

TEST_P(StoreTest, ReservesExactlyTheCreditsLeft) {
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(Reserve("jay", now_).has_value()) << "reservation " << i;
  }
  EXPECT_FALSE(Reserve("jay", now_).has_value());
  // Reserving holds credits, it does not spend them.
  EXPECT_EQ(User("jay").credits, 5);
  EXPECT_EQ(CountRows("credit_reservations"), 5);
}

TEST_P(StoreTest, ReleaseCreditFreesOneAndIsIdempotent) {
  std::optional<CreditReservation> first = Reserve("kim", now_);
  ASSERT_TRUE(first.has_value());
  for (int i = 1; i < 5; ++i) ASSERT_TRUE(Reserve("kim", now_).has_value());
  ASSERT_FALSE(Reserve("kim", now_).has_value());

  EXPECT_TRUE(store_->ReleaseCredit(*first).ok());
  EXPECT_TRUE(store_->ReleaseCredit(*first).ok());  // Idempotent.
  EXPECT_TRUE(Reserve("kim", now_).has_value());
  EXPECT_FALSE(Reserve("kim", now_).has_value());
}

TEST_P(StoreTest, AnExpiredReservationNoLongerHoldsACredit) {
  // Five reservations that expire at now + 1 minute.
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(ReserveCredit(*store_, "lea", TermsFor("2026-11"), now_,
                              now_ + absl::Minutes(1))
                    ->has_value());
  }
  EXPECT_FALSE(Reserve("lea", now_ + absl::Seconds(59)).has_value());
  // expires_at <= now: expired, exactly at the boundary.
  EXPECT_TRUE(Reserve("lea", now_ + absl::Minutes(1)).has_value());
}

// A send that outlived its hold (expired, then swept by the user's next
// admission) gives it back late, or settles it in its commit: that must not
// touch the next send's hold. (On SQLite the id was a plain rowid: the sweep
// deleted the highest id and the insert in the same transaction took it
// again, so the late DELETE ... WHERE id = ? removed the other send's hold.)
TEST_P(StoreTest, AHoldGivenBackAfterItExpiredLeavesTheNextSendsHold) {
  // Max's first send holds a credit until now + 1 minute, and outlives it.
  absl::StatusOr<std::optional<CreditReservation>> late = ReserveCredit(
      *store_, "max", TermsFor("2026-11"), now_, now_ + absl::Minutes(1));
  ASSERT_TRUE(late.ok() && late->has_value());
  // His next send, after that expiry, is admitted (the expired hold swept).
  const absl::Time later = now_ + absl::Minutes(2);
  std::optional<CreditReservation> next = Reserve("max", later);
  ASSERT_TRUE(next.has_value());
  EXPECT_NE(next->id, (*late)->id) << "a reservation id was reused";
  // The first send ends now: its hold (long expired) is given back.
  ASSERT_TRUE(store_->ReleaseCredit(**late).ok());
  // The second is still in flight and holds one of Max's 5 credits.
  EXPECT_EQ(CountRows("credit_reservations"), 1);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Reserve("max", later).has_value());
  EXPECT_FALSE(Reserve("max", later).has_value())
      << "a sixth send got past five credits";
}

// Issue 23: what AdmitSend reads under the user's lock, and what it writes.
TEST_P(StoreTest, AnAdmissionReadsLiveSendsSessionsAndTheNamedSession) {
  CreateSession("s1", "lea");
  CreateSession("s2", "lea");
  CreateSession("theirs", "other");
  // Two live reservations, one of them from another server's run, and one
  // expired.
  ASSERT_TRUE(Reserve("lea", now_).has_value());
  {
    auto other = db_->Open();
    ASSERT_TRUE(other.ok()) << other.status();
    ASSERT_TRUE((*other)->BeginRun("host-b").ok());
    ASSERT_TRUE(ReserveCredit(**other, "lea", TermsFor("2026-11"), now_,
                              now_ + absl::Minutes(5))
                    ->has_value());
  }
  ASSERT_TRUE(ReserveCredit(*store_, "lea", TermsFor("2026-11"),
                            now_ - absl::Minutes(10), now_)
                  ->has_value());
  const auto admit = [&](const std::string& session_id) {
    AdmissionState seen;
    auto admitted = store_->AdmitSend(
        SendAdmissionRequest{.user_id = "lea",
                             .session_id = session_id,
                             .terms = TermsFor("2026-11"),
                             .now = now_,
                             .expires_at = now_ + absl::Minutes(5),
                             .claim = std::nullopt},
        [&](const AdmissionState& state) {
          seen = state;
          return Admission{.rates = state.rates,
                           .admitted = false,
                           .key_response = std::nullopt};
        });
    EXPECT_TRUE(admitted.ok()) << admitted.status();
    EXPECT_FALSE(admitted.ok() && admitted->reservation.has_value());
    return seen;
  };
  AdmissionState into_s1 = admit("s1");
  EXPECT_EQ(into_s1.user.id, "lea");
  EXPECT_EQ(into_s1.user.credits, 5);
  EXPECT_EQ(into_s1.live_sends, 2);
  ASSERT_TRUE(into_s1.session.has_value());
  EXPECT_EQ(into_s1.session->id, "s1");
  EXPECT_EQ(into_s1.session->user_id, "lea");
  // Sessions are counted for a send that creates one, not into one.
  EXPECT_EQ(into_s1.sessions, 0);
  AdmissionState creating = admit("");
  EXPECT_EQ(creating.sessions, 2);
  EXPECT_FALSE(creating.session.has_value());
  // Another user's session is read as it is: ownership is the domain's.
  EXPECT_EQ(admit("theirs").session->user_id, "other");
  EXPECT_FALSE(admit("missing").session.has_value());
  // Refused: nothing reserved.
  EXPECT_EQ(CountRows("credit_reservations"), 3);
}

TEST_P(StoreTest, AnAdmissionKeepsTheRateStateItIsGivenForTheNextOne) {
  const RateState first{.send_tat = now_ + absl::Seconds(3),
                        .session_tat = now_ + absl::Seconds(6)};
  const auto admit = [&](const RateState& write, bool admitted) {
    RateState seen;
    auto result = store_->AdmitSend(
        SendAdmissionRequest{.user_id = "rae",
                             .session_id = "",
                             .terms = TermsFor("2026-11"),
                             .now = now_,
                             .expires_at = now_ + absl::Minutes(5),
                             .claim = std::nullopt},
        [&](const AdmissionState& state) {
          seen = state.rates;
          return Admission{.rates = write,
                           .admitted = admitted,
                           .key_response = std::nullopt};
        });
    EXPECT_TRUE(result.ok()) << result.status();
    return seen;
  };
  // A new user's limits were never used.
  RateState seen = admit(first, /*admitted=*/true);
  EXPECT_EQ(seen.send_tat, absl::UnixEpoch());
  EXPECT_EQ(seen.session_tat, absl::UnixEpoch());
  // Written when admitted, and when refused, and seen by another server.
  const RateState second{.send_tat = now_ + absl::Seconds(9),
                         .session_tat = now_ + absl::Seconds(12)};
  seen = admit(second, /*admitted=*/false);
  EXPECT_EQ(seen.send_tat, first.send_tat);
  EXPECT_EQ(seen.session_tat, first.session_tat);
  auto other = db_->Open();
  ASSERT_TRUE(other.ok()) << other.status();
  auto created = (*other)->CreateSession(
      MakeSession("s1", "rae", now_), TermsFor("2026-11"), now_,
      [&](const AdmissionState& state) {
        seen = state.rates;
        return Admission{.rates = state.rates,
                         .admitted = true,
                         .key_response = std::nullopt};
      });
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(*created);
  EXPECT_EQ(seen.send_tat, second.send_tat);
  EXPECT_EQ(seen.session_tat, second.session_tat);
}

TEST_P(StoreTest, ConcurrentReservationsNeverExceedTheCredits) {
  ASSERT_TRUE(
      store_->SetPlan("max", Plan::kBasic, TermsFor("2026-11"), now_).ok());
  std::atomic<int> granted = 0;
  std::atomic<int> errors = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto r = ReserveCredit(*store_, "max", TermsFor("2026-11"), now_,
                               now_ + absl::Minutes(5));
        if (!r.ok()) {
          ++errors;
        } else if (r->has_value()) {
          ++granted;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(granted.load(), 50);
  EXPECT_EQ(CountRows("credit_reservations"), 50);
}

// --- CommitExchange
// --------------------------------------------------------------

TEST_P(StoreTest, CommitExchangeChargesOneCreditAndStoresBothMessages) {
  CreateSession("s1", "ned");
  std::optional<CreditReservation> reservation = Reserve("ned", now_);
  ASSERT_TRUE(reservation.has_value());
  const absl::Time later = now_ + absl::Seconds(3);

  auto result =
      store_->CommitExchange(MakeExchange("s1", "x", later, reservation));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->remaining_credits, 4);
  EXPECT_EQ(User("ned").credits, 4);
  EXPECT_EQ(CountRows("credit_reservations"), 0);
  EXPECT_EQ(CountMessagesOf("s1"), 2);

  const SessionRecord session = Session("s1");
  EXPECT_EQ(session.message_count, 2);
  EXPECT_EQ(session.last_message, "Réponse x");
  EXPECT_EQ(session.updated_at, later);
  EXPECT_EQ(session.created_at, now_);

  ASSERT_TRUE(store_
                  ->CommitExchange(
                      MakeExchange("s1", "y", later, Reserve("ned", later)))
                  .ok());
  EXPECT_EQ(Session("s1").message_count, 4);
  EXPECT_EQ(Session("s1").last_message, "Réponse y");
  EXPECT_EQ(User("ned").credits, 3);
}

TEST_P(StoreTest, CommitExchangeCreatesANewSessionInTheSameTransaction) {
  std::optional<CreditReservation> reservation = Reserve("olga", now_);
  Exchange exchange = MakeExchange("fresh", "z", now_, reservation);
  exchange.new_session = MakeSession("fresh", "olga", now_);
  auto result = store_->CommitExchange(exchange);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(Session("fresh").user_id, "olga");
  EXPECT_EQ(Session("fresh").message_count, 2);
  EXPECT_EQ(CountMessagesOf("fresh"), 2);
}

TEST_P(StoreTest, CommitExchangeWithoutReservationChargesNothing) {
  ASSERT_TRUE(
      store_->SetPlan("pia", Plan::kPremium, TermsFor("2026-11"), now_).ok());
  CreateSession("s1", "pia");
  auto result =
      store_->CommitExchange(MakeExchange("s1", "p", now_, std::nullopt));
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE(result->remaining_credits.has_value());
  EXPECT_EQ(CountMessagesOf("s1"), 2);
}

TEST_P(StoreTest, CommitExchangeWithNoCreditLeftStoresNothing) {
  // One credit a month: reserved, then charged by a first exchange.
  const CreditTerms one_credit = TermsFor("2026-11", /*free_credits=*/1);
  CreateSession("s1", "quin", one_credit);
  std::optional<CreditReservation> reservation =
      Reserve("quin", now_, one_credit);
  ASSERT_TRUE(reservation.has_value());
  Exchange first = MakeExchange("s1", "ok", now_, reservation);
  first.terms = one_credit;
  auto charged = store_->CommitExchange(first);
  ASSERT_TRUE(charged.ok()) << charged.status();
  EXPECT_EQ(charged->remaining_credits, 0);
  const SessionRecord before = Session("s1");

  // The same reservation again (say, replayed) finds 0 credits: refused,
  // and neither the messages, the summary nor the new session are stored.
  Exchange again =
      MakeExchange("s2", "late", now_ + absl::Minutes(1), reservation);
  again.terms = one_credit;
  again.new_session = MakeSession("s2", "quin", now_);
  auto refused = store_->CommitExchange(again);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted)
      << refused.status();
  EXPECT_FALSE(store_->FindSession("s2")->has_value());
  EXPECT_EQ(CountMessagesOf("s2"), 0);
  EXPECT_EQ(CountRows("messages"), 2);
  EXPECT_EQ(User("quin").credits, 0);

  // Into the existing session: its summary is untouched.
  Exchange existing =
      MakeExchange("s1", "late2", now_ + absl::Minutes(2), reservation);
  existing.terms = one_credit;
  EXPECT_EQ(store_->CommitExchange(existing).status().code(),
            absl::StatusCode::kResourceExhausted);
  const SessionRecord after = Session("s1");
  EXPECT_EQ(after.message_count, before.message_count);
  EXPECT_EQ(after.last_message, before.last_message);
  EXPECT_EQ(after.updated_at, before.updated_at);
  EXPECT_EQ(CountMessagesOf("s1"), 2);
}

TEST_P(StoreTest, CommitExchangeIntoAMissingSessionStoresNothing) {
  std::optional<CreditReservation> reservation = Reserve("ros", now_);
  ASSERT_TRUE(reservation.has_value());
  auto result =
      store_->CommitExchange(MakeExchange("vanished", "v", now_, reservation));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(CountRows("messages"), 0);
  EXPECT_EQ(User("ros").credits, 5);
  // Still held: the caller releases it.
  EXPECT_EQ(CountRows("credit_reservations"), 1);
}

// --- Server runs and their holds
// ----------------------------------------------------

TEST_P(StoreTest, ARestartedServerDropsOnlyItsPreviousRunsHolds) {
  ASSERT_TRUE(store_->BeginRun("host-a:50051").ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Reserve("una", now_).has_value());
  // Another server on the same database holds the user's last two credits.
  auto other = db_->Open();
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE((*other)->BeginRun("host-b:50051").ok());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(ReserveCredit(**other, "una", TermsFor("2026-11"), now_,
                              now_ + absl::Minutes(5))
                    ->has_value());
  }
  EXPECT_FALSE(Reserve("una", now_).has_value());

  // host-a is killed and starts again: its three holds are dropped at once,
  // long before they would expire; host-b's stay.
  Reopen();
  absl::StatusOr<int> dropped = store_->BeginRun("host-a:50051");
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_EQ(*dropped, 3);
  EXPECT_EQ(CountRows("credit_reservations"), 2);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(Reserve("una", now_).has_value()) << "hold " << i;
  }
  EXPECT_FALSE(Reserve("una", now_).has_value());
  // The new run's own holds are not dropped by another BeginRun elsewhere.
  ASSERT_TRUE((*other)->BeginRun("host-b:50051").ok());
  EXPECT_EQ(CountRows("credit_reservations"), 3);
}

// Several servers on one database race for one user's credits: each
// reserves, then commits an exchange that charges the hold. Exactly the
// user's credits get through, whichever store each call lands on.
TEST_P(StoreTest, SeveralStoresRacingForOneUsersCreditsChargeExactlyThem) {
  constexpr int kStores = 3;
  constexpr int kThreadsPerStore = 4;
  constexpr int kTriesPerThread = 4;
  const CreditTerms terms = TermsFor("2026-11", /*free_credits=*/7);
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < kStores; ++i) {
    auto store = db_->Open(/*connections=*/2);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->BeginRun("server-" + std::to_string(i)).ok());
    stores.push_back(*std::move(store));
  }
  std::atomic<int> held{0}, charged{0}, refused{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kStores * kThreadsPerStore; ++t) {
    threads.emplace_back([&, t] {
      Store& store = *stores[t % kStores];
      for (int i = 0; i < kTriesPerThread; ++i) {
        auto hold =
            ReserveCredit(store, "zoe", terms, now_, now_ + absl::Minutes(5));
        if (!hold.ok()) {
          ++errors;
          continue;
        }
        if (!hold->has_value()) {
          ++refused;
          continue;
        }
        ++held;
        const std::string tag =
            "t" + std::to_string(t) + "-" + std::to_string(i);
        Exchange exchange = MakeExchange("s-" + tag, tag, now_, *hold);
        exchange.terms = terms;
        exchange.new_session = MakeSession("s-" + tag, "zoe", now_);
        auto committed = store.CommitExchange(exchange);
        if (committed.ok()) {
          ++charged;
        } else {
          ++errors;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(held.load(), 7);
  EXPECT_EQ(charged.load(), 7);
  EXPECT_EQ(refused.load(), kStores * kThreadsPerStore * kTriesPerThread - 7);
  EXPECT_EQ(User("zoe").credits, 0);
  EXPECT_EQ(CountRows("messages"), 14);
  EXPECT_EQ(CountRows("credit_reservations"), 0);
}

// --- Idempotency keys
// ----------------------------------------------------------------

IdempotencyClaim KeyClaimFor(const std::string& user, const std::string& key,
                             const std::string& hash,
                             const std::string& claim_id, absl::Time at) {
  return IdempotencyClaim{.user_id = user,
                          .key = key,
                          .request_hash = hash,
                          .claim_id = claim_id,
                          .now = at,
                          .claim_expires_at = at + absl::Minutes(5),
                          .expires_at = at + absl::Hours(24)};
}

using State = ClaimOutcome::State;

// Claims a key as a send does (testing::ClaimKey), on November's terms.
absl::StatusOr<ClaimOutcome> ClaimKey(Store& store,
                                      const IdempotencyClaim& claim) {
  return testing::ClaimKey(store, claim, TermsFor("2026-11"));
}

TEST_P(StoreTest, ARefusedKeyedAdmissionStoresItsResponseOrFreesTheKey) {
  const auto admit = [&](const std::string& key,
                         std::optional<std::string> response) {
    return store_->AdmitSend(
        SendAdmissionRequest{
            .user_id = "ida",
            .session_id = "",
            .terms = TermsFor("2026-11"),
            .now = now_,
            .expires_at = now_ + absl::Minutes(5),
            .claim = KeyClaimFor("ida", key, "h", "claim-" + key, now_)},
        [&](const AdmissionState& state) {
          return Admission{.rates = state.rates,
                           .admitted = false,
                           .key_response = response};
        });
  };
  ASSERT_EQ(admit("stored", "{\"error\":\"SESSION_NOT_FOUND\"}")->claim.state,
            State::kClaimed);
  ASSERT_EQ(admit("freed", std::nullopt)->claim.state, State::kClaimed);
  // The stored outcome is what a retry gets; the freed key runs again.
  auto replay = admit("stored", std::nullopt);
  ASSERT_TRUE(replay.ok()) << replay.status();
  ASSERT_EQ(replay->claim.state, State::kCompleted);
  EXPECT_EQ(replay->claim.stored->response,
            "{\"error\":\"SESSION_NOT_FOUND\"}");
  EXPECT_EQ(CountRows("idempotency_keys"), 1);
  EXPECT_EQ(CountRows("credit_reservations"), 0);
}

// What claiming the key finds (a failed claim fails the test).
State ClaimState(Store& store, const std::string& user, const std::string& key,
                 const std::string& hash, const std::string& claim_id,
                 absl::Time at) {
  auto outcome = ClaimKey(store, KeyClaimFor(user, key, hash, claim_id, at));
  EXPECT_TRUE(outcome.ok()) << outcome.status();
  return outcome.ok() ? outcome->state : State::kInProgress;
}

TEST_P(StoreTest, AKeyRunsOnceAndItsCommittedResponseIsReplayed) {
  ASSERT_EQ(ClaimState(*store_, "ida", "k1", "h1", "c1", now_),
            State::kClaimed);
  // While it runs: the same request waits, another is refused.
  EXPECT_EQ(ClaimState(*store_, "ida", "k1", "h1", "c2", now_),
            State::kInProgress);
  EXPECT_EQ(ClaimState(*store_, "ida", "k1", "other", "c3", now_),
            State::kReused);
  // The key is the user's: another user's k1 is another key.
  EXPECT_EQ(ClaimState(*store_, "max", "k1", "h1", "c4", now_),
            State::kClaimed);

  CreateSession("s1", "ida");
  Exchange exchange = MakeExchange("s1", "e1", now_, Reserve("ida", now_));
  exchange.idempotency = IdempotencyCompletion{
      .user_id = "ida", .key = "k1", .claim_id = "c1", .response = "{\"r\":1}"};
  auto committed = store_->CommitExchange(exchange);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(committed->remaining_credits, 4);

  auto replay = ClaimKey(
      *store_, KeyClaimFor("ida", "k1", "h1", "c5", now_ + absl::Hours(1)));
  ASSERT_TRUE(replay.ok()) << replay.status();
  ASSERT_EQ(replay->state, State::kCompleted);
  ASSERT_TRUE(replay->stored.has_value());
  EXPECT_EQ(replay->stored->response, "{\"r\":1}");
  EXPECT_EQ(replay->stored->remaining_credits, 4);  // as it was
  EXPECT_EQ(ClaimState(*store_, "ida", "k1", "other", "c6", now_),
            State::kReused);
  // Nothing ran twice.
  EXPECT_EQ(CountRows("messages"), 2);
  EXPECT_EQ(User("ida").credits, 4);
}

TEST_P(StoreTest, ACommitWhoseClaimWasTakenOverStoresAndChargesNothing) {
  IdempotencyClaim first = KeyClaimFor("ida", "k", "h", "first", now_);
  first.claim_expires_at = now_ + absl::Minutes(1);
  ASSERT_EQ(ClaimKey(*store_, first)->state, State::kClaimed);
  // The first send hangs past its claim: a retry takes the key over.
  ASSERT_EQ(
      ClaimState(*store_, "ida", "k", "h", "second", now_ + absl::Minutes(2)),
      State::kClaimed);

  CreateSession("s1", "ida");
  Exchange late = MakeExchange("s1", "late", now_, Reserve("ida", now_));
  late.idempotency = IdempotencyCompletion{
      .user_id = "ida", .key = "k", .claim_id = "first", .response = "late"};
  EXPECT_EQ(store_->CommitExchange(late).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(CountRows("messages"), 0);
  EXPECT_EQ(User("ida").credits, 5);
  EXPECT_EQ(CountRows("credit_reservations"), 1);  // still held, not charged

  Exchange retry = MakeExchange("s1", "retry", now_, Reserve("ida", now_));
  retry.idempotency = IdempotencyCompletion{
      .user_id = "ida", .key = "k", .claim_id = "second", .response = "ok"};
  ASSERT_TRUE(store_->CommitExchange(retry).ok());
  EXPECT_EQ(CountRows("messages"), 2);
}

TEST_P(StoreTest, OnlyItsOwnClaimReleasesOrCompletesAKey) {
  ASSERT_EQ(ClaimState(*store_, "ida", "k", "h", "mine", now_),
            State::kClaimed);
  ASSERT_TRUE(store_->ReleaseIdempotencyKey("ida", "k", "not-mine").ok());
  EXPECT_EQ(ClaimState(*store_, "ida", "k", "h", "x", now_),
            State::kInProgress);
  EXPECT_EQ(store_->CompleteIdempotencyKey("ida", "k", "not-mine", "e").code(),
            absl::StatusCode::kAborted);
  // Released by its claim: the retry runs. Idempotent.
  ASSERT_TRUE(store_->ReleaseIdempotencyKey("ida", "k", "mine").ok());
  ASSERT_TRUE(store_->ReleaseIdempotencyKey("ida", "k", "mine").ok());
  ASSERT_EQ(ClaimState(*store_, "ida", "k", "h", "retry", now_),
            State::kClaimed);
  // An error's response, stored outside any exchange.
  ASSERT_TRUE(store_->CompleteIdempotencyKey("ida", "k", "retry", "err").ok());
  auto replay = ClaimKey(*store_, KeyClaimFor("ida", "k", "h", "again", now_));
  ASSERT_TRUE(replay.ok()) << replay.status();
  ASSERT_EQ(replay->state, State::kCompleted);
  EXPECT_EQ(replay->stored->response, "err");
  EXPECT_FALSE(replay->stored->remaining_credits.has_value());
  // A completed key is released by nobody.
  ASSERT_TRUE(store_->ReleaseIdempotencyKey("ida", "k", "retry").ok());
  EXPECT_EQ(ClaimState(*store_, "ida", "k", "h", "again", now_),
            State::kCompleted);
}

TEST_P(StoreTest, AnExpiredKeyRunsAgainAndIsPurgedInBoundedBatches) {
  for (int i = 0; i < 5; ++i) {
    const std::string key = "old" + std::to_string(i);
    ASSERT_EQ(ClaimState(*store_, "ida", key, "h", key, now_), State::kClaimed);
    ASSERT_TRUE(store_->CompleteIdempotencyKey("ida", key, key, "r").ok());
  }
  const absl::Time later = now_ + absl::Hours(24);
  for (int i = 0; i < 2; ++i) {
    const std::string key = "new" + std::to_string(i);
    ASSERT_EQ(ClaimState(*store_, "ida", key, "h", key, later),
              State::kClaimed);
  }
  // Expired at exactly its expiry: free again, even for another request.
  EXPECT_EQ(ClaimState(*store_, "ida", "old0", "another", "c", later),
            State::kClaimed);
  // old0 is now a live claim; old1..old4 are purged, two at a time.
  EXPECT_EQ(*store_->PurgeIdempotencyKeys(later, 2), 2);
  EXPECT_EQ(*store_->PurgeIdempotencyKeys(later, 2), 2);
  EXPECT_EQ(*store_->PurgeIdempotencyKeys(later, 2), 0);
  EXPECT_EQ(CountRows("idempotency_keys"), 3);
  EXPECT_EQ(*store_->PurgeIdempotencyKeys(later + absl::Hours(24), 10), 3);
}

TEST_P(StoreTest, ARestartedServerDropsItsPreviousRunsUnfinishedClaims) {
  ASSERT_TRUE(store_->BeginRun("host-a:50051").ok());
  ASSERT_EQ(ClaimState(*store_, "ida", "running", "h", "c1", now_),
            State::kClaimed);
  ASSERT_EQ(ClaimState(*store_, "ida", "done", "h", "c2", now_),
            State::kClaimed);
  ASSERT_TRUE(store_->CompleteIdempotencyKey("ida", "done", "c2", "r").ok());
  auto other = db_->Open();
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE((*other)->BeginRun("host-b:50051").ok());
  ASSERT_EQ(ClaimState(**other, "ida", "elsewhere", "h", "c3", now_),
            State::kClaimed);

  // host-a is killed mid-send and starts again: its retry runs at once,
  // not after the claim's expiry; what ended, and host-b's, stay.
  Reopen();
  ASSERT_TRUE(store_->BeginRun("host-a:50051").ok());
  EXPECT_EQ(ClaimState(*store_, "ida", "running", "h", "c4", now_),
            State::kClaimed);
  EXPECT_EQ(ClaimState(*store_, "ida", "done", "h", "c5", now_),
            State::kCompleted);
  EXPECT_EQ(ClaimState(*store_, "ida", "elsewhere", "h", "c6", now_),
            State::kInProgress);
}

// Several servers on one database, many threads each, claim one key at
// once: the database lets exactly one run.
TEST_P(StoreTest, SeveralStoresRacingForOneKeyLetExactlyOneRun) {
  constexpr int kStores = 3;
  constexpr int kThreadsPerStore = 6;
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < kStores; ++i) {
    auto store = db_->Open(/*connections=*/2);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->BeginRun("server-" + std::to_string(i)).ok());
    stores.push_back(*std::move(store));
  }
  std::atomic<int> claimed{0}, in_progress{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kStores * kThreadsPerStore; ++t) {
    threads.emplace_back([&, t] {
      auto outcome = ClaimKey(
          *stores[t % kStores],
          KeyClaimFor("zoe", "same", "h", "c" + std::to_string(t), now_));
      if (!outcome.ok()) {
        ++other;
      } else if (outcome->state == State::kClaimed) {
        ++claimed;
      } else if (outcome->state == State::kInProgress) {
        ++in_progress;
      } else {
        ++other;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(claimed.load(), 1);
  EXPECT_EQ(in_progress.load(), kStores * kThreadsPerStore - 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(CountRows("idempotency_keys"), 1);
}

// --- PostgreSQL only
// -----------------------------------------------------------------

TEST_F(PostgresStoreTest, RefusesADatabaseFromANewerBuild) {
  store_.reset();
  ASSERT_TRUE(pg_.Exec("UPDATE coach_schema SET version = " +
                       std::to_string(LatestPostgresSchemaVersion() + 1)));
  auto store = db_->Open();
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition)
      << store.status();
  EXPECT_EQ(db_->SchemaVersion(), LatestPostgresSchemaVersion() + 1);
}

// N replicas starting at once on an empty database: one migrates, the
// others wait on the advisory lock and then find nothing to do.
TEST(PostgresMigrationTest, ReplicasStartingTogetherMigrateExactlyOnce) {
  PostgresDatabase db;
  COACH_USE_DATABASE_OR_SKIP(db);
  constexpr int kReplicas = 6;
  std::vector<absl::StatusOr<std::unique_ptr<Store>>> opened(kReplicas);
  std::vector<std::thread> threads;
  for (int i = 0; i < kReplicas; ++i) {
    threads.emplace_back([&, i] { opened[i] = db.Open(/*connections=*/1); });
  }
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < kReplicas; ++i) {
    EXPECT_TRUE(opened[i].ok())
        << "replica " << i << ": " << opened[i].status();
  }
  EXPECT_EQ(db.SchemaVersion(), LatestPostgresSchemaVersion());
  EXPECT_EQ(db.Scalar("SELECT COUNT(*) FROM coach_schema"), 1);
  // Every replica works on the one schema.
  ASSERT_TRUE(opened[0].ok() && opened[kReplicas - 1].ok());
  ASSERT_TRUE(
      (*opened[0])
          ->SetPlan("amy", Plan::kBasic, TermsFor("2026-11"), MidNovember2026())
          .ok());
  auto amy = (*opened[kReplicas - 1])->FindUser("amy");
  ASSERT_TRUE(amy.ok() && amy->has_value());
  EXPECT_EQ((*amy)->credits, 50);
}

TEST(PostgresOpenTest, OpenFailuresAreStatusesNotExceptions) {
  testing::RefusingLoopbackPort refusing;
  absl::StatusOr<std::unique_ptr<PostgresStore>> unreachable;
  EXPECT_NO_THROW(unreachable = PostgresStore::Open(PostgresOptions{
                      .url = "postgresql://coach:pw@127.0.0.1:" +
                             std::to_string(refusing.port()) + "/coach"}));
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kUnavailable)
      << unreachable.status();
  // libpq's message names the server, never the password.
  EXPECT_THAT(unreachable.status().message(), Not(HasSubstr("pw")));

  auto garbage = PostgresStore::Open(PostgresOptions{.url = "postgresql://["});
  EXPECT_FALSE(garbage.ok());
  auto empty = PostgresStore::Open(PostgresOptions{.url = ""});
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace coach
