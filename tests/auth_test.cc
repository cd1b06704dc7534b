// COACH_AUTH=jwt end to end: a real coach-server and coach-proxy on loopback,
// tokens minted with cjose. Nobody reaches another user's data through
// either API, and a refused token reads and writes nothing.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

#include "coach/v1/chat.grpc.pb.h"
#include "coach/v1/user.grpc.pb.h"
#include "tests/support/jwt_tokens.h"
#include "tests/support/test_stack.h"

namespace coach::testing {
namespace {

using nlohmann::json;

constexpr char kAuthSecret[] = "auth-test-secret-of-at-least-32-bytes";

Config JwtConfig() {
  Config config = TestConfig();
  config.auth = AuthMode::kJwt;
  config.jwt.hs256_secret = kAuthSecret;
  config.jwt_admin_scope = "coach:admin";
  return config;
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(stack_.start_error().ok()) << stack_.start_error();
    // Alice's conversation, which Bob will try to reach.
    auto context = As("alice");
    v1::SendMessageRequest request;
    request.set_message("Comment oser parler en public ?");
    v1::SendMessageResponse response;
    ASSERT_TRUE(chat().SendMessage(context.get(), request, &response).ok());
    alice_session_ = response.session_id();
    alice_before_ = AliceSession();
  }

  std::string TokenOf(const std::string& user) const {
    return SigningKey::Hs256(kAuthSecret)
        .Sign(ClaimsFor(user, MidNovember2026()));
  }
  std::unique_ptr<grpc::ClientContext> As(const std::string& user) {
    auto context = Context();
    context->AddMetadata("authorization", "Bearer " + TokenOf(user));
    return context;
  }
  v1::ChatService::Stub& chat() { return stack_.server().chat(); }
  v1::UserService::Stub& users() { return stack_.server().users(); }

  // Alice's session as the store holds it, messages included.
  std::string AliceSession() {
    auto session = stack_.server().store().FindSession(alice_session_);
    auto messages =
        stack_.server().store().ListRecentMessages(alice_session_, 100);
    if (!session.ok() || !session->has_value() || !messages.ok()) return "";
    std::string state =
        absl::StrCat((*session)->title, "|", (*session)->message_count);
    for (const MessageRecord& m : *messages)
      absl::StrAppend(&state, "|", m.content);
    return state;
  }

  // One REST exchange through the proxy.
  struct Reply {
    int status = 0;
    json body;
    std::string www_authenticate;
  };
  Reply Rest(const std::string& method, const std::string& path,
             const std::string& token, const json& body = nullptr) {
    httplib::Request request;
    request.method = method;
    request.path = path;
    if (!token.empty()) request.set_header("Authorization", "Bearer " + token);
    if (!body.is_null()) {
      request.body = body.dump();
      request.set_header("Content-Type", "application/json");
    }
    Reply reply;
    httplib::Result result = stack_.http().send(request);
    if (!result) {
      ADD_FAILURE() << method << " " << path << ": no answer";
      return reply;
    }
    reply.status = result->status;
    reply.body = json::parse(result->body, nullptr, false);
    reply.www_authenticate = result->get_header_value("WWW-Authenticate");
    return reply;
  }

