// coach-proxy end to end: a real HTTP client (cpp-httplib) against the real
// CoachProxy, in front of a real coach-server on a real SQLite file, all on
// loopback (tests/support/test_stack.h). What a client written against
// ../shared/spec/api-chat.md sees: routes, JSON shapes, statuses, error
// bodies, the page's curl examples as written.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "proxy/proxy_flags.h"
#include "tests/support/ports.h"
#include "tests/support/raw_http.h"
#include "tests/support/test_stack.h"

namespace coach::testing {
namespace {

using json = nlohmann::json;

constexpr char kJson[] = "application/json";
constexpr char kJsonContentType[] = "application/json; charset=utf-8";
constexpr char kNoCreditsBody[] =
    R"({"error":"Crédits insuffisants","code":"NO_CREDITS",)"
    R"("message":"Vous avez épuisé vos crédits de chat. Passez à un )"
    R"(abonnement supérieur pour continuer."})";
constexpr char kOrigin[] = "https://app.example";

// ------------------------------------------------------------------ helpers

// One HTTP exchange: the status (0 when no answer came), the response and
// its body parsed as JSON (discarded when it is not JSON).
struct Reply {
  int status = 0;
  httplib::Response response;
  json doc;

  const std::string& body() const { return response.body; }
  std::string header(const char* name) const {
    return response.get_header_value(name);
  }
  bool has_header(const char* name) const { return response.has_header(name); }
};

Reply Exchange(httplib::Client& client, const std::string& method,
               const std::string& path, const std::string& body = "",
               const std::string& content_type = "",
               const httplib::Headers& headers = {}) {
  httplib::Request request;
  request.method = method;
  request.path = path;
  request.headers = headers;
  request.body = body;
  if (!content_type.empty()) request.set_header("Content-Type", content_type);
  Reply reply;
  httplib::Result result = client.send(request);
  if (!result) {
    ADD_FAILURE() << method << " " << path.substr(0, 200)
                  << ": no answer: " << httplib::to_string(result.error());
    return reply;
  }
  reply.status = result->status;
  reply.response = *result;
  reply.doc = json::parse(result->body, nullptr, /*allow_exceptions=*/false);
  return reply;
}

std::unique_ptr<httplib::Client> ClientFor(int port) {
  auto client = std::make_unique<httplib::Client>("127.0.0.1", port);
  client->set_connection_timeout(5);
  client->set_read_timeout(30);
  client->set_write_timeout(30);
  // Headers and body leave in two writes: without this, Nagle holds the body
  // for the server's delayed ACK (~40 ms per request).
  client->set_tcp_nodelay(true);
  return client;
}

std::set<std::string> Keys(const json& object) {
  std::set<std::string> keys;
  if (!object.is_object()) return keys;
  for (const auto& item : object.items()) keys.insert(item.key());
  return keys;
}

// A 200 with the documented content type and a JSON object body.
void ExpectOk(const Reply& r) {
  EXPECT_EQ(r.status, 200) << r.body();
  EXPECT_EQ(r.header("Content-Type"), kJsonContentType);
  EXPECT_TRUE(r.doc.is_object()) << r.body();
}

// The documented error body: exactly "error", "code", "message" in this
// order, all non-empty strings, then "field" when the error names one;
// `code` checked when given.
void ExpectError(const Reply& r, int status, const std::string& code) {
  EXPECT_EQ(r.status, status) << r.body();
  EXPECT_EQ(r.header("Content-Type"), kJsonContentType) << r.body();
  const auto body = nlohmann::ordered_json::parse(r.body(), nullptr,
                                                  /*allow_exceptions=*/false);
  ASSERT_TRUE(body.is_object()) << r.body();
  std::vector<std::string> keys;
  for (const auto& item : body.items()) {
    keys.push_back(item.key());
    EXPECT_TRUE(item.value().is_string() &&
                !item.value().get<std::string>().empty())
        << item.key() << " in " << r.body();
  }
  if (keys.size() == 4) {
    EXPECT_EQ(keys,
              (std::vector<std::string>{"error", "code", "message", "field"}))
        << r.body();
  } else {
    EXPECT_EQ(keys, (std::vector<std::string>{"error", "code", "message"}))
        << r.body();
  }
  if (!code.empty()) {
    EXPECT_EQ(body.value("code", ""), code) << r.body();
  }
}

std::string MessageOf(const Reply& r) {
  return r.doc.is_object() ? r.doc.value("message", "") : "";
}

// An RFC 3339 UTC timestamp ("...Z"); returns it parsed.
absl::Time ExpectTimestamp(const json& value) {
  absl::Time time = absl::InfinitePast();
  if (!value.is_string()) {
    ADD_FAILURE() << "not a timestamp: " << value.dump();
    return time;
  }
  const std::string text = value.get<std::string>();
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), 'Z') << text;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, text, &time, &error))
      << text << ": " << error;
  return time;
}

void ExpectMessageShape(const json& message, const std::string& role,
                        const std::string& content) {
  EXPECT_EQ(Keys(message),
            (std::set<std::string>{"id", "role", "content", "createdAt"}))
      << message.dump();
  EXPECT_FALSE(message.value("id", "").empty());
  EXPECT_EQ(message.value("role", ""), role);
  EXPECT_EQ(message.value("content", ""), content);
  ExpectTimestamp(message.value("createdAt", json()));
}

// Percent-encodes a query value (everything but unreserved characters).
std::string Encode(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0xF];
    }
  }
  return out;
}

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(stack_.start_error().ok()) << stack_.start_error();
    stack_.http().set_tcp_nodelay(true);  // see ClientFor
  }

  // A fresh connection to the stack's proxy.
  std::unique_ptr<httplib::Client> NewClient() {
    auto client = stack_.NewClient();
    client->set_tcp_nodelay(true);
    return client;
  }

  httplib::Client& http() { return stack_.http(); }
  TestServer& server() { return stack_.server(); }

  Reply Get(const std::string& path, const httplib::Headers& headers = {}) {
    return Exchange(http(), "GET", path, "", "", headers);
  }
  Reply Post(const std::string& path, const std::string& body) {
    return Exchange(http(), "POST", path, body, kJson);
  }
  Reply Patch(const std::string& path, const std::string& body) {
    return Exchange(http(), "PATCH", path, body, kJson);
  }
  Reply Delete(const std::string& path) {
    return Exchange(http(), "DELETE", path);
  }

  Reply Send(const std::string& user, const std::string& message,
             const std::string& session_id = "") {
    json body = {{"userId", user}, {"message", message}};
    if (!session_id.empty()) body["sessionId"] = session_id;
    return Post("/api/chat/send", body.dump());
  }
  // Creates a session through the API and returns its id.
  std::string NewSession(const std::string& user,
                         const std::string& title = "") {
    json body = {{"userId", user}};
    if (!title.empty()) body["title"] = title;
    Reply r = Post("/api/chat/sessions", body.dump());
    EXPECT_EQ(r.status, 200) << r.body();
    return r.doc.is_object() ? r.doc["session"].value("id", "") : "";
  }
  json Stats(const std::string& user) {
    Reply r = Get("/api/user/stats?userId=" + Encode(user));
    EXPECT_EQ(r.status, 200) << r.body();
    return r.doc.is_object() ? r.doc["stats"] : json();
  }
  static std::string SessionPath(const std::string& id,
                                 const std::string& user = "") {
    std::string path = "/api/chat/sessions/" + id;
    if (!user.empty()) path += "?userId=" + Encode(user);
    return path;
  }

  TestStack stack_;
};

// ------------------------------------------------------------------- routes

