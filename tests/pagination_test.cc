// Cursor pagination (AIP-158) of ListSessions, GetSession's messages and
// GetHistory: over gRPC against a real coach-server, then over REST through
// the real coach-proxy (query parameters pageSize/pageToken, nextPageToken
// in the JSON), on a real SQLite file. The storage side, on both engines,
// is in store_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "tests/support/store_calls.h"
#include "tests/support/test_stack.h"

namespace coach::testing {
namespace {

using json = nlohmann::json;

constexpr int kMaxPageSize = 50;
constexpr int kMaxMessagesPerSession = 4;

Config PagingConfig() {
  Config config = TestConfig();
  config.limits.max_page_size = kMaxPageSize;
  config.limits.max_messages_per_session = kMaxMessagesPerSession;
  // Room for the 1,000-session walk and the sessions created during it.
  config.limits.max_sessions_listed = 2000;
  config.user_limits.max_sessions_per_user = 2000;
  return config;
}

bool IsInvalidOn(const grpc::Status& status, const std::string& field) {
  const ErrorDetail detail = ErrorInfoOf(status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
  EXPECT_EQ(detail.reason, "INVALID_ARGUMENT");
  EXPECT_EQ(detail.field, field) << status.error_message();
  return status.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
         detail.field == field;
}

class PaginationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(stack_.start_error().ok()) << stack_.start_error();
  }
  TestServer& server() { return stack_.server(); }

  // A session of `user` created over gRPC, `step` after the previous one.
  std::string Create(const std::string& user,
                     absl::Duration step = absl::Milliseconds(1)) {
    server().clock().Advance(step);
    v1::CreateSessionRequest request;
    request.set_user_id(user);
    v1::CreateSessionResponse response;
    EXPECT_TRUE(server()
                    .chat()
                    .CreateSession(Context().get(), request, &response)
                    .ok());
    return response.session().id();
  }

  grpc::Status List(const std::string& user, int page_size,
                    const std::string& token, v1::ListSessionsResponse* out) {
    v1::ListSessionsRequest request;
    request.set_user_id(user);
    request.set_page_size(page_size);
    request.set_page_token(token);
    return server().chat().ListSessions(Context().get(), request, out);
  }

  grpc::Status History(const std::string& user, std::optional<int> limit,
                       int page_size, const std::string& token,
                       v1::GetHistoryResponse* out) {
    v1::GetHistoryRequest request;
    request.set_user_id(user);
    if (limit.has_value()) request.set_limit(*limit);
    request.set_page_size(page_size);
    request.set_page_token(token);
    return server().chat().GetHistory(Context().get(), request, out);
  }

  grpc::Status GetSession(const std::string& id, const std::string& user,
                          int page_size, const std::string& token,
                          v1::GetSessionResponse* out) {
    v1::GetSessionRequest request;
    request.set_session_id(id);
    request.set_user_id(user);
    request.set_page_size(page_size);
    request.set_page_token(token);
    return server().chat().GetSession(Context().get(), request, out);
  }

  // The ids of every session of `user`, unpaged (newest first).
  std::vector<std::string> Unpaged(const std::string& user) {
    v1::ListSessionsResponse all;
    EXPECT_TRUE(List(user, 0, "", &all).ok());
    EXPECT_FALSE(all.has_next_page_token());
    std::vector<std::string> ids;
    for (const auto& s : all.sessions()) ids.push_back(s.id());
    return ids;
  }

  // A token handed out for `user`'s sessions (more than `page_size` exist).
  std::string FirstToken(const std::string& user, int page_size) {
    v1::ListSessionsResponse page;
    EXPECT_TRUE(List(user, page_size, "", &page).ok());
    EXPECT_TRUE(page.has_next_page_token());
    return page.next_page_token();
  }

