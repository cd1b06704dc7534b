// coach.v1.UserService end to end: a real server on loopback, a real SQLite
// file, a real gRPC client. Stats of new and active users, the admin token,
// plans, granted credits, the monthly refill (test clock), and the JSON names
// protobuf's mapping gives the documented responses.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/support/test_server.h"

namespace coach::testing {
namespace {

using ::testing::HasSubstr;

// Midnight UTC on the first of a month.
absl::Time StartOfMonth(int year, int month) {
  return absl::FromCivil(absl::CivilSecond(year, month, 1, 0, 0, 0),
                         absl::UTCTimeZone());
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string json;
  const auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  EXPECT_TRUE(status.ok()) << status;
  return json;
}

// Asserts an INVALID_ARGUMENT naming `field`, with its reason and domain.
void ExpectInvalidArgument(const grpc::Status& status,
                           const std::string& field) {
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
  const ErrorDetail detail = ErrorInfoOf(status);
  EXPECT_EQ(detail.reason, "INVALID_ARGUMENT");
  EXPECT_EQ(detail.domain, "coach.v1");
  EXPECT_EQ(detail.field, field);
  EXPECT_THAT(status.error_message(), HasSubstr("« " + field + " »"));
}

void ExpectReason(const grpc::Status& status, grpc::StatusCode code,
                  const std::string& reason) {
  EXPECT_EQ(status.error_code(), code) << status.error_message();
  EXPECT_EQ(ErrorInfoOf(status).reason, reason);
}

class UserServiceTest : public ::testing::Test {
 protected:
  explicit UserServiceTest(Config config = TestConfig())
      : server_(std::move(config)) {}

  void SetUp() override {
    ASSERT_TRUE(server_.start_error().ok()) << server_.start_error();
  }