TEST_F(ProxyTest, SessionRoutesListCreateGetPatchDelete) {
  // A new user has no session: an empty list, printed.
  Reply r = Get("/api/chat/sessions?userId=alice");
  ExpectOk(r);
  EXPECT_EQ(r.body(), R"({"sessions":[]})");

  // Without a title: the default one.
  r = Post("/api/chat/sessions", R"({"userId":"alice"})");
  ExpectOk(r);
  json created = r.doc["session"];
  const std::string first = created.value("id", "");
  ASSERT_FALSE(first.empty()) << r.body();
  EXPECT_EQ(created.value("title", ""), "Nouvelle conversation");
  EXPECT_EQ(ExpectTimestamp(created["createdAt"]), server().clock().Now());
  EXPECT_TRUE(Keys(created).count("updatedAt"));

  // With a title, a minute later (lists are newest first).
  server().clock().Advance(absl::Minutes(1));
  r = Post("/api/chat/sessions",
           R"({"userId":"alice","title":"Ma conversation"})");
  ExpectOk(r);
  const std::string second = r.doc["session"].value("id", "");
  ASSERT_FALSE(second.empty());
  EXPECT_NE(second, first);
  EXPECT_EQ(r.doc["session"].value("title", ""), "Ma conversation");

  r = Get("/api/chat/sessions?userId=alice");
  ExpectOk(r);
  EXPECT_EQ(Keys(r.doc), std::set<std::string>{"sessions"});
  json& sessions = r.doc["sessions"];
  ASSERT_EQ(sessions.size(), 2u) << r.body();
  for (json& s : sessions) {
    EXPECT_EQ(Keys(s),
              (std::set<std::string>{"id", "title", "lastMessage",
                                     "messageCount", "createdAt", "updatedAt"}))
        << s.dump();
    // Defaults are printed, not omitted.
    EXPECT_EQ(s["messageCount"], 0) << s.dump();
    EXPECT_EQ(s["lastMessage"], "") << s.dump();
    ExpectTimestamp(s["createdAt"]);
    ExpectTimestamp(s["updatedAt"]);
  }
  EXPECT_EQ(sessions[0]["id"], second);
  EXPECT_EQ(sessions[1]["id"], first);
  EXPECT_NE(r.body().find("\"messageCount\":0"), std::string::npos);

  // Another user sees none of them.
  r = Get("/api/chat/sessions?userId=bob");
  ExpectOk(r);
  EXPECT_TRUE(r.doc["sessions"].empty());

  // GET: the session with its (empty, printed) messages.
  for (const std::string& path :
       {SessionPath(second), SessionPath(second, "alice")}) {
    r = Get(path);
    ExpectOk(r);
    json& s = r.doc["session"];
    EXPECT_EQ(Keys(s), (std::set<std::string>{"id", "title", "createdAt",
                                              "updatedAt", "messages"}))
        << r.body();
    EXPECT_EQ(s["id"], second);
    EXPECT_EQ(s["title"], "Ma conversation");
    ASSERT_TRUE(s["messages"].is_array()) << r.body();
    EXPECT_TRUE(s["messages"].empty());
    EXPECT_NE(r.body().find("\"messages\":[]"), std::string::npos);
  }
  ExpectError(Get(SessionPath(second, "bob")), 403, "SESSION_FORBIDDEN");

  // PATCH renames.
  r = Patch(SessionPath(second), R"({"title":"Nouveau titre"})");
  ExpectOk(r);
  EXPECT_EQ(r.doc["session"]["title"], "Nouveau titre");
  EXPECT_EQ(r.doc["session"]["id"], second);
  r = Patch(SessionPath(second, "alice"),
            R"({"title":"Titre de la propriétaire"})");
  ExpectOk(r);
  EXPECT_EQ(r.doc["session"]["title"], "Titre de la propriétaire");
  // Another user's id in the body (in the query: PatchHonoursUserIdInTheQuery).
  ExpectError(Patch(SessionPath(second), R"({"title":"Volé","userId":"bob"})"),
              403, "SESSION_FORBIDDEN");
  r = Get(SessionPath(second));
  EXPECT_EQ(r.doc["session"]["title"], "Titre de la propriétaire") << r.body();

  // DELETE: another user's id is refused; the owner's and none succeed.
  ExpectError(Delete(SessionPath(second, "bob")), 403, "SESSION_FORBIDDEN");
  r = Delete(SessionPath(second, "alice"));
  ExpectOk(r);
  EXPECT_EQ(r.body(), R"({"success":true})");
  ExpectError(Get(SessionPath(second)), 404, "SESSION_NOT_FOUND");
  r = Delete(SessionPath(first));
  ExpectOk(r);
  EXPECT_EQ(r.doc["success"], true);
  r = Get("/api/chat/sessions?userId=alice");
  ExpectOk(r);
  EXPECT_TRUE(r.doc["sessions"].empty()) << r.body();
}

// docs/product-rules.md: GetSession, UpdateSession and DeleteSession take an
// optional owner check, over REST `?userId=`. PATCH must honour it as GET and
// DELETE do; ignoring it would let a client that relies on it rename another
// user's session.
TEST_F(ProxyTest, PatchHonoursUserIdInTheQuery) {
  const std::string id = NewSession("alice", "À moi");
  ASSERT_FALSE(id.empty());
  ExpectError(Patch(SessionPath(id, "bob"), R"({"title":"Volé"})"), 403,
              "SESSION_FORBIDDEN");
  EXPECT_EQ(Get(SessionPath(id)).doc["session"]["title"], "À moi");
  Reply r = Patch(SessionPath(id, "alice"), R"({"title":"Renommé"})");
  ExpectOk(r);
  EXPECT_EQ(r.doc["session"]["title"], "Renommé");
}

// docs/product-rules.md: PATCH answers the session as GET does, messages
// included; an answer with "messages": [] for a session that has some would
// tell a client that rebuilds its view from it that they are gone.
TEST_F(ProxyTest, PatchAnswersTheSessionAsGetDoes) {
  Reply sent = Send("alice", "Bonjour");
  ExpectOk(sent);
  const std::string id = sent.doc.value("sessionId", "");
  ExpectOk(Send("alice", "Encore", id));
  Reply patched = Patch(SessionPath(id), R"({"title":"Renommée"})");
  ExpectOk(patched);
  Reply got = Get(SessionPath(id));
  ExpectOk(got);
  EXPECT_EQ(patched.doc["session"]["messages"].size(), 4u) << patched.body();
  EXPECT_EQ(patched.doc, got.doc);
  EXPECT_EQ(got.doc["session"]["title"], "Renommée");
}

// docs/product-rules.md: the page calls the title optional; "" is no
// title.
TEST_F(ProxyTest, CreateWithAnEmptyTitleGetsTheDefaultTitle) {
  Reply r = Post("/api/chat/sessions", R"({"userId":"alice","title":""})");
  ExpectOk(r);
  EXPECT_EQ(r.doc["session"]["title"], "Nouvelle conversation") << r.body();
  // Only spaces is a title given blank: still refused.
  ExpectError(Post("/api/chat/sessions", R"({"userId":"alice","title":"  "})"),
              400, "INVALID_ARGUMENT");
}

