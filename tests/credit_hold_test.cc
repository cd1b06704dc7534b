// CreditHold against a real SQLite store: a held credit comes back on every
// path that does not commit, exactly once, and never after a commit.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <utility>

#include "server/core/config.h"
#include "server/core/credits.h"
#include "storage/sqlite_store.h"
#include "tests/support/store_calls.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_clock.h"

namespace coach::testing {
namespace {

class CreditHoldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = SqliteStore::Open(SqliteOptions{.path = dir_.File("coach.db"),
                                                 .busy_timeout_ms = 1000,
                                                 .reader_connections = 1});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  // Holds one of `user`'s credits (FREE: 5 a month); nullopt when none is
  // free.
  std::optional<CreditHold> Hold(const std::string& user) {
    auto reservation = ReserveCredit(*store_, user, policy_.TermsAt(now_), now_,
                                     now_ + absl::Minutes(5));
    EXPECT_TRUE(reservation.ok()) << reservation.status();
    if (!reservation.ok() || !reservation->has_value()) return std::nullopt;
    return CreditHold(*store_, **std::move(reservation));
  }

  // How many more credits `user` can hold right now (holds them, then lets
  // them all go).
  int FreeCredits(const std::string& user) {
    std::vector<CreditHold> holds;
    while (std::optional<CreditHold> hold = Hold(user)) {
      holds.push_back(*std::move(hold));
    }
    return static_cast<int>(holds.size());
  }

  TempDir dir_;
  PlanCredits plans_;
  CreditPolicy policy_{plans_};
  absl::Time now_ = MidNovember2026();
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(CreditHoldTest, ADroppedHoldGivesItsCreditBack) {
  { std::optional<CreditHold> hold = Hold("alice"); }
  EXPECT_EQ(FreeCredits("alice"), 5);
}

TEST_F(CreditHoldTest, ALiveHoldKeepsItsCredit) {
  std::optional<CreditHold> hold = Hold("alice");
  ASSERT_TRUE(hold.has_value());
  EXPECT_EQ(FreeCredits("alice"), 4);
}

TEST_F(CreditHoldTest, AMovedHoldIsGivenBackOnceByItsLastOwner) {
  std::optional<CreditHold> first = Hold("alice");
  ASSERT_TRUE(first.has_value());
  CreditHold moved = *std::move(first);
  first.reset();  // the moved-from hold gives nothing back
  EXPECT_EQ(FreeCredits("alice"), 4);
  CreditHold assigned;
  assigned = std::move(moved);
  EXPECT_EQ(FreeCredits("alice"), 4);
  assigned = CreditHold();  // the credit it held comes back
  EXPECT_EQ(FreeCredits("alice"), 5);
}

TEST_F(CreditHoldTest, AConsumedHoldIsNotGivenBack) {
  std::optional<CreditHold> hold = Hold("alice");
  ASSERT_TRUE(hold.has_value());
  const CreditReservation reservation = *hold->reservation();
  hold->Consume();
  hold.reset();
  // Still held: what Consume stands for (a commit) removes it, not the hold.
  EXPECT_EQ(FreeCredits("alice"), 4);
  ASSERT_TRUE(store_->ReleaseCredit(reservation).ok());
  EXPECT_EQ(FreeCredits("alice"), 5);
}

TEST_F(CreditHoldTest, UnlimitedIsDecidedOnceByTheTerms) {
  const CreditTerms terms = policy_.TermsAt(now_);
  for (Plan plan : {Plan::kFree, Plan::kBasic, Plan::kPremium}) {
    EXPECT_EQ(policy_.IsUnlimited(plan), !terms.AllowanceOf(plan).has_value());
  }
  EXPECT_TRUE(policy_.IsUnlimited(Plan::kPremium));
  EXPECT_EQ(terms.AllowanceOf(Plan::kFree), plans_.free_monthly_credits);
}

}  // namespace
}  // namespace coach::testing