  TestStack stack_{JwtConfig()};
  std::string alice_session_;
  std::string alice_before_;
};

std::string ReasonOf(const grpc::Status& status) {
  return ErrorInfoOf(status).reason;
}

// ---------------------------------------------------------------- gRPC

TEST_F(AuthTest, GrpcBobCannotReachAlicesData) {
  const std::string& id = alice_session_;
  struct Case {
    const char* what;
    grpc::Status status;
  };
  std::vector<Case> cases;
  {
    v1::ListSessionsRequest r;
    r.set_user_id("alice");
    v1::ListSessionsResponse out;
    cases.push_back(
        {"ListSessions alice", chat().ListSessions(As("bob").get(), r, &out)});
  }
  {
    v1::CreateSessionRequest r;
    r.set_user_id("alice");
    v1::CreateSessionResponse out;
    cases.push_back({"CreateSession alice",
                     chat().CreateSession(As("bob").get(), r, &out)});
  }
  for (const char* user : {"", "alice"}) {
    v1::GetSessionRequest g;
    g.set_session_id(id);
    g.set_user_id(user);
    v1::GetSessionResponse got;
    cases.push_back(
        {"GetSession", chat().GetSession(As("bob").get(), g, &got)});
    v1::UpdateSessionRequest u;
    u.set_session_id(id);
    u.set_user_id(user);
    u.set_title("Volé");
    v1::UpdateSessionResponse updated;
    cases.push_back(
        {"UpdateSession", chat().UpdateSession(As("bob").get(), u, &updated)});
    v1::DeleteSessionRequest d;
    d.set_session_id(id);
    d.set_user_id(user);
    v1::DeleteSessionResponse deleted;
    cases.push_back(
        {"DeleteSession", chat().DeleteSession(As("bob").get(), d, &deleted)});
    v1::SendMessageRequest s;
    s.set_session_id(id);
    s.set_user_id(user);
    s.set_message("Je suis Alice");
    v1::SendMessageResponse sent;
    cases.push_back(
        {"SendMessage", chat().SendMessage(As("bob").get(), s, &sent)});
  }
  {
    v1::GetHistoryRequest r;
    r.set_user_id("alice");
    v1::GetHistoryResponse out;
    cases.push_back(
        {"GetHistory alice", chat().GetHistory(As("bob").get(), r, &out)});
  }
  {
    v1::GetUserStatsRequest r;
    r.set_user_id("alice");
    v1::GetUserStatsResponse out;
    cases.push_back(
        {"GetUserStats alice", users().GetUserStats(As("bob").get(), r, &out)});
  }
  {
    v1::GetUsageRequest r;
    r.set_user_id("alice");
    v1::GetUsageResponse out;
    cases.push_back(
        {"GetUsage alice", users().GetUsage(As("bob").get(), r, &out)});
  }
  {
    v1::DeleteUserRequest r;
    r.set_user_id("alice");
    v1::DeleteUserResponse out;
    cases.push_back(
        {"DeleteUser alice", users().DeleteUser(As("bob").get(), r, &out)});
  }
  {
    v1::ExportUserDataRequest r;
    r.set_user_id("alice");
    auto context = As("bob");
    auto reader = users().ExportUserData(context.get(), r);
    google::api::HttpBody body;
    int pieces = 0;
    while (reader->Read(&body)) ++pieces;
    EXPECT_EQ(pieces, 0) << "Bob read a piece of Alice's export";
    cases.push_back({"ExportUserData alice", reader->Finish()});
  }
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << c.what << ": " << c.status.error_message();
    const std::string reason = ReasonOf(c.status);
    EXPECT_TRUE(reason == "SESSION_FORBIDDEN" || reason == "USER_FORBIDDEN")
        << c.what << ": " << reason;
  }
  EXPECT_EQ(AliceSession(), alice_before_);

  // Bob's own views show none of Alice's.
  v1::ListSessionsResponse listed;
  ASSERT_TRUE(chat().ListSessions(As("bob").get(), {}, &listed).ok());
  EXPECT_EQ(listed.sessions_size(), 0);
  v1::GetHistoryResponse history;
  ASSERT_TRUE(chat().GetHistory(As("bob").get(), {}, &history).ok());
  EXPECT_EQ(history.stats().total_sessions(), 0);
}

TEST_F(AuthTest, GrpcTheTokensUserIsTheDefaultAndItsOwnIdIsAccepted) {
  v1::ListSessionsResponse implicit;
  ASSERT_TRUE(chat().ListSessions(As("alice").get(), {}, &implicit).ok());
  v1::ListSessionsRequest named;
  named.set_user_id("alice");
  v1::ListSessionsResponse explicit_;
  ASSERT_TRUE(chat().ListSessions(As("alice").get(), named, &explicit_).ok());
  ASSERT_EQ(implicit.sessions_size(), 1);
  EXPECT_EQ(implicit.sessions(0).id(), alice_session_);
  EXPECT_EQ(explicit_.sessions_size(), 1);
}