TEST_F(ProxyTest, SendHistoryAndStats) {
  // A new user: stats with their defaults printed.
  json stats = Stats("carol");
  EXPECT_EQ(stats, json::parse(R"({"totalChats":0,"totalMessages":0,
      "remainingCredits":5,"plan":"FREE","status":"ACTIVE"})"));

  Reply r = Send("carol", "Comment aborder quelqu'un ?");
  ExpectOk(r);
  EXPECT_EQ(Keys(r.doc),
            (std::set<std::string>{"sessionId", "userMessage",
                                   "assistantMessage", "remainingCredits"}))
      << r.body();
  const std::string session = r.doc.value("sessionId", "");
  ASSERT_FALSE(session.empty());
  ExpectMessageShape(r.doc["userMessage"], "USER",
                     "Comment aborder quelqu'un ?");
  ASSERT_TRUE(r.doc["assistantMessage"].is_object());
  ExpectMessageShape(r.doc["assistantMessage"], "ASSISTANT",
                     r.doc["assistantMessage"].value("content", ""));
  EXPECT_FALSE(r.doc["assistantMessage"].value("content", "").empty());
  EXPECT_EQ(r.doc["remainingCredits"], 4);
  const json user_message = r.doc["userMessage"];
  const std::string reply = r.doc["assistantMessage"].value("content", "");
  EXPECT_EQ(server().coach().request_count(), 1);

  // The session holds both messages, oldest first.
  r = Get(SessionPath(session, "carol"));
  ExpectOk(r);
  json& messages = r.doc["session"]["messages"];
  ASSERT_EQ(messages.size(), 2u) << r.body();
  ExpectMessageShape(messages[0], "USER", "Comment aborder quelqu'un ?");
  ExpectMessageShape(messages[1], "ASSISTANT", reply);
  EXPECT_EQ(messages[0], user_message);

  // A second send into it, and a new empty session.
  server().clock().Advance(absl::Minutes(1));
  r = Send("carol", "Et ensuite ?", session);
  ExpectOk(r);
  EXPECT_EQ(r.doc["sessionId"], session);
  EXPECT_EQ(r.doc["remainingCredits"], 3);
  NewSession("carol", "Vide");

  r = Get("/api/chat/history?userId=carol&limit=10");
  ExpectOk(r);
  EXPECT_EQ(Keys(r.doc), (std::set<std::string>{"history", "stats"}));
  ASSERT_EQ(r.doc["history"].size(), 2u) << r.body();
  for (json& entry : r.doc["history"]) {
    EXPECT_EQ(Keys(entry),
              (std::set<std::string>{"id", "title", "preview", "messageCount",
                                     "createdAt", "updatedAt"}))
        << entry.dump();
    ExpectTimestamp(entry["createdAt"]);
    ExpectTimestamp(entry["updatedAt"]);
  }
  json& talked = r.doc["history"][1]["id"] == session ? r.doc["history"][1]
                                                      : r.doc["history"][0];
  EXPECT_EQ(talked["id"], session);
  EXPECT_EQ(talked["messageCount"], 4);
  EXPECT_FALSE(talked.value("preview", "").empty());
  EXPECT_EQ(r.doc["stats"],
            json::parse(R"({"totalSessions":2,"totalMessages":4})"));

  // limit caps the entries, not the totals.
  r = Get("/api/chat/history?userId=carol&limit=1");
  ExpectOk(r);
  EXPECT_EQ(r.doc["history"].size(), 1u);
  EXPECT_EQ(r.doc["stats"]["totalSessions"], 2);
  // Without limit.
  r = Get("/api/chat/history?userId=carol");
  ExpectOk(r);
  EXPECT_EQ(r.doc["history"].size(), 2u);

  r = Get("/api/user/stats?userId=carol");
  ExpectOk(r);
  EXPECT_EQ(Keys(r.doc), std::set<std::string>{"stats"});
  EXPECT_EQ(r.doc["stats"], json::parse(R"({"totalChats":2,"totalMessages":4,
      "remainingCredits":3,"plan":"FREE","status":"ACTIVE"})"));

  // An empty history is printed with its defaults.
  r = Get("/api/chat/history?userId=nobody");
  ExpectOk(r);
  EXPECT_EQ(
      r.doc,
      json::parse(
          R"({"history":[],"stats":{"totalSessions":0,"totalMessages":0}})"));
}

// ---------------------------------------------------------------- statuses

TEST_F(ProxyTest, FifthSendLeavesZeroCreditsAndSixthIs402AsDocumented) {
  std::string session;
  for (int i = 1; i <= 5; ++i) {
    Reply r = Send("dave", "Question " + std::to_string(i), session);
    ExpectOk(r);
    session = r.doc.value("sessionId", "");
    // 0 included: a set-but-zero count is printed, not omitted.
    EXPECT_EQ(r.doc["remainingCredits"], 5 - i) << r.body();
  }
  EXPECT_EQ(server().coach().request_count(), 5);

  for (const std::string& into : {session, std::string()}) {
    Reply r = Send("dave", "Encore une question", into);
    ExpectError(r, 402, "NO_CREDITS");
    EXPECT_EQ(r.body(), kNoCreditsBody);
  }
  // Refused before the coach is asked, and nothing stored.
  EXPECT_EQ(server().coach().request_count(), 5);
  json stats = Stats("dave");
  EXPECT_EQ(stats["remainingCredits"], 0);
  EXPECT_EQ(stats["totalMessages"], 10);
  EXPECT_EQ(stats["totalChats"], 1);
}

TEST_F(ProxyTest, PremiumHasNoRemainingCredits) {
  v1::SetPlanRequest request;
  request.set_user_id("erin");
  request.set_plan(v1::PREMIUM);
  v1::SetPlanResponse response;
  ASSERT_TRUE(
      server().users().SetPlan(AdminContext().get(), request, &response).ok());

  Reply r = Send("erin", "Bonjour");
  ExpectOk(r);
  // Unlimited: absent, as documented in the proto, rather than a lying 0.
  EXPECT_FALSE(r.doc.contains("remainingCredits")) << r.body();
  json stats = Stats("erin");
  EXPECT_EQ(stats["plan"], "PREMIUM");
  EXPECT_EQ(stats["status"], "ACTIVE");
  EXPECT_FALSE(stats.contains("remainingCredits")) << stats.dump();
}

TEST_F(ProxyTest, SendIntoAnotherUsersSessionIs403) {
  const std::string session = Send("frank", "Salut").doc.value("sessionId", "");
  ASSERT_FALSE(session.empty());
  Reply r = Send("grace", "Je m'invite", session);
  ExpectError(r, 403, "SESSION_FORBIDDEN");
  EXPECT_EQ(r.doc["error"], "Session non autorisée");
  EXPECT_EQ(server().coach().request_count(), 1);
  EXPECT_EQ(Stats("grace")["remainingCredits"], 5);
  EXPECT_EQ(Get(SessionPath(session)).doc["session"]["messages"].size(), 2u);
}

TEST_F(ProxyTest, UnknownSessionIs404) {
  const std::string unknown = "0b5c1c9e-0000-4000-8000-000000000000";
  for (const Reply& r :
       {Get(SessionPath(unknown)), Get(SessionPath(unknown, "henry")),
        Patch(SessionPath(unknown), R"({"title":"x"})"),
        Delete(SessionPath(unknown)), Send("henry", "Bonjour", unknown)}) {
    ExpectError(r, 404, "SESSION_NOT_FOUND");
    EXPECT_EQ(r.doc.value("error", ""), "Session non trouvée");
  }
  EXPECT_EQ(server().coach().request_count(), 0);
  EXPECT_EQ(Stats("henry")["totalChats"], 0);
}