  TestStack stack_{PagingConfig()};
};

// ------------------------------------------------------------------ gRPC

TEST_F(PaginationTest, ListSessionsPagesWalkTheUnpagedListInOrder) {
  for (int i = 0; i < 7; ++i) {
    // Pairs at the same instant: ties are broken as the unpaged list does.
    Create("alice", i % 2 == 0 ? absl::Seconds(1) : absl::ZeroDuration());
  }
  Create("bob");
  const std::vector<std::string> expected = Unpaged("alice");
  ASSERT_EQ(expected.size(), 7u);

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    v1::ListSessionsResponse page;
    ASSERT_TRUE(List("alice", 3, token, &page).ok());
    ++pages;
    for (const auto& s : page.sessions()) seen.push_back(s.id());
    token = page.has_next_page_token() ? page.next_page_token() : "";
    // Only when more remain: never an empty token, never on the last page.
    if (page.has_next_page_token()) {
      EXPECT_FALSE(token.empty());
    }
  } while (!token.empty());
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(pages, 3);

  // A page size that divides the list: the last full page says "no more".
  v1::ListSessionsResponse all;
  ASSERT_TRUE(List("alice", 7, "", &all).ok());
  EXPECT_EQ(all.sessions_size(), 7);
  EXPECT_FALSE(all.has_next_page_token());
}

TEST_F(PaginationTest, PageSizeIsClampedToTheMaximumAndNegativeIsRefused) {
  for (int i = 0; i < kMaxPageSize + 2; ++i) Create("carol");
  v1::ListSessionsResponse page;
  ASSERT_TRUE(List("carol", 100000, "", &page).ok());
  EXPECT_EQ(page.sessions_size(), kMaxPageSize);
  EXPECT_TRUE(page.has_next_page_token());
  v1::ListSessionsResponse rest;
  ASSERT_TRUE(List("carol", 100000, page.next_page_token(), &rest).ok());
  EXPECT_EQ(rest.sessions_size(), 2);
  EXPECT_FALSE(rest.has_next_page_token());

  EXPECT_TRUE(IsInvalidOn(List("carol", -1, "", &page), "pageSize"));
  v1::GetHistoryResponse history;
  EXPECT_TRUE(IsInvalidOn(History("carol", std::nullopt, -5, "", &history),
                          "pageSize"));
}

TEST_F(PaginationTest, TokensAreBoundToTheirUserAndTheirList) {
  for (int i = 0; i < 3; ++i) {
    Create("dora");
    Create("eric");
  }
  const std::string doras = FirstToken("dora", 1);
  v1::ListSessionsResponse page;
  ASSERT_TRUE(List("dora", 1, doras, &page).ok());

  // Another user's token.
  EXPECT_TRUE(IsInvalidOn(List("eric", 1, doras, &page), "pageToken"));
  // A token of the sessions list, given to the history, and back.
  v1::GetHistoryResponse history;
  EXPECT_TRUE(IsInvalidOn(History("dora", std::nullopt, 1, doras, &history),
                          "pageToken"));
  ASSERT_TRUE(History("dora", std::nullopt, 1, "", &history).ok());
  ASSERT_TRUE(history.has_next_page_token());
  EXPECT_TRUE(IsInvalidOn(List("dora", 1, history.next_page_token(), &page),
                          "pageToken"));
  // Forged, cut, padded or not base64 at all.
  for (const std::string& bad :
       {std::string("abc"), std::string("!!!"),
        doras.substr(0, doras.size() / 2), doras + "AAAA",
        absl::WebSafeBase64Escape("1garbage"),
        absl::WebSafeBase64Escape(std::string(300, '\xff')),
        std::string(5000, 'A')}) {
    EXPECT_TRUE(IsInvalidOn(List("dora", 1, bad, &page), "pageToken")) << bad;
  }
  // The message is French and names the parameter.
  const grpc::Status refused = List("dora", 1, "abc", &page);
  EXPECT_THAT(refused.error_message(), ::testing::HasSubstr("« pageToken »"));
}