TEST_F(AuthTest, GrpcWithoutAValidTokenNothingIsReadOrWritten) {
  const std::vector<std::string> bad = {
      "",
      "Bearer ",
      "Bearer garbage",
      "Basic YWxpY2U6cHc=",
      "Bearer " + SigningKey::Hs256("another-secret-of-at-least-32-bytes!")
                      .Sign(ClaimsFor("alice", MidNovember2026())),
      "Bearer " + UnsignedToken(ClaimsFor("alice", MidNovember2026()))};
  for (const std::string& authorization : bad) {
    auto context = Context();
    if (!authorization.empty())
      context->AddMetadata("authorization", authorization);
    v1::SendMessageRequest request;
    request.set_session_id(alice_session_);
    request.set_message("Intrusion");
    v1::SendMessageResponse response;
    const grpc::Status status =
        chat().SendMessage(context.get(), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << authorization;
    EXPECT_EQ(ReasonOf(status), "UNAUTHENTICATED") << authorization;
  }
  EXPECT_EQ(AliceSession(), alice_before_);
  EXPECT_EQ(stack_.server().coach().request_count(), 1);  // SetUp's only
}

// Two `authorization` entries: neither counts, whichever comes first, so
// a proxy or a client library that keeps the other one cannot be played
// against the server (issue 24: the first one used to win).
TEST_F(AuthTest, GrpcTwoAuthorizationEntriesAreRefused) {
  const std::string alice = "Bearer " + TokenOf("alice");
  const std::string bob = "Bearer " + TokenOf("bob");
  const std::pair<std::string, std::string> pairs[] = {
      {alice, bob},
      {bob, alice},
      {alice, alice},
      {alice, "Bearer garbage"},
      {"Bearer garbage", alice},
      {alice, "Basic YWxpY2U6cHc="}};
  for (const auto& [first, second] : pairs) {
    auto context = Context();
    context->AddMetadata("authorization", first);
    context->AddMetadata("authorization", second);
    v1::ListSessionsResponse listed;
    const grpc::Status status = chat().ListSessions(context.get(), {}, &listed);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << first.substr(0, 12) << " + " << second.substr(0, 12);
    EXPECT_EQ(ReasonOf(status), "UNAUTHENTICATED");
    EXPECT_EQ(listed.sessions_size(), 0);
  }
  // The admin token too: twice, or after a user's token.
  v1::SetPlanRequest request;
  request.set_user_id("alice");
  request.set_plan(v1::PREMIUM);
  for (const std::string& first :
       {std::string("Bearer ") + kTestAdminToken, alice}) {
    auto context = Context();
    context->AddMetadata("authorization", first);
    context->AddMetadata("authorization",
                         std::string("Bearer ") + kTestAdminToken);
    v1::SetPlanResponse response;
    EXPECT_EQ(users().SetPlan(context.get(), request, &response).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  v1::GetUserStatsResponse stats;
  ASSERT_TRUE(users().GetUserStats(As("alice").get(), {}, &stats).ok());
  EXPECT_EQ(stats.stats().plan(), v1::FREE);
  EXPECT_EQ(AliceSession(), alice_before_);
}

TEST_F(AuthTest, AnExpiredTokenIsRefusedOnTheServersClock) {
  json claims = ClaimsFor("alice", MidNovember2026());
  auto context = Context();
  context->AddMetadata("authorization",
                       "Bearer " + SigningKey::Hs256(kAuthSecret).Sign(claims));
  stack_.server().clock().Advance(absl::Hours(2));  // past exp + leeway
  v1::ListSessionsResponse listed;
  const grpc::Status status = chat().ListSessions(context.get(), {}, &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthTest, AdminRpcsTakeATokenWithTheAdminScope) {
  v1::SetPlanRequest request;
  request.set_user_id("alice");
  request.set_plan(v1::PREMIUM);
  v1::SetPlanResponse response;
  // A user's token is no admin's.
  EXPECT_EQ(users().SetPlan(As("alice").get(), request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  json claims = ClaimsFor("ops", MidNovember2026());
  claims["scope"] = "chat coach:admin";
  auto context = Context();
  context->AddMetadata("authorization",
                       "Bearer " + SigningKey::Hs256(kAuthSecret).Sign(claims));
  const grpc::Status status =
      users().SetPlan(context.get(), request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.stats().plan(), v1::PREMIUM);
  // The admin token still works.
  EXPECT_TRUE(users().SetPlan(AdminContext().get(), request, &response).ok());
}

// Issue 26: a month's usage of every user is the admin's only; any user's
// usage with the admin token.
TEST_F(AuthTest, UsageIsTheCallersOwnOrTheAdmins) {
  v1::GetUsageRequest get;
  v1::GetUsageResponse usage;
  ASSERT_TRUE(users().GetUsage(As("alice").get(), get, &usage).ok());
  EXPECT_EQ(usage.usage().replies(), 1);
  get.set_user_id("alice");
  ASSERT_TRUE(users().GetUsage(AdminContext().get(), get, &usage).ok());
  EXPECT_EQ(usage.usage().replies(), 1);

  v1::ListUsageRequest list;
  v1::ListUsageResponse listed;
  EXPECT_EQ(users().ListUsage(As("alice").get(), list, &listed).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  ASSERT_TRUE(users().ListUsage(AdminContext().get(), list, &listed).ok());
  ASSERT_EQ(listed.users_size(), 1);
  EXPECT_EQ(listed.users(0).user_id(), "alice");
}

// ---------------------------------------------------------------- REST

// Issue 26: a user's own usage, export and erasure through the proxy.
TEST_F(AuthTest, RestAUserReadsExportsAndErasesTheirOwnData) {
  const std::string alice = TokenOf("alice");
  const Reply usage = Rest("GET", "/api/user/usage", alice);
  ASSERT_EQ(usage.status, 200) << usage.body.dump();
  EXPECT_EQ(usage.body["usage"]["month"], "2026-11");
  EXPECT_EQ(usage.body["usage"]["replies"], 1);
  EXPECT_EQ(usage.body["usage"]["creditsCharged"], 1);
  const Reply bad_month = Rest("GET", "/api/user/usage?month=2026-13", alice);
  EXPECT_EQ(bad_month.status, 400);

  const Reply exported = Rest("GET", "/api/user/export", alice);
  ASSERT_EQ(exported.status, 200);
  ASSERT_TRUE(exported.body.is_object()) << "not one JSON document";
  EXPECT_EQ(exported.body["userId"], "alice");
  ASSERT_EQ(exported.body["sessions"].size(), 1u);
  EXPECT_EQ(exported.body["sessions"][0]["id"], alice_session_);
  EXPECT_EQ(exported.body["sessions"][0]["messages"].size(), 2u);

  const Reply erased = Rest("DELETE", "/api/user", alice);
  ASSERT_EQ(erased.status, 200) << erased.body.dump();
  EXPECT_EQ(erased.body["deletedSessions"], 1);
  EXPECT_EQ(erased.body["deletedMessages"], 2);
  EXPECT_EQ(Rest("GET", "/api/user/export", alice).body["sessions"].size(), 0u);
  // The usage and the credits stay.
  EXPECT_EQ(Rest("GET", "/api/user/usage", alice).body["usage"]["replies"], 1);
  EXPECT_EQ(
      Rest("GET", "/api/user/stats", alice).body["stats"]["remainingCredits"],
      4);
}

TEST_F(AuthTest, RestBobCannotReachAlicesData) {
  const std::string bob = TokenOf("bob");
  const std::string path = "/api/chat/sessions/" + alice_session_;
  struct Case {
    const char* method;
    std::string path;
    json body;
  };
  const std::vector<Case> cases = {
      {"GET", "/api/chat/sessions?userId=alice", nullptr},
      {"POST", "/api/chat/sessions", {{"userId", "alice"}, {"title", "x"}}},
      {"GET", path, nullptr},
      {"GET", path + "?userId=alice", nullptr},
      {"PATCH", path, {{"title", "Volé"}}},
      {"DELETE", path, nullptr},
      {"POST",
       "/api/chat/send",
       {{"sessionId", alice_session_}, {"message", "Coucou"}}},
      {"POST", "/api/chat/send", {{"userId", "alice"}, {"message", "Coucou"}}},
      {"GET", "/api/chat/history?userId=alice", nullptr},
      {"GET", "/api/user/stats?userId=alice", nullptr},
      {"GET", "/api/user/usage?userId=alice", nullptr},
      {"GET", "/api/user/export?userId=alice", nullptr},
      {"DELETE", "/api/user?userId=alice", nullptr},
  };
  for (const Case& c : cases) {
    const Reply reply = Rest(c.method, c.path, bob, c.body);
    EXPECT_EQ(reply.status, 403) << c.method << " " << c.path;
    const std::string code = reply.body.value("code", "");
    EXPECT_TRUE(code == "SESSION_FORBIDDEN" || code == "USER_FORBIDDEN")
        << c.method << " " << c.path << ": " << reply.body.dump();
    EXPECT_TRUE(reply.body.contains("error") && reply.body.contains("message"));
  }
  EXPECT_EQ(AliceSession(), alice_before_);
  const Reply listed = Rest("GET", "/api/chat/sessions", bob);
  EXPECT_EQ(listed.status, 200);
  EXPECT_EQ(listed.body, json({{"sessions", json::array()}}));
}

TEST_F(AuthTest, RestRefusesMissingAndBadTokensWithWwwAuthenticate) {
  const Reply missing = Rest("GET", "/api/chat/sessions", "");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.www_authenticate, "Bearer");
  EXPECT_EQ(missing.body.value("code", ""), "UNAUTHENTICATED");
  EXPECT_EQ(missing.body.value("error", ""), "Non authentifié");
  EXPECT_FALSE(missing.body.value("message", "").empty());

  json expired = ClaimsFor("alice", MidNovember2026());
  expired["exp"] = absl::ToUnixSeconds(MidNovember2026() - absl::Hours(1));
  // Refused by the strict rules (issue 24) as any other bad token is.
  json forever = ClaimsFor("alice", MidNovember2026());
  forever["exp"] = 1e300;
  json from_tomorrow = ClaimsFor("alice", MidNovember2026());
  from_tomorrow["iat"] =
      absl::ToUnixSeconds(MidNovember2026() + absl::Hours(24));
  const std::string critical = SigningKey::Hs256(kAuthSecret)
                                   .Sign(ClaimsFor("alice", MidNovember2026()),
                                         {{"crit", json::array({"exp-policy"})},
                                          {"exp-policy", "ignore"}});
  for (const std::string& token :
       {std::string("garbage"), SigningKey::Hs256(kAuthSecret).Sign(expired),
        UnsignedToken(ClaimsFor("alice", MidNovember2026())),
        SigningKey::Hs256(kAuthSecret).Sign(forever),
        SigningKey::Hs256(kAuthSecret).Sign(from_tomorrow), critical}) {
    const Reply reply = Rest("POST", "/api/chat/send", token,
                             {{"sessionId", alice_session_}, {"message", "x"}});
    EXPECT_EQ(reply.status, 401) << token;
    EXPECT_EQ(reply.www_authenticate, "Bearer error=\"invalid_token\"");
    EXPECT_EQ(reply.body.value("code", ""), "UNAUTHENTICATED");
  }
  EXPECT_EQ(AliceSession(), alice_before_);
}

TEST_F(AuthTest, RestSendWithoutUserIdActsForTheTokensUser) {
  const Reply sent =
      Rest("POST", "/api/chat/send", TokenOf("alice"),
           {{"sessionId", alice_session_}, {"message", "Merci !"}});
  ASSERT_EQ(sent.status, 200) << sent.body.dump();
  EXPECT_EQ(sent.body.value("sessionId", ""), alice_session_);
  EXPECT_EQ(sent.body["remainingCredits"], 3);
}

TEST_F(AuthTest, CorsAllowsTheAuthorizationHeader) {
  httplib::Headers headers = {
      {"Origin", "https://app.example"},
      {"Access-Control-Request-Method", "POST"},
      {"Access-Control-Request-Headers", "authorization"}};
  auto result = stack_.http().Options("/api/chat/send", headers);
  ASSERT_TRUE(result);
  EXPECT_NE(result->get_header_value("Access-Control-Allow-Headers")
                .find("Authorization"),
            std::string::npos);
}

}  // namespace
}  // namespace coach::testing