TEST_F(ProxyTest, StorageFailureIs500WithoutLeakingSql) {
  const std::string session =
      Send("ivan", "Bonjour").doc.value("sessionId", "");
  ASSERT_FALSE(session.empty());
  ExpectOk(Get(SessionPath(session)));

  // Break the database under the running server, as a corrupt or
  // mis-migrated file would.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(server().db_path().c_str(), &db,
                            SQLITE_OPEN_READWRITE, nullptr),
            SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* error = nullptr;
  const int rc =
      sqlite3_exec(db, "DROP TABLE messages", nullptr, nullptr, &error);
  const std::string error_text = error != nullptr ? error : "";
  sqlite3_free(error);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << error_text;

  for (const Reply& r : {Get(SessionPath(session)), Send("ivan", "Encore")}) {
    ExpectError(r, 500, "INTERNAL");
    EXPECT_EQ(r.doc.value("error", ""), "Erreur serveur") << r.body();
    const std::string message = MessageOf(r);
    EXPECT_NE(message.find("Réessayez"), std::string::npos) << message;
    for (const char* leak : {"SQL", "sql", "table", "messages", "no such"}) {
      EXPECT_EQ(r.body().find(leak), std::string::npos)
          << leak << ": " << r.body();
    }
  }
}

TEST(ProxyWithoutServerTest, ServerDownIs503Quickly) {
  const RefusingLoopbackPort refusing;
  ASSERT_NE(refusing.port(), 0);
  const int closed_port = refusing.port();

  proxy::ProxyConfig config = TestProxyConfig(closed_port);
  // Reads wait this long for a server to come back, then answer 503.
  config.upstream_read_deadline = absl::Milliseconds(500);
  auto proxy = proxy::CoachProxy::Start(config);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto client = ClientFor((*proxy)->port());

  for (int attempt = 0; attempt < 2; ++attempt) {
    const auto started = std::chrono::steady_clock::now();
    const Reply stats = Exchange(*client, "GET", "/api/user/stats?userId=u");
    const Reply send = Exchange(*client, "POST", "/api/chat/send",
                                R"({"userId":"u","message":"Bonjour"})", kJson);
    // Fail fast, far below the 60 s upstream deadline.
    EXPECT_LT(std::chrono::steady_clock::now() - started,
              std::chrono::seconds(5));
    for (const Reply* r : {&stats, &send}) {
      ExpectError(*r, 503, "UNAVAILABLE");
      EXPECT_NE(MessageOf(*r).find("indisponible"), std::string::npos)
          << r->body();
      // gRPC's technical message stays in the logs.
      for (const char* leak : {"connect", "127.0.0.1", "ipv4", "refused"}) {
        EXPECT_EQ(r->body().find(leak), std::string::npos) << r->body();
      }
    }
  }
  // The proxy's own answers need no server.
  ExpectError(Exchange(*client, "GET", "/nope"), 404, "ROUTE_NOT_FOUND");
  (*proxy)->Stop();
}

TEST_F(ProxyTest, CoachUnavailableIs503AndCostsNothing) {
  server().coach().FailWith(absl::UnavailableError("x"));
  Reply r = Send("judy", "Bonjour");
  ExpectError(r, 503, "AI_UNAVAILABLE");
  EXPECT_EQ(r.doc["error"], "Coach IA indisponible");
  EXPECT_NE(MessageOf(r).find("indisponible"), std::string::npos);
  EXPECT_EQ(Stats("judy")["remainingCredits"], 5);
}

TEST_F(ProxyTest, UnknownRouteWrongMethodAndHugeBody) {
  Reply r = Get("/nope");
  ExpectError(r, 404, "ROUTE_NOT_FOUND");
  EXPECT_NE(MessageOf(r).find("/nope"), std::string::npos);

  r = Exchange(http(), "PUT", "/api/chat/send", R"({"userId":"u"})", kJson);
  ExpectError(r, 405, "METHOD_NOT_ALLOWED");
  EXPECT_EQ(r.header("Allow"), "POST");

  r = Exchange(http(), "POST", SessionPath("abc"), "{}", kJson);
  ExpectError(r, 405, "METHOD_NOT_ALLOWED");
  std::set<std::string> allowed;
  for (const absl::string_view m : absl::StrSplit(r.header("Allow"), ", ")) {
    allowed.emplace(m);
  }
  EXPECT_EQ(allowed, (std::set<std::string>{"GET", "HEAD", "PATCH", "DELETE"}));

  // Above COACH max_body_bytes (64 KiB): refused before the JSON is read.
  auto client = NewClient();
  const std::string huge =
      json({{"userId", "u"}, {"message", std::string(70 * 1024, 'a')}}).dump();
  r = Exchange(*client, "POST", "/api/chat/send", huge, kJson);
  ExpectError(r, 413, "PAYLOAD_TOO_LARGE");
  EXPECT_NE(MessageOf(r).find("octets"), std::string::npos) << r.body();
  EXPECT_EQ(server().coach().request_count(), 0);
}

TEST_F(ProxyTest, SlowServerIs504InTheDocumentedShape) {
  // A proxy with a short upstream deadline, and a coach that holds its reply
  // until a second send arrives.
  proxy::ProxyConfig config = TestProxyConfig(server().server().port());
  config.upstream_deadline = absl::Milliseconds(300);
  auto impatient = proxy::CoachProxy::Start(config);
  ASSERT_TRUE(impatient.ok()) << impatient.status();
  auto client = ClientFor((*impatient)->port());
  server().coach().HoldUntilConcurrent(2);

  const auto started = std::chrono::steady_clock::now();
  Reply r = Exchange(*client, "POST", "/api/chat/send",
                     R"({"userId":"liam","message":"Bonjour"})", kJson);
  EXPECT_LT(std::chrono::steady_clock::now() - started,
            std::chrono::seconds(5));
  ExpectError(r, 504, "DEADLINE_EXCEEDED");
  EXPECT_NE(MessageOf(r).find("à temps"), std::string::npos) << r.body();

  // The second send (through the patient proxy) releases both replies.
  ExpectOk(Send("mia", "Bonjour"));
  (*impatient)->Stop();
}

TEST_F(ProxyTest, EveryAnswerCarriesARequestId) {
  // Including those refused by the HTTP layer before routing (413, 414): a
  // client quoting the id of a failed call is how support finds its logs.
  const std::vector<std::pair<std::string, Reply>> answers = [&] {
    std::vector<std::pair<std::string, Reply>> all;
    all.emplace_back("200", Get("/api/user/stats?userId=u"));
    all.emplace_back("400", Get("/api/user/stats"));
    all.emplace_back("404", Get("/nope"));
    all.emplace_back("405",
                     Exchange(http(), "PUT", "/api/chat/send", "{}", kJson));
    auto fresh = NewClient();
    all.emplace_back("413", Exchange(*fresh, "POST", "/api/chat/send",
                                     std::string(70 * 1024, 'x'), kJson));
    fresh = NewClient();
    all.emplace_back(
        "414", Exchange(*fresh, "GET",
                        "/api/user/stats?userId=" + std::string(9000, 'u')));
    return all;
  }();
  for (const auto& [what, reply] : answers) {
    EXPECT_EQ(std::to_string(reply.status), what) << reply.body();
    EXPECT_FALSE(reply.header("X-Request-Id").empty()) << what;
  }
}