TEST_F(PaginationTest, HistoryPagesKeepStatsOverEverything) {
  std::vector<std::string> sessions;
  for (int i = 0; i < 5; ++i) {
    server().clock().Advance(absl::Seconds(1));
    v1::SendMessageResponse sent;
    ASSERT_TRUE(
        server().Send("fanny", "", "Bonjour " + std::to_string(i), &sent).ok());
    sessions.insert(sessions.begin(), sent.session_id());  // newest first
  }
  std::vector<std::string> seen;
  std::string token;
  do {
    v1::GetHistoryResponse page;
    ASSERT_TRUE(History("fanny", std::nullopt, 2, token, &page).ok());
    EXPECT_EQ(page.stats().total_sessions(), 5);
    EXPECT_EQ(page.stats().total_messages(), 10);
    for (const auto& h : page.history()) seen.push_back(h.id());
    token = page.next_page_token();
  } while (!token.empty());
  EXPECT_EQ(seen, sessions);

  // Unpaged: as before, no token even when `limit` cut the list.
  v1::GetHistoryResponse limited;
  ASSERT_TRUE(History("fanny", 2, 0, "", &limited).ok());
  EXPECT_EQ(limited.history_size(), 2);
  EXPECT_FALSE(limited.has_next_page_token());
  // `limit` with pageSize is ambiguous: refused on `limit`.
  EXPECT_TRUE(IsInvalidOn(History("fanny", 2, 2, "", &limited), "limit"));
}

TEST_F(PaginationTest, SessionMessagesPageFromTheOldest) {
  v1::SendMessageResponse sent;
  ASSERT_TRUE(server().Send("gina", "", "Un", &sent).ok());
  const std::string id = sent.session_id();
  ASSERT_TRUE(server().Send("gina", id, "Deux").ok());
  ASSERT_TRUE(server().Send("gina", id, "Trois").ok());  // 6 messages

  // Unpaged: the newest kMaxMessagesPerSession, as documented, no token.
  v1::GetSessionResponse unpaged;
  ASSERT_TRUE(GetSession(id, "gina", 0, "", &unpaged).ok());
  ASSERT_EQ(unpaged.session().messages_size(), kMaxMessagesPerSession);
  EXPECT_EQ(unpaged.session().messages(0).content(), "Deux");
  EXPECT_FALSE(unpaged.has_next_page_token());

  // Paged: every message once, oldest first.
  std::vector<std::string> contents;
  std::string token;
  int pages = 0;
  do {
    v1::GetSessionResponse page;
    ASSERT_TRUE(
        GetSession(id, pages % 2 == 0 ? "" : "gina", 4, token, &page).ok());
    ++pages;
    for (const auto& m : page.session().messages()) {
      if (m.role() == v1::USER) contents.push_back(m.content());
    }
    token = page.next_page_token();
  } while (!token.empty());
  EXPECT_EQ(contents, (std::vector<std::string>{"Un", "Deux", "Trois"}));
  EXPECT_EQ(pages, 2);

  // A token of this session's messages is refused on another session, and a
  // sessions token on the messages.
  v1::GetSessionResponse first;
  ASSERT_TRUE(GetSession(id, "", 1, "", &first).ok());
  ASSERT_TRUE(first.has_next_page_token());
  ASSERT_TRUE(server().Send("gina", "", "Ailleurs", &sent).ok());
  v1::GetSessionResponse other;
  EXPECT_TRUE(IsInvalidOn(
      GetSession(sent.session_id(), "", 1, first.next_page_token(), &other),
      "pageToken"));
  EXPECT_TRUE(IsInvalidOn(GetSession(id, "", 1, FirstToken("gina", 1), &other),
                          "pageToken"));
}

// ------------------------------------------------------------------ REST

json GetJson(httplib::Client& http, const std::string& path, int* status) {
  httplib::Result result = http.Get(path);
  if (!result) {
    ADD_FAILURE() << "GET " << path << ": no answer";
    *status = 0;
    return json();
  }
  *status = result->status;
  return json::parse(result->body, nullptr, /*allow_exceptions=*/false);
}