  v1::UserStats Stats(const std::string& user_id) {
    v1::GetUserStatsRequest request;
    request.set_user_id(user_id);
    v1::GetUserStatsResponse response;
    const grpc::Status status =
        server_.users().GetUserStats(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.stats();
  }

  grpc::Status SetPlan(grpc::ClientContext* context, const std::string& user_id,
                       v1::Plan plan, v1::UserStats* stats = nullptr) {
    v1::SetPlanRequest request;
    request.set_user_id(user_id);
    request.set_plan(plan);
    v1::SetPlanResponse response;
    const grpc::Status status =
        server_.users().SetPlan(context, request, &response);
    if (stats != nullptr) *stats = response.stats();
    return status;
  }

  // SetPlan with the right token; fails the test if refused.
  v1::UserStats SetPlanAsAdmin(const std::string& user_id, v1::Plan plan) {
    v1::UserStats stats;
    const grpc::Status status =
        SetPlan(AdminContext().get(), user_id, plan, &stats);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return stats;
  }

  grpc::Status Grant(grpc::ClientContext* context, const std::string& user_id,
                     int32_t credits, v1::UserStats* stats = nullptr) {
    v1::GrantCreditsRequest request;
    request.set_user_id(user_id);
    request.set_credits(credits);
    v1::GrantCreditsResponse response;
    const grpc::Status status =
        server_.users().GrantCredits(context, request, &response);
    if (stats != nullptr) *stats = response.stats();
    return status;
  }

  grpc::Status Send(const std::string& user_id, const std::string& session_id,
                    v1::SendMessageResponse* out) {
    v1::SendMessageRequest request;
    request.set_user_id(user_id);
    request.set_session_id(session_id);
    request.set_message("J'ai besoin de conseils pour ma confiance en moi");
    return server_.chat().SendMessage(Context().get(), request, out);
  }

  // A send that must succeed; returns the response.
  v1::SendMessageResponse SendOk(const std::string& user_id,
                                 const std::string& session_id = "") {
    v1::SendMessageResponse response;
    const grpc::Status status = Send(user_id, session_id, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  TestServer server_;
};

// A server started with no admin token: the admin RPCs are disabled.
class AdminDisabledTest : public UserServiceTest {
 protected:
  AdminDisabledTest() : UserServiceTest(WithoutAdminToken()) {}

  static Config WithoutAdminToken() {
    Config config = TestConfig();
    config.admin_token = "";
    return config;
  }
};

// --- GetUserStats
// --------------------------------------------------------------

TEST_F(UserServiceTest, AnUnknownUserIsANewFreeActiveUser) {
  const v1::UserStats stats = Stats("user123");
  EXPECT_EQ(stats.plan(), v1::FREE);
  EXPECT_EQ(stats.status(), v1::ACTIVE);
  ASSERT_TRUE(stats.has_remaining_credits());
  EXPECT_EQ(stats.remaining_credits(), 5);
  EXPECT_EQ(stats.total_chats(), 0);
  EXPECT_EQ(stats.total_messages(), 0);
}

TEST_F(UserServiceTest, ReadingStatsCreatesNoUser) {
  Stats("reader");
  Stats("reader");
  auto user = server_.store().FindUser("reader");
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_FALSE(user->has_value());
  EXPECT_EQ(Stats("reader").remaining_credits(), 5);
}

TEST_F(UserServiceTest, StatsCountSessionsMessagesAndSpentCredits) {
  const std::string session = SendOk("user123").session_id();
  SendOk("user123", session);
  SendOk("user123");  // A second session.
  // An empty session is a chat too.
  v1::CreateSessionRequest create;
  create.set_user_id("user123");
  v1::CreateSessionResponse created;
  ASSERT_TRUE(
      server_.chat().CreateSession(Context().get(), create, &created).ok());

  const v1::UserStats stats = Stats("user123");
  EXPECT_EQ(stats.total_chats(), 3);
  EXPECT_EQ(stats.total_messages(), 6);
  EXPECT_EQ(stats.remaining_credits(), 2);
  EXPECT_EQ(stats.plan(), v1::FREE);
  // Someone else's activity is not counted.
  EXPECT_EQ(Stats("someone-else").total_chats(), 0);
}

TEST_F(UserServiceTest, GetUserStatsValidatesTheUserId) {
  v1::GetUserStatsResponse response;
  v1::GetUserStatsRequest request;
  ExpectInvalidArgument(
      server_.users().GetUserStats(Context().get(), request, &response),
      "userId");
  request.set_user_id("   ");
  ExpectInvalidArgument(
      server_.users().GetUserStats(Context().get(), request, &response),
      "userId");
  request.set_user_id(
      std::string(server_.config().limits.max_user_id_length + 1, 'u'));
  ExpectInvalidArgument(
      server_.users().GetUserStats(Context().get(), request, &response),
      "userId");
}

// --- The admin token
// -------------------------------------------------------------

TEST_F(UserServiceTest, AdminCallsWithoutTokenAreUnauthenticated) {
  ExpectReason(SetPlan(Context().get(), "u", v1::BASIC),
               grpc::StatusCode::UNAUTHENTICATED, "UNAUTHENTICATED");
  ExpectReason(Grant(Context().get(), "u", 3),
               grpc::StatusCode::UNAUTHENTICATED, "UNAUTHENTICATED");
  // Refused before anything is written.
  EXPECT_FALSE(server_.store().FindUser("u")->has_value());
}

TEST_F(UserServiceTest, AdminCallsWithAWrongTokenAreUnauthenticated) {
  ExpectReason(SetPlan(AdminContext("wrong-token").get(), "u", v1::BASIC),
               grpc::StatusCode::UNAUTHENTICATED, "UNAUTHENTICATED");
  ExpectReason(Grant(AdminContext("wrong-token").get(), "u", 3),
               grpc::StatusCode::UNAUTHENTICATED, "UNAUTHENTICATED");
  // A prefix of the right token, or an empty one, is wrong too.
  ExpectReason(SetPlan(AdminContext("test-admin").get(), "u", v1::BASIC),
               grpc::StatusCode::UNAUTHENTICATED, "UNAUTHENTICATED");
  ExpectReason(SetPlan(AdminContext("").get(), "u", v1::BASIC),
               grpc::StatusCode::UNAUTHENTICATED, "UNAUTHENTICATED");
  EXPECT_EQ(Stats("u").plan(), v1::FREE);
}

TEST_F(UserServiceTest, AdminTokenWithoutBearerPrefixIsUnauthenticated) {
  auto context = Context();
  context->AddMetadata("authorization", kTestAdminToken);
  ExpectReason(SetPlan(context.get(), "u", v1::BASIC),
               grpc::StatusCode::UNAUTHENTICATED, "UNAUTHENTICATED");
  auto basic = Context();
  basic->AddMetadata("authorization", std::string("Basic ") + kTestAdminToken);
  ExpectReason(Grant(basic.get(), "u", 3), grpc::StatusCode::UNAUTHENTICATED,
               "UNAUTHENTICATED");
}

TEST_F(UserServiceTest, AdminCallsWithTheRightTokenSucceed) {
  v1::UserStats stats;
  const grpc::Status status =
      SetPlan(AdminContext().get(), "u", v1::BASIC, &stats);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(stats.plan(), v1::BASIC);
  const grpc::Status granted = Grant(AdminContext().get(), "u", 1, &stats);
  ASSERT_TRUE(granted.ok()) << granted.error_message();
  EXPECT_EQ(stats.remaining_credits(), 51);
}

TEST_F(AdminDisabledTest, AdminCallsAreDeniedWhenNoTokenIsConfigured) {
  for (const std::string token : {"test-admin-token", "anything", ""}) {
    ExpectReason(SetPlan(AdminContext(token).get(), "u", v1::BASIC),
                 grpc::StatusCode::PERMISSION_DENIED, "ADMIN_DISABLED");
    ExpectReason(Grant(AdminContext(token).get(), "u", 3),
                 grpc::StatusCode::PERMISSION_DENIED, "ADMIN_DISABLED");
  }
  ExpectReason(SetPlan(Context().get(), "u", v1::BASIC),
               grpc::StatusCode::PERMISSION_DENIED, "ADMIN_DISABLED");
  EXPECT_EQ(Stats("u").plan(), v1::FREE);
  // The public RPCs still work.
  EXPECT_EQ(Stats("u").remaining_credits(), 5);
}

// --- SetPlan
// ------------------------------------------------------------------------

TEST_F(UserServiceTest, SetPlanBasicGivesFiftyCredits) {
  const v1::UserStats stats = SetPlanAsAdmin("u", v1::BASIC);
  EXPECT_EQ(stats.plan(), v1::BASIC);
  EXPECT_EQ(stats.status(), v1::ACTIVE);
  EXPECT_EQ(stats.remaining_credits(), 50);
  EXPECT_EQ(Stats("u").remaining_credits(), 50);
  EXPECT_EQ(Stats("u").plan(), v1::BASIC);
}

TEST_F(UserServiceTest, PremiumIsUnlimited) {
  const v1::UserStats stats = SetPlanAsAdmin("vip", v1::PREMIUM);
  EXPECT_EQ(stats.plan(), v1::PREMIUM);
  EXPECT_FALSE(stats.has_remaining_credits());
  EXPECT_FALSE(Stats("vip").has_remaining_credits());

  // Far beyond any allowance, every send succeeds and reports no balance.
  std::string session;
  for (int i = 0; i < 20; ++i) {
    v1::SendMessageResponse sent;
    const grpc::Status status = Send("vip", session, &sent);
    ASSERT_TRUE(status.ok()) << "send " << i << ": " << status.error_message();
    EXPECT_FALSE(sent.has_remaining_credits()) << "send " << i;
    session = sent.session_id();
  }
  const v1::UserStats after = Stats("vip");
  EXPECT_EQ(after.total_messages(), 40);
  EXPECT_FALSE(after.has_remaining_credits());
}

TEST_F(UserServiceTest, BackToFreeGivesFiveCredits) {
  SetPlanAsAdmin("u", v1::PREMIUM);
  const v1::UserStats stats = SetPlanAsAdmin("u", v1::FREE);
  EXPECT_EQ(stats.plan(), v1::FREE);
  ASSERT_TRUE(stats.has_remaining_credits());
  EXPECT_EQ(stats.remaining_credits(), 5);
  EXPECT_EQ(SendOk("u").remaining_credits(), 4);
}

TEST_F(UserServiceTest, SetPlanRequiresAPlanAndAUserId) {
  ExpectInvalidArgument(
      SetPlan(AdminContext().get(), "u", v1::PLAN_UNSPECIFIED), "plan");
  // An enum value this build does not know (proto3 enums are open).
  ExpectInvalidArgument(
      SetPlan(AdminContext().get(), "u", static_cast<v1::Plan>(42)), "plan");
  ExpectInvalidArgument(SetPlan(AdminContext().get(), "", v1::BASIC), "userId");
  EXPECT_FALSE(server_.store().FindUser("u")->has_value());
}

// --- GrantCredits
// ---------------------------------------------------------------------

TEST_F(UserServiceTest, GrantCreditsAddsToAFreeUser) {
  v1::UserStats stats;
  const grpc::Status status = Grant(AdminContext().get(), "u", 3, &stats);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(stats.remaining_credits(), 8);
  EXPECT_EQ(stats.plan(), v1::FREE);
  EXPECT_EQ(Stats("u").remaining_credits(), 8);
  EXPECT_EQ(SendOk("u").remaining_credits(), 7);
}

TEST_F(UserServiceTest, GrantCreditsMustBePositiveAndBounded) {
  const int max = server_.config().limits.max_credit_grant;
  for (int32_t credits : {0, -1, -5, max + 1}) {
    ExpectInvalidArgument(Grant(AdminContext().get(), "u", credits), "credits");
  }
  EXPECT_EQ(Stats("u").remaining_credits(), 5);
  // The bound itself is allowed.
  v1::UserStats stats;
  ASSERT_TRUE(Grant(AdminContext().get(), "u", max, &stats).ok());
  EXPECT_EQ(stats.remaining_credits(), 5 + max);
  ExpectInvalidArgument(Grant(AdminContext().get(), "", 3), "userId");
}

// A small maximum balance, so that filling it takes a few grants (and the
// test's output stays short enough to show a failure).
class SmallBalanceTest : public UserServiceTest {
 protected:
  SmallBalanceTest() : UserServiceTest(WithSmallBalance()) {}

  static Config WithSmallBalance() {
    Config config = TestConfig();
    config.limits.max_credit_grant = 100;
    config.limits.max_credit_balance = 1000;
    return config;
  }
};

TEST_F(SmallBalanceTest, GrantsCannotPushABalancePastItsMaximum) {
  const Limits& limits = server_.config().limits;
  const int grants_to_fill =
      (limits.max_credit_balance - 5) / limits.max_credit_grant;
  ASSERT_EQ(grants_to_fill, 9);
  for (int i = 0; i < grants_to_fill; ++i) {
    const grpc::Status status =
        Grant(AdminContext().get(), "u", limits.max_credit_grant);
    ASSERT_TRUE(status.ok()) << "grant " << i << ": " << status.error_code()
                             << " " << status.error_message();
  }
  const int32_t full = Stats("u").remaining_credits();
  ASSERT_EQ(full, 5 + grants_to_fill * limits.max_credit_grant);
  ExpectInvalidArgument(
      Grant(AdminContext().get(), "u", limits.max_credit_balance - full + 1),
      "credits");
  EXPECT_EQ(Stats("u").remaining_credits(), full);
  // Up to the maximum exactly is fine.
  v1::UserStats stats;
  const grpc::Status status = Grant(AdminContext().get(), "u",
                                    limits.max_credit_balance - full, &stats);
  ASSERT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  EXPECT_EQ(stats.remaining_credits(), limits.max_credit_balance);
}

TEST_F(UserServiceTest, GrantCreditsOnPremiumIsRefused) {
  SetPlanAsAdmin("vip", v1::PREMIUM);
  const grpc::Status status = Grant(AdminContext().get(), "vip", 3);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ErrorInfoOf(status).reason, "INVALID_ARGUMENT");
  EXPECT_EQ(Stats("vip").plan(), v1::PREMIUM);
}

// --- The monthly refill
// ----------------------------------------------------------------

TEST_F(UserServiceTest, BasicIsRefilledOnTheFirstOfTheMonthUtc) {
  SetPlanAsAdmin("u", v1::BASIC);
  const std::string session = SendOk("u").session_id();
  EXPECT_EQ(SendOk("u", session).remaining_credits(), 48);

  server_.clock().Set(StartOfMonth(2026, 12) - absl::Seconds(1));
  EXPECT_EQ(Stats("u").remaining_credits(), 48);
  server_.clock().Set(StartOfMonth(2026, 12));
  EXPECT_EQ(Stats("u").remaining_credits(), 50);
  EXPECT_EQ(Stats("u").plan(), v1::BASIC);
  EXPECT_EQ(SendOk("u", session).remaining_credits(), 49);
}

TEST_F(UserServiceTest, AnExhaustedFreeUserGetsCreditsBackNextMonth) {
  for (int i = 0; i < 5; ++i) SendOk("u");
  v1::SendMessageResponse sent;
  const grpc::Status refused = Send("u", "", &sent);
  ExpectReason(refused, grpc::StatusCode::RESOURCE_EXHAUSTED, "NO_CREDITS");
  EXPECT_EQ(Stats("u").remaining_credits(), 0);

  // Across a year boundary too.
  server_.clock().Set(StartOfMonth(2027, 1) + absl::Hours(3));
  EXPECT_EQ(Stats("u").remaining_credits(), 5);
  EXPECT_EQ(SendOk("u").remaining_credits(), 4);
  // Totals are not a monthly figure.
  EXPECT_EQ(Stats("u").total_chats(), 6);
}

// --- The documented JSON
// -------------------------------------------------------------------

TEST_F(UserServiceTest, StatsPrintAsTheDocumentedJson) {
  v1::GetUserStatsRequest request;
  request.set_user_id("user123");
  v1::GetUserStatsResponse response;
  ASSERT_TRUE(
      server_.users().GetUserStats(Context().get(), request, &response).ok());
  const std::string json = ToJson(response);
  EXPECT_THAT(json, HasSubstr("{\"stats\":{")) << json;
  EXPECT_THAT(json, HasSubstr("\"totalChats\":0")) << json;
  EXPECT_THAT(json, HasSubstr("\"totalMessages\":0")) << json;
  EXPECT_THAT(json, HasSubstr("\"remainingCredits\":5")) << json;
  EXPECT_THAT(json, HasSubstr("\"plan\":\"FREE\"")) << json;
  EXPECT_THAT(json, HasSubstr("\"status\":\"ACTIVE\"")) << json;

  SetPlanAsAdmin("user123", v1::BASIC);
  response.Clear();
  ASSERT_TRUE(
      server_.users().GetUserStats(Context().get(), request, &response).ok());
  EXPECT_THAT(ToJson(response), HasSubstr("\"plan\":\"BASIC\""));
}

TEST_F(UserServiceTest, SendResponsePrintsAsTheDocumentedJson) {
  const std::string json = ToJson(SendOk("user123"));
  for (const char* key :
       {"\"sessionId\":", "\"userMessage\":{", "\"assistantMessage\":{",
        "\"createdAt\":\"2026-11-15T10:00:00Z\"", "\"role\":\"USER\"",
        "\"role\":\"ASSISTANT\"", "\"content\":", "\"remainingCredits\":4"}) {
    EXPECT_THAT(json, HasSubstr(key)) << json;
  }
}

}  // namespace
}  // namespace coach::testing