TEST_F(ProxyTest, MessagesAreFrench) {
  Reply r = Post("/api/chat/send", R"({"userId":"kim"})");
  ExpectError(r, 400, "INVALID_ARGUMENT");
  EXPECT_EQ(r.doc["error"], "Paramètres manquants ou invalides");
  EXPECT_NE(MessageOf(r).find("« message »"), std::string::npos) << r.body();
  EXPECT_NE(MessageOf(r).find("requis"), std::string::npos) << r.body();

  r = Get("/api/chat/sessions");
  ExpectError(r, 400, "INVALID_ARGUMENT");
  EXPECT_NE(MessageOf(r).find("« userId »"), std::string::npos) << r.body();

  r = Get("/api/chat/history?userId=kim&limit=abc");
  ExpectError(r, 400, "INVALID_ARGUMENT");
  EXPECT_NE(MessageOf(r).find("« limit »"), std::string::npos) << r.body();

  r = Post("/api/chat/send", R"({"userId":"kim","message":)");
  ExpectError(r, 400, "INVALID_ARGUMENT");
  EXPECT_NE(MessageOf(r).find("JSON"), std::string::npos) << r.body();
}

TEST_F(ProxyTest, UnicodeRoundTrip) {
  const std::string message =
      "Salut 👋🏽 ça va ? Très bien — 你好，世界 🇫🇷 «ok»";
  Reply r = Send("léa-😀", message);
  ExpectOk(r);
  EXPECT_EQ(r.doc["userMessage"]["content"], message);
  const std::string session = r.doc.value("sessionId", "");
  r = Get(SessionPath(session, "léa-😀"));
  ExpectOk(r);
  EXPECT_EQ(r.doc["session"]["messages"][0]["content"], message);
  // The session is titled from the (short) first message.
  EXPECT_EQ(r.doc["session"]["title"], message);

  const std::string title = "Café ☕ 日本語 😀 Ñandú";
  const std::string titled = NewSession("léa-😀", title);
  r = Get(SessionPath(titled));
  EXPECT_EQ(r.doc["session"]["title"], title) << r.body();
  const std::string renamed = "Été 🌞 — 한국어";
  r = Patch(SessionPath(titled), json({{"title", renamed}}).dump());
  ExpectOk(r);
  EXPECT_EQ(r.doc["session"]["title"], renamed);
  r = Get("/api/chat/sessions?userId=" + Encode("léa-😀"));
  ExpectOk(r);
  std::set<std::string> titles;
  for (const json& s : r.doc["sessions"]) titles.insert(s.value("title", ""));
  EXPECT_EQ(titles, (std::set<std::string>{message, renamed}));

  // Lengths count characters, not bytes: 200 "é" (400 bytes) fit.
  std::string long_title;
  for (int i = 0; i < 200; ++i) long_title += "é";
  r = Post("/api/chat/sessions",
           json({{"userId", "léa-😀"}, {"title", long_title}}).dump());
  ExpectOk(r);
  EXPECT_EQ(r.doc["session"]["title"], long_title);
}

// ---------------------------------------------------------------- curl page

TEST_F(ProxyTest, CurlExamplesAsWritten) {
  // The bodies exactly as the shell hands them to `curl -d` ('\'' is ').
  const std::string start = R"({
    "userId": "user123",
    "message": "Bonjour, j'ai besoin de conseils pour améliorer ma confiance en moi"
  })";
  const std::string go_on = R"({
    "userId": "user123",
    "sessionId": "session456",
    "message": "Comment puis-je me sentir plus à l'aise dans les situations sociales ?"
  })";

  // 1. Démarrer une conversation.
  Reply r = Exchange(http(), "POST", "/api/chat/send", start, kJson);
  ExpectOk(r);
  const std::string session = r.doc.value("sessionId", "");
  ASSERT_FALSE(session.empty());
  ExpectMessageShape(r.doc["userMessage"], "USER",
                     "Bonjour, j'ai besoin de conseils pour améliorer ma "
                     "confiance en moi");
  EXPECT_EQ(r.doc["remainingCredits"], 4);

  // 2. Continuer une conversation, as written: "session456" does not exist.
  r = Exchange(http(), "POST", "/api/chat/send", go_on, kJson);
  ExpectError(r, 404, "SESSION_NOT_FOUND");
  EXPECT_EQ(server().coach().request_count(), 1);

  // ... and with the session the first example returned.
  std::string real = go_on;
  real.replace(real.find("session456"), std::string("session456").size(),
               session);
  r = Exchange(http(), "POST", "/api/chat/send", real, kJson);
  ExpectOk(r);
  EXPECT_EQ(r.doc["sessionId"], session);
  EXPECT_EQ(r.doc["userMessage"]["content"],
            "Comment puis-je me sentir plus à l'aise dans les situations "
            "sociales ?");
  EXPECT_EQ(r.doc["remainingCredits"], 3);
  // The conversation continues: the coach saw both turns before this one.
  const auto requests = server().coach().requests();
  ASSERT_EQ(requests.size(), 2u);
  ASSERT_EQ(requests[1].conversation.size(), 3u);
  EXPECT_EQ(requests[1].conversation[0].content,
            "Bonjour, j'ai besoin de conseils pour améliorer ma confiance en "
            "moi");

  // 3. Récupérer l'historique.
  r = Get("/api/chat/history?userId=user123&limit=10");
  ExpectOk(r);
  ASSERT_EQ(r.doc["history"].size(), 1u) << r.body();
  EXPECT_EQ(r.doc["history"][0]["id"], session);
  EXPECT_EQ(r.doc["history"][0]["messageCount"], 4);
  EXPECT_EQ(r.doc["stats"]["totalSessions"], 1);
  EXPECT_EQ(r.doc["stats"]["totalMessages"], 4);
  r = Get(SessionPath(session));
  ASSERT_EQ(r.doc["session"]["messages"].size(), 4u);
}

// --------------------------------------------------------------- hygiene

TEST_F(ProxyTest, RequestIdGeneratedEchoedOrReplaced) {
  Reply a = Get("/api/user/stats?userId=u");
  Reply b = Get("/api/user/stats?userId=u");
  const std::string generated = a.header("X-Request-Id");
  EXPECT_FALSE(generated.empty());
  EXPECT_NE(generated, b.header("X-Request-Id"));

  const std::string plain = "req-42_abc.DEF:9";
  Reply r = Get("/api/user/stats?userId=u", {{"X-Request-Id", plain}});
  ExpectOk(r);
  EXPECT_EQ(r.header("X-Request-Id"), plain);
  // Errors carry it too.
  r = Get("/nope", {{"X-Request-Id", plain}});
  EXPECT_EQ(r.header("X-Request-Id"), plain);

  for (const std::string& garbage :
       {std::string("has spaces in it"), std::string(500, 'a'),
        std::string("semi;colon"), std::string("caf\xc3\xa9")}) {
    r = Get("/api/user/stats?userId=u", {{"X-Request-Id", garbage}});
    ExpectOk(r);
    const std::string replaced = r.header("X-Request-Id");
    EXPECT_FALSE(replaced.empty());
    EXPECT_NE(replaced, garbage);
    EXPECT_LE(replaced.size(), 128u);
  }
}