std::set<std::string> Keys(const json& object) {
  std::set<std::string> keys;
  if (object.is_object()) {
    for (const auto& item : object.items()) keys.insert(item.key());
  }
  return keys;
}

std::string UrlEncode(const std::string& text) {
  return httplib::detail::encode_query_param(text);
}

// The closing note's figures: a walk over 1,000 sessions, page by page,
// while a session is created over REST between pages. Every session that
// existed when the walk began is seen exactly once, in the unpaged order;
// none created during the walk (newer, so before the cursor) shows up.
TEST_F(PaginationTest, RestWalkOverAThousandSessionsWhileSessionsAreCreated) {
  constexpr int kSessions = 1000;
  constexpr int kPageSize = 37;  // not a divisor: a short last page
  const absl::Time base = server().clock().Now();
  for (int i = 0; i < kSessions; ++i) {
    // Runs of three at the same microsecond: ties are part of the walk.
    const absl::Time at = base + absl::Microseconds(i / 3);
    ASSERT_TRUE(
        CreateSessionAtMost(server().store(),
                            SessionRecord{.id = absl::StrCat("walk-", i),
                                          .user_id = "walker",
                                          .title = "Titre",
                                          .last_message = "",
                                          .message_count = 0,
                                          .created_at = at,
                                          .updated_at = at},
                            /*max_sessions=*/0,
                            CreditTerms{.period = "2026-11",
                                        .allowance = {},
                                        .new_user_plan = Plan::kFree},
                            at)
            .ok());
  }
  server().clock().Advance(absl::Seconds(1));
  const std::vector<std::string> expected = Unpaged("walker");
  ASSERT_EQ(expected.size(), static_cast<size_t>(kSessions));

  httplib::Client& http = stack_.http();
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  int created = 0;
  const auto started = std::chrono::steady_clock::now();
  for (;;) {
    std::string path =
        absl::StrCat("/api/chat/sessions?userId=walker&pageSize=", kPageSize);
    if (!token.empty()) absl::StrAppend(&path, "&pageToken=", UrlEncode(token));
    int status = 0;
    const json page = GetJson(http, path, &status);
    ASSERT_EQ(status, 200) << page.dump();
    ++pages;
    ASSERT_TRUE(page["sessions"].is_array());
    EXPECT_LE(page["sessions"].size(), static_cast<size_t>(kPageSize));
    for (const json& s : page["sessions"]) seen.push_back(s.value("id", ""));
    if (!page.contains("nextPageToken")) {
      EXPECT_EQ(Keys(page), std::set<std::string>{"sessions"});
      break;
    }
    ASSERT_TRUE(page["nextPageToken"].is_string());
    token = page["nextPageToken"].get<std::string>();
    ASSERT_FALSE(token.empty());
    // A new session between pages, through the API.
    httplib::Result made = http.Post(
        "/api/chat/sessions", R"({"userId":"walker"})", "application/json");
    ASSERT_TRUE(made && made->status == 200);
    ++created;
    ASSERT_LT(pages, 1000) << "the walk does not end";
  }
  const double took_ms = std::chrono::duration<double, std::milli>(
                             std::chrono::steady_clock::now() - started)
                             .count();
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(),
            seen.size());
  EXPECT_EQ(pages, (kSessions + kPageSize - 1) / kPageSize);
  // The figures, for the record (not asserted: no timed assertions).
  std::printf(
      "[paged walk] %d sessions, pageSize %d: %d pages, %zu seen once each, "
      "%d created during the walk, %.1f ms (%.2f ms per page, with the "
      "creates)\n",
      kSessions, kPageSize, pages, seen.size(), created, took_ms,
      took_ms / pages);
  // Now the list has the new sessions first.
  EXPECT_EQ(Unpaged("walker").size(), static_cast<size_t>(kSessions + created));
}