TEST_F(ProxyTest, CorsForBrowsers) {
  // A simple request from a page: allowed (default "*"), even on errors.
  for (const std::string& path :
       {std::string("/api/user/stats?userId=u"), std::string("/nope")}) {
    const Reply r = Get(path, {{"Origin", kOrigin}});
    EXPECT_EQ(r.header("Access-Control-Allow-Origin"), "*") << path;
    EXPECT_NE(r.header("Access-Control-Expose-Headers").find("X-Request-Id"),
              std::string::npos);
    // What a page needs to read from errors and replays.
    for (const char* header :
         {"Retry-After", "WWW-Authenticate", "Idempotent-Replayed"}) {
      EXPECT_NE(r.header("Access-Control-Expose-Headers").find(header),
                std::string::npos)
          << header;
    }
  }
  // Without Origin, no CORS headers.
  EXPECT_FALSE(Get("/api/user/stats?userId=u")
                   .has_header("Access-Control-Allow-Origin"));

  // Preflight.
  const Reply r =
      Exchange(http(), "OPTIONS", "/api/chat/send", "", "",
               {{"Origin", kOrigin},
                {"Access-Control-Request-Method", "POST"},
                {"Access-Control-Request-Headers", "content-type"}});
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.header("Access-Control-Allow-Origin"), "*");
  const std::string methods = r.header("Access-Control-Allow-Methods");
  for (const char* m : {"GET", "POST", "PATCH", "DELETE"}) {
    EXPECT_NE(methods.find(m), std::string::npos) << methods;
  }
  EXPECT_NE(r.header("Access-Control-Allow-Headers").find("Content-Type"),
            std::string::npos);
  EXPECT_FALSE(r.header("Access-Control-Max-Age").empty());
}

TEST_F(ProxyTest, CorsWithAnExplicitOriginList) {
  proxy::ProxyConfig config = TestProxyConfig(server().server().port());
  config.cors_origins = {kOrigin};
  auto proxy = proxy::CoachProxy::Start(config);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto client = ClientFor((*proxy)->port());

  Reply r = Exchange(*client, "GET", "/api/user/stats?userId=u", "", "",
                     {{"Origin", kOrigin}});
  ExpectOk(r);
  EXPECT_EQ(r.header("Access-Control-Allow-Origin"), kOrigin);
  EXPECT_EQ(r.header("Vary"), "Origin");

  r = Exchange(*client, "GET", "/api/user/stats?userId=u", "", "",
               {{"Origin", "https://evil.example"}});
  ExpectOk(r);  // the server answers; the browser withholds it
  EXPECT_FALSE(r.has_header("Access-Control-Allow-Origin"));
  // Still an answer that depends on Origin, as is one to no Origin at all:
  // a shared cache must not serve either to the listed origin.
  EXPECT_EQ(r.header("Vary"), "Origin");
  r = Exchange(*client, "GET", "/api/user/stats?userId=u", "", "", {});
  ExpectOk(r);
  EXPECT_EQ(r.header("Vary"), "Origin");
  r = Exchange(*client, "OPTIONS", "/api/chat/send", "", "",
               {{"Origin", "https://evil.example"},
                {"Access-Control-Request-Method", "POST"}});
  EXPECT_FALSE(r.has_header("Access-Control-Allow-Methods"));
  (*proxy)->Stop();
}

TEST_F(ProxyTest, CorsAllowsAuthorizationAndConfiguredHeaders) {
  // The default list: a page may send a bearer token and JSON.
  Reply r = Exchange(
      http(), "OPTIONS", "/api/chat/sessions", "", "",
      {{"Origin", kOrigin},
       {"Access-Control-Request-Method", "GET"},
       {"Access-Control-Request-Headers", "authorization, content-type"}});
  EXPECT_EQ(r.status, 204);
  const std::string allowed = r.header("Access-Control-Allow-Headers");
  EXPECT_NE(allowed.find("Authorization"), std::string::npos) << allowed;
  EXPECT_NE(allowed.find("Content-Type"), std::string::npos) << allowed;
  // "*" never comes with credentials.
  EXPECT_FALSE(r.has_header("Access-Control-Allow-Credentials"));

  proxy::ProxyConfig config = TestProxyConfig(server().server().port());
  config.cors_origins = {kOrigin};
  config.cors_allowed_headers = {"Authorization", "X-Client-Version"};
  auto proxy = proxy::CoachProxy::Start(config);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto client = ClientFor((*proxy)->port());
  r = Exchange(*client, "OPTIONS", "/api/chat/send", "", "",
               {{"Origin", kOrigin},
                {"Access-Control-Request-Method", "POST"},
                {"Access-Control-Request-Headers", "x-client-version"}});
  EXPECT_EQ(r.status, 204);
  // The configured list, then the forwarded headers (always allowed).
  EXPECT_EQ(r.header("Access-Control-Allow-Headers"),
            "Authorization, X-Client-Version, Idempotency-Key");
  EXPECT_EQ(r.header("Access-Control-Allow-Origin"), kOrigin);
  EXPECT_EQ(r.header("Vary"), "Origin");
  EXPECT_FALSE(r.has_header("Access-Control-Allow-Credentials"));
  (*proxy)->Stop();
}

TEST_F(ProxyTest, CorsCredentialsOnlyForListedOrigins) {
  proxy::ProxyConfig config = TestProxyConfig(server().server().port());
  config.cors_origins = {kOrigin, "https://admin.example"};
  config.cors_allow_credentials = true;
  auto proxy = proxy::CoachProxy::Start(config);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  auto client = ClientFor((*proxy)->port());

  for (const char* origin : {kOrigin, "https://admin.example"}) {
    SCOPED_TRACE(origin);
    Reply r = Exchange(*client, "GET", "/api/user/stats?userId=u", "", "",
                       {{"Origin", origin}});
    ExpectOk(r);
    EXPECT_EQ(r.header("Access-Control-Allow-Origin"), origin);
    EXPECT_EQ(r.header("Access-Control-Allow-Credentials"), "true");
    EXPECT_EQ(r.header("Vary"), "Origin");
    r = Exchange(*client, "OPTIONS", "/api/chat/send", "", "",
                 {{"Origin", origin},
                  {"Access-Control-Request-Method", "POST"},
                  {"Access-Control-Request-Headers", "authorization"}});
    EXPECT_EQ(r.status, 204);
    EXPECT_EQ(r.header("Access-Control-Allow-Origin"), origin);
    EXPECT_EQ(r.header("Access-Control-Allow-Credentials"), "true");
    EXPECT_NE(r.header("Access-Control-Allow-Headers").find("Authorization"),
              std::string::npos);
  }
  // Another site gets nothing: no origin, no credentials.
  const Reply r = Exchange(*client, "GET", "/api/user/stats?userId=u", "", "",
                           {{"Origin", "https://evil.example"}});
  EXPECT_FALSE(r.has_header("Access-Control-Allow-Origin"));
  EXPECT_FALSE(r.has_header("Access-Control-Allow-Credentials"));
  (*proxy)->Stop();
}

TEST(ProxyCorsSettingsTest, AnyOriginWithCredentialsIsRefusedAtStart) {
  proxy::ProxyConfig config;
  config.http_listen = "127.0.0.1:0";
  config.cors_allow_credentials = true;  // with the default "*"
  auto proxy = proxy::CoachProxy::Start(config);
  ASSERT_FALSE(proxy.ok());
  EXPECT_EQ(proxy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(proxy.status().message().find("COACH_CORS_ORIGINS"),
            std::string::npos)
      << proxy.status();

  // The same through the settings, as the binary reads them.
  std::vector<std::string> args = {"coach-proxy", "--cors_origins=*",
                                   "--cors_allow_credentials=true"};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  auto loaded =
      proxy::LoadProxyConfig(static_cast<int>(argv.size()), argv.data());
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("COACH_CORS_ALLOW_CREDENTIALS"),
            std::string::npos)
      << loaded.status();
  args = {"coach-proxy", "--cors_origins=https://app.example",
          "--cors_allow_credentials=true", "--cors_allowed_headers=*"};
  argv.clear();
  for (std::string& arg : args) argv.push_back(arg.data());
  loaded = proxy::LoadProxyConfig(static_cast<int>(argv.size()), argv.data());
  EXPECT_FALSE(loaded.ok());
  args = {"coach-proxy", "--cors_origins=https://app.example",
          "--cors_allow_credentials=true"};
  argv.clear();
  for (std::string& arg : args) argv.push_back(arg.data());
  loaded = proxy::LoadProxyConfig(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->config.cors_allow_credentials);
}

// ------------------------------------------------------------ bad inputs

struct BadRequest {
  std::string name;
  std::string method;
  std::string path;
  std::string body;
  std::string content_type;
  int status;
  std::string code;
  // Words the French message must contain ("" for none).
  std::string mention;
};

constexpr char kBadUser[] = "bad-user";

BadRequest BadSend(std::string name, std::string body, std::string mention) {
  return {std::move(name), "POST", "/api/chat/send",   std::move(body),
          kJson,           400,    "INVALID_ARGUMENT", std::move(mention)};
}
BadRequest BadGet(std::string name, std::string path, std::string mention) {
  return {std::move(name),
          "GET",
          std::move(path),
          "",
          "",
          400,
          "INVALID_ARGUMENT",
          std::move(mention)};
}
BadRequest BadCreate(std::string name, const json& body, std::string mention) {
  return {std::move(name), "POST", "/api/chat/sessions", body.dump(),
          kJson,           400,    "INVALID_ARGUMENT",   std::move(mention)};
}
std::string SendBody(const json& user, const json& message) {
  return json({{"userId", user}, {"message", message}}).dump();
}

TEST_F(ProxyTest, BadInputTable) {
  // A session of another user, that the PATCH rows must leave untouched.
  const std::string owned = NewSession("owner", "Titre d'origine");
  ASSERT_FALSE(owned.empty());
  const std::string u = kBadUser;
  std::string e201;
  for (int i = 0; i < 201; ++i) e201 += "é";

  const std::vector<BadRequest> table = {
      // userId
      BadGet("list: userId missing", "/api/chat/sessions", "« userId »"),
      BadGet("list: userId empty", "/api/chat/sessions?userId=", "« userId »"),
      BadGet("list: userId blank", "/api/chat/sessions?userId=%20%09%20",
             "« userId »"),
      BadGet("list: userId 129 chars",
             "/api/chat/sessions?userId=" + std::string(129, 'u'), "128"),
      BadGet("list: userId invalid UTF-8", "/api/chat/sessions?userId=%FF%FE",
             "UTF-8"),
      BadGet("stats: userId missing", "/api/user/stats", "« userId »"),
      BadGet("stats: userId blank", "/api/user/stats?userId=%20%20%20",
             "« userId »"),
      BadGet("history: userId missing", "/api/chat/history?limit=10",
             "« userId »"),
      BadSend("send: userId missing", R"({"message":"Bonjour"})", "« userId »"),
      BadSend("send: userId empty", SendBody("", "Bonjour"), "« userId »"),
      BadSend("send: userId whitespace", SendBody(" \t\n ", "Bonjour"),
              "« userId »"),
      BadSend("send: userId 129 chars",
              SendBody(std::string(129, 'u'), "Bonjour"), "« userId »"),
      BadSend("send: userId a number", SendBody(42, "Bonjour"), ""),
      BadSend("send: userId an object", SendBody(json::object(), "Bonjour"),
              ""),
      // message
      BadSend("send: message missing", json({{"userId", u}}).dump(),
              "« message »"),
      BadSend("send: message empty", SendBody(u, ""), "« message »"),
      BadSend("send: message whitespace", SendBody(u, " \n\t  "),
              "« message »"),
      BadSend("send: message 4001 chars", SendBody(u, std::string(4001, 'm')),
              "4000"),
      BadSend("send: message a number", SendBody(u, 42), ""),
      BadSend("send: message an array", SendBody(u, json::array({"a"})), ""),
      BadSend("send: message an object", SendBody(u, json({{"text", "a"}})),
              ""),
      BadSend("send: message null", SendBody(u, nullptr), "« message »"),
      BadSend("send: message a boolean", SendBody(u, true), ""),
      BadSend("send: message invalid UTF-8",
              R"({"userId":"bad-user","message":"Bon)"
              "\xff\xfe"
              R"(jour"})",
              "JSON"),
      BadSend("send: sessionId 65 chars",
              json({{"userId", u},
                    {"sessionId", std::string(65, 's')},
                    {"message", "Bonjour"}})
                  .dump(),
              "« sessionId »"),
      BadSend("send: sessionId a number",
              json({{"userId", u}, {"sessionId", 7}, {"message", "Bonjour"}})
                  .dump(),
              ""),
      // not JSON, or not an object
      BadSend("send: empty body", "", "« userId »"),
      BadSend("send: truncated JSON", R"({"userId":"bad-user","message":"Bon)",
              "JSON"),
      BadSend("send: trailing comma",
              R"({"userId":"bad-user","message":"Bonjour",})", "JSON"),
      BadSend("send: single quotes",
              R"({'userId':'bad-user','message':'Bonjour'})", "JSON"),
      BadSend("send: body is an array", "[]", ""),
      BadSend("send: body is a string", R"("x")", ""),
      BadSend("send: body is a number", "42", ""),
      {"send: form-encoded body", "POST", "/api/chat/send",
       "userId=bad-user&message=Bonjour", "application/x-www-form-urlencoded",
       415, "UNSUPPORTED_MEDIA_TYPE", "JSON"},
      // A cross-site form's "simple request" (no preflight) carries JSON
      // as text/plain: refused.
      {"send: JSON as text/plain", "POST", "/api/chat/send",
       SendBody(u, "Bonjour"), "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE",
       "JSON"},
      // limit
      BadGet("history: limit=abc",
             "/api/chat/history?userId=bad-user&limit=abc", "« limit »"),
      BadGet("history: limit=0", "/api/chat/history?userId=bad-user&limit=0",
             "« limit »"),
      BadGet("history: limit=-1", "/api/chat/history?userId=bad-user&limit=-1",
             "« limit »"),
      BadGet("history: limit=1.5",
             "/api/chat/history?userId=bad-user&limit=1.5", "« limit »"),
      // (one beyond int32 upwards is capped: PaginationTest)
      BadGet("history: limit below int32",
             "/api/chat/history?userId=bad-user&limit=-99999999999",
             "« limit »"),
      BadGet("history: limit empty",
             "/api/chat/history?userId=bad-user&limit=", "« limit »"),
      // titles
      BadCreate("create: userId missing", json({{"title", "Titre"}}),
                "« userId »"),
      BadCreate("create: title blank", json({{"userId", u}, {"title", "   "}}),
                "« title »"),
      BadCreate("create: title 201 chars",
                json({{"userId", u}, {"title", std::string(201, 't')}}), "200"),
      BadCreate("create: title 201 accented chars",
                json({{"userId", u}, {"title", e201}}), "200"),
      BadCreate("create: title a number", json({{"userId", u}, {"title", 3}}),
                ""),
      {"patch: title empty", "PATCH", SessionPath(owned), R"({"title":""})",
       kJson, 400, "INVALID_ARGUMENT", "« title »"},
      {"patch: title blank", "PATCH", SessionPath(owned), R"({"title":" \t "})",
       kJson, 400, "INVALID_ARGUMENT", "« title »"},
      {"patch: title missing", "PATCH", SessionPath(owned), "{}", kJson, 400,
       "INVALID_ARGUMENT", "« title »"},
      {"patch: title 201 chars", "PATCH", SessionPath(owned),
       json({{"title", std::string(201, 't')}}).dump(), kJson, 400,
       "INVALID_ARGUMENT", "200"},
      {"patch: title an array", "PATCH", SessionPath(owned),
       R"({"title":["a"]})", kJson, 400, "INVALID_ARGUMENT", ""},
      {"patch: invalid JSON", "PATCH", SessionPath(owned), R"({"title":)",
       kJson, 400, "INVALID_ARGUMENT", "JSON"},
      // session ids in the path
      BadGet("get: sessionId 65 chars", SessionPath(std::string(65, 's')),
             "« sessionId »"),
      BadGet("get: sessionId invalid UTF-8", "/api/chat/sessions/%FF%FE",
             "UTF-8"),
      BadGet("get: sessionId blank", "/api/chat/sessions/%20%20",
             "« sessionId »"),
      // sizes, routes, methods
      {"send: body above 64 KiB", "POST", "/api/chat/send",
       SendBody(u, std::string(70 * 1024, 'm')), kJson, 413,
       "PAYLOAD_TOO_LARGE", "octets"},
      {"create: body above 64 KiB", "POST", "/api/chat/sessions",
       json({{"userId", u}, {"title", std::string(65 * 1024, 't')}}).dump(),
       kJson, 413, "PAYLOAD_TOO_LARGE", "octets"},
      {"unknown route", "GET", "/api/chat/unknown?userId=bad-user", "", "", 404,
       "ROUTE_NOT_FOUND", ""},
      {"trailing slash", "GET", "/api/chat/sessions/?userId=bad-user", "", "",
       404, "ROUTE_NOT_FOUND", ""},
      {"unknown route, invalid UTF-8", "GET", "/nope/%FF", "", "", 404,
       "ROUTE_NOT_FOUND", ""},
      {"URL above the cap", "GET",
       "/api/chat/sessions?userId=" + std::string(9000, 'u'), "", "", 414,
       "INVALID_ARGUMENT", "URL"},
      {"unknown HTTP method", "FOO", "/api/chat/send", SendBody(u, "Bonjour"),
       kJson, 405, "METHOD_NOT_ALLOWED", "POST"},
      {"wrong method on send", "PUT", "/api/chat/send", SendBody(u, "Bonjour"),
       kJson, 405, "METHOD_NOT_ALLOWED", ""},
      {"wrong method on stats", "POST", "/api/user/stats",
       json({{"userId", u}}).dump(), kJson, 405, "METHOD_NOT_ALLOWED", ""},
  };
  ASSERT_GE(table.size(), 30u);

  for (const BadRequest& row : table) {
    SCOPED_TRACE(row.name);
    // A fresh connection per row: a refused body may close it.
    auto client = NewClient();
    const Reply r =
        Exchange(*client, row.method, row.path, row.body, row.content_type);
    ExpectError(r, row.status, row.code);
    if (!row.mention.empty()) {
      EXPECT_NE(MessageOf(r).find(row.mention), std::string::npos) << r.body();
    }
  }
  // A refusal of the HTTP layer whose status says more than its reason
  // keeps its own label.
  {
    auto client = NewClient();
    const Reply r =
        Exchange(*client, "GET",
                 "/api/chat/sessions?userId=" + std::string(9000, 'u'), "", "");
    EXPECT_EQ(r.doc.value("error", ""), "URL trop longue") << r.body();
  }

  // Nothing stored, nothing charged, and the coach never asked.
  EXPECT_TRUE(server().coach().requests().empty());
  EXPECT_EQ(Stats(kBadUser), json::parse(R"({"totalChats":0,"totalMessages":0,
                "remainingCredits":5,"plan":"FREE","status":"ACTIVE"})"));
  EXPECT_TRUE(
      Get("/api/chat/sessions?userId=bad-user").doc["sessions"].empty());
  json owner = Stats("owner");
  EXPECT_EQ(owner["totalChats"], 1);
  EXPECT_EQ(owner["totalMessages"], 0);
  Reply kept = Get(SessionPath(owned));
  EXPECT_EQ(kept.doc["session"]["title"], "Titre d'origine") << kept.body();
}