TEST_F(PaginationTest, RestBadTokenOrPageSizeIs400NamingTheParameter) {
  for (int i = 0; i < 3; ++i) Create("hugo");
  int status = 0;
  json body = GetJson(stack_.http(),
                      "/api/chat/sessions?userId=hugo&pageSize=1&pageToken=abc",
                      &status);
  EXPECT_EQ(status, 400) << body.dump();
  EXPECT_EQ(body.value("code", ""), "INVALID_ARGUMENT") << body.dump();
  EXPECT_THAT(body.value("message", ""), ::testing::HasSubstr("« pageToken »"));
  // Another user's token, over REST too.
  const std::string hugos = FirstToken("hugo", 1);
  body = GetJson(stack_.http(),
                 "/api/chat/history?userId=ines&pageToken=" + UrlEncode(hugos),
                 &status);
  EXPECT_EQ(status, 400) << body.dump();
  EXPECT_THAT(body.value("message", ""), ::testing::HasSubstr("« pageToken »"));
  // The field, once REST errors carry it (issue 16: "field" next to error).
  if (body.contains("field")) {
    EXPECT_EQ(body["field"], "pageToken");
  }

  body = GetJson(stack_.http(), "/api/chat/sessions?userId=hugo&pageSize=-1",
                 &status);
  EXPECT_EQ(status, 400) << body.dump();
  EXPECT_THAT(body.value("message", ""), ::testing::HasSubstr("« pageSize »"));
  body = GetJson(stack_.http(), "/api/chat/sessions?userId=hugo&pageSize=abc",
                 &status);
  EXPECT_EQ(status, 400) << body.dump();
  // Sizes beyond the cap are lowered to it, not refused, however large
  // (docs/api.md): past int32 too.
  for (const std::string path :
       {"/api/chat/sessions?userId=hugo&pageSize=99999999999",
        "/api/chat/history?userId=hugo&limit=99999999999",
        "/api/chat/history?userId=hugo&pageSize=99999999999"}) {
    body = GetJson(stack_.http(), path, &status);
    EXPECT_EQ(status, 200) << path << ": " << body.dump();
  }
}

TEST_F(PaginationTest, RestSessionMessagesAndHistoryPages) {
  v1::SendMessageResponse sent;
  ASSERT_TRUE(server().Send("jade", "", "Un", &sent).ok());
  ASSERT_TRUE(server().Send("jade", sent.session_id(), "Deux").ok());
  int status = 0;
  const std::string path = "/api/chat/sessions/" + sent.session_id();
  // Unpaged: the documented shape, no nextPageToken.
  json body = GetJson(stack_.http(), path, &status);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(Keys(body), std::set<std::string>{"session"});
  body = GetJson(stack_.http(), path + "?pageSize=3", &status);
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["session"]["messages"].size(), 3u);
  ASSERT_TRUE(body.contains("nextPageToken")) << body.dump();
  body = GetJson(stack_.http(),
                 path + "?pageSize=3&pageToken=" +
                     UrlEncode(body["nextPageToken"].get<std::string>()),
                 &status);
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["session"]["messages"].size(), 1u);
  EXPECT_FALSE(body.contains("nextPageToken"));

  ASSERT_TRUE(server().Send("jade", "", "Trois").ok());
  body = GetJson(stack_.http(), "/api/chat/history?userId=jade&pageSize=1",
                 &status);
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["history"].size(), 1u);
  EXPECT_EQ(body["stats"]["totalSessions"], 2);
  EXPECT_EQ(body["stats"]["totalMessages"], 6);
  EXPECT_TRUE(body.contains("nextPageToken"));
  body = GetJson(stack_.http(), "/api/chat/history?userId=jade", &status);
  EXPECT_EQ(Keys(body), (std::set<std::string>{"history", "stats"}));
}

}  // namespace
}  // namespace coach::testing