// A 400 names the field at fault by its JSON name, whether coach-server
// found it (ErrorInfo.metadata["field"]) or the proxy did (a value of the
// wrong JSON type, a parameter that does not parse); errors about no field
// carry none.
TEST_F(ProxyTest, BadRequestsNameTheField) {
  const std::string owned = NewSession("field-owner", "Titre");
  ASSERT_FALSE(owned.empty());
  struct Row {
    std::string name, method, path, body, field;
  };
  const std::vector<Row> rows = {
      // coach-server's validation
      {"send: message missing", "POST", "/api/chat/send",
       R"({"userId":"field-user"})", "message"},
      {"send: userId blank", "POST", "/api/chat/send",
       R"({"userId":"  ","message":"Bonjour"})", "userId"},
      {"create: title blank", "POST", "/api/chat/sessions",
       R"({"userId":"field-user","title":"  "})", "title"},
      {"history: limit=0", "GET", "/api/chat/history?userId=field-user&limit=0",
       "", "limit"},
      {"get: sessionId too long", "GET", SessionPath(std::string(65, 's')), "",
       "sessionId"},
      {"get: sessionId not UTF-8", "GET", "/api/chat/sessions/%ff", "",
       "sessionId"},
      {"patch: title blank", "PATCH", SessionPath(owned), R"({"title":" "})",
       "title"},
      // the proxy's own checks
      {"send: userId a number", "POST", "/api/chat/send",
       R"({"userId":42,"message":"Bonjour"})", "userId"},
      {"send: message an object", "POST", "/api/chat/send",
       R"({"userId":"field-user","message":{"text":"a"}})", "message"},
      {"history: limit=abc", "GET",
       "/api/chat/history?userId=field-user&limit=abc", "", "limit"},
      // about no field
      {"send: not JSON", "POST", "/api/chat/send", R"({"userId":)", ""},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    auto client = NewClient();
    const Reply r = Exchange(*client, row.method, row.path, row.body,
                             row.body.empty() ? "" : kJson);
    ExpectError(r, 400, "INVALID_ARGUMENT");
    if (row.field.empty()) {
      EXPECT_FALSE(r.doc.contains("field")) << r.body();
    } else {
      EXPECT_EQ(r.doc.value("field", ""), row.field) << r.body();
    }
  }
  // Not a 400: no field.
  const Reply r = Get(SessionPath("nope-session"));
  ExpectError(r, 404, "SESSION_NOT_FOUND");
  EXPECT_FALSE(r.doc.contains("field")) << r.body();
}

// Raw bytes to the proxy over one connection (Connection: close), and the
// whole answer: for requests a well-behaved client library would not send.

// cpp-httplib 0.11 caps only Content-Length bodies and inflates gzip without
// a limit: chunked and encoded bodies are refused before they are read.
TEST_F(ProxyTest, ChunkedAndCompressedBodiesAreRefusedUnread) {
  const std::string chunked = RawExchange(
      stack_.port(),
      "POST /api/chat/send HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\n{\"a\":\r\n0\r\n\r\n");
  EXPECT_NE(chunked.find("HTTP/1.1 411"), std::string::npos) << chunked;
  EXPECT_NE(chunked.find("\"code\":\"LENGTH_REQUIRED\""), std::string::npos);

  const std::string gzip = RawExchange(
      stack_.port(),
      "POST /api/chat/send HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
      "Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
      "Content-Length: 4\r\n\r\nabcd");
  EXPECT_NE(gzip.find("HTTP/1.1 415"), std::string::npos) << gzip;
  EXPECT_NE(gzip.find("\"code\":\"UNSUPPORTED_ENCODING\""), std::string::npos);
  EXPECT_EQ(stack_.server().coach().request_count(), 0);
}

}  // namespace
}  // namespace coach::testing
