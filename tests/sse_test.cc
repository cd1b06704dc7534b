// Streamed replies through the REST front (issue 14): a real HTTP client
// reads POST /api/chat/send/stream as Server-Sent Events, incrementally,
// through the real proxy and a real coach-server whose OpenAI coach talks to
// a local fake that streams its chunks (and waits when told to).
#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/coach/offline_coach.h"
#include "server/coach/openai_coach.h"
#include "tests/support/fake_openai.h"
#include "tests/support/raw_http.h"
#include "tests/support/test_stack.h"

namespace coach::testing {
namespace {

using json = nlohmann::json;

// One event of the stream: its `event:` (empty: a message) and `data:`.
struct Event {
  std::string name;
  json data;
};

// Parses whole events ("...\n\n") off the front of `buffer`; comments
// (": ...") count in `comments`.
std::vector<Event> TakeEvents(std::string& buffer, int& comments) {
  std::vector<Event> events;
  size_t end;
  while ((end = buffer.find("\n\n")) != std::string::npos) {
    const std::string block = buffer.substr(0, end);
    buffer.erase(0, end + 2);
    Event event;
    bool any = false;
    for (absl::string_view line : absl::StrSplit(block, '\n')) {
      if (absl::StartsWith(line, ":")) {
        ++comments;
      } else if (absl::ConsumePrefix(&line, "event: ")) {
        event.name = std::string(line);
      } else if (absl::ConsumePrefix(&line, "data: ")) {
        event.data = json::parse(line, nullptr, false);
        any = true;
      }
    }
    if (any) events.push_back(std::move(event));
  }
  return events;
}

struct StreamResult {
  int status = 0;
  std::string content_type;
  std::string body;  // a non-stream answer
  std::vector<Event> events;
  int comments = 0;
};

class SseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto coach =
        OpenAiCoach::Create(FastOpenAiOptions(fake_.base_url(), "sk-test-sse"));
    ASSERT_TRUE(coach.ok()) << coach.status();
    coach_ = *std::move(coach);
    Config config = TestConfig();
    config.openai = FastOpenAiOptions(fake_.base_url(), "sk-test-sse");
    server_ = std::make_unique<TestServer>(config, coach_.get());
    ASSERT_TRUE(server_->start_error().ok()) << server_->start_error();
    proxy::ProxyConfig proxy_config = TestProxyConfig(server_->server().port());
    proxy_config.stream_heartbeat = heartbeat_;
    auto proxy = proxy::CoachProxy::Start(proxy_config);
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
  }

  // POSTs to the stream route and reads the answer as it comes; after each
  // event, `on_event` may return false to hang up.
  StreamResult Stream(
      const json& body, std::function<bool(const StreamResult&)> on_event =
                            [](const StreamResult&) { return true; }) {
    httplib::Client client("127.0.0.1", proxy_->port());
    client.set_read_timeout(30);
    StreamResult result;
    std::string buffer;
    httplib::Request request;
    request.method = "POST";
    request.path = "/api/chat/send/stream";
    request.body = body.dump();
    request.set_header("Content-Type", "application/json");
    request.set_header("Accept", "text/event-stream");
    request.content_receiver = [&](const char* data, size_t length, uint64_t,
                                   uint64_t) {
      buffer.append(data, length);
      if (!absl::StartsWith(result.content_type, "text/event-stream")) {
        return true;
      }
      for (Event& event : TakeEvents(buffer, result.comments)) {
        result.events.push_back(std::move(event));
        if (!on_event(result)) return false;
      }
      return true;
    };
    // The head arrives before the body: the receiver needs the type.
    request.response_handler = [&](const httplib::Response& response) {
      result.status = response.status;
      result.content_type = response.get_header_value("Content-Type");
      return true;
    };
    client.send(request);
    if (!absl::StartsWith(result.content_type, "text/event-stream")) {
      result.body = buffer;
    }
    return result;
  }

  json Stats(const std::string& user) {
    httplib::Client client("127.0.0.1", proxy_->port());
    auto result = client.Get("/api/user/stats?userId=" + user);
    return result && result->status == 200 ? json::parse(result->body)["stats"]
                                           : json();
  }

  absl::Duration heartbeat_ = absl::Seconds(15);
  // Destroyed in reverse: the proxy, the server, the coach, then the fake.
  FakeOpenAi fake_;
  std::unique_ptr<OpenAiCoach> coach_;
  std::unique_ptr<TestServer> server_;
  std::unique_ptr<proxy::CoachProxy> proxy_;
};

TEST_F(SseTest, DeltasArriveWhileTheAiStillWritesThenTheStoredReply) {
  fake_.Script({StreamResponse(
      StreamedReply({"Bonjour", " à vous.", " Respirez.", " Puis parlez."}),
      /*hold_after=*/1)});
  bool first_while_held = false;
  const StreamResult result =
      Stream({{"userId", "alice"}, {"message", "Comment me détendre ?"}},
             [&](const StreamResult& so_far) {
               if (so_far.events.size() == 1) {
                 first_while_held = fake_.completed_streams() == 0;
                 fake_.ReleaseStreams();
               }
               return true;
             });
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.content_type, "text/event-stream; charset=utf-8");
  EXPECT_TRUE(first_while_held) << "the first delta waited for the end";
  ASSERT_GE(result.events.size(), 2u);
  std::string text;
  for (size_t i = 0; i + 1 < result.events.size(); ++i) {
    EXPECT_EQ(result.events[i].name, "");
    text += result.events[i].data["delta"].get<std::string>();
  }
  const json& reply = result.events.back().data["reply"];
  ASSERT_TRUE(reply.is_object()) << result.events.back().data;
  EXPECT_EQ(text, "Bonjour à vous. Respirez. Puis parlez.");
  EXPECT_EQ(reply["assistantMessage"]["content"], text);
  EXPECT_EQ(reply["remainingCredits"], 4);
  // Stored and charged once, as a plain send.
  httplib::Client client("127.0.0.1", proxy_->port());
  auto session =
      client.Get("/api/chat/sessions/" + reply["sessionId"].get<std::string>());
  ASSERT_TRUE(session);
  const json messages = json::parse(session->body)["session"]["messages"];
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[1]["content"], text);
  EXPECT_EQ(Stats("alice")["remainingCredits"], 4);
}

TEST_F(SseTest, ClosingTheConnectionStopsTheAiAndChargesNothing) {
  fake_.Script({StreamResponse(StreamedReply({"Un.", " Deux.", " Trois."}),
                               /*hold_after=*/2)});
  const StreamResult result =
      Stream({{"userId", "quitter"}, {"message", "Une longue réponse ?"}},
             [](const StreamResult& so_far) {
               return so_far.events.size() < 2;  // hang up after two
             });
  EXPECT_EQ(result.events.size(), 2u);
  // Bounded: without the cancellation the fake waits for a release.
  EXPECT_TRUE(fake_.AwaitAbortedStreams(1, absl::Seconds(20)))
      << "the AI request was not aborted";
  EXPECT_EQ(fake_.completed_streams(), 0);
  const json stats = Stats("quitter");
  EXPECT_EQ(stats["remainingCredits"], 5);
  EXPECT_EQ(stats["totalMessages"], 0);
}

TEST_F(SseTest, NoCreditsIsA402BeforeAnyEvent) {
  std::string session_id;
  for (int i = 0; i < 5; ++i) {
    v1::SendMessageResponse sent;
    ASSERT_TRUE(server_->Send("broke", session_id, "Question", &sent).ok());
    session_id = sent.session_id();
  }
  const StreamResult result =
      Stream({{"userId", "broke"}, {"message", "Encore ?"}});
  EXPECT_EQ(result.status, 402);
  EXPECT_EQ(result.content_type, "application/json; charset=utf-8");
  EXPECT_EQ(json::parse(result.body)["code"], "NO_CREDITS");
}

TEST_F(SseTest, AnInvalidRequestIs400BeforeAnyEvent) {
  const StreamResult result = Stream({{"userId", "alice"}, {"message", ""}});
  EXPECT_EQ(result.status, 400);
  EXPECT_EQ(json::parse(result.body)["code"], "INVALID_ARGUMENT");
  EXPECT_EQ(fake_.request_count(), 0);
}

TEST_F(SseTest, AnAiErrorMidStreamIsAnErrorEventAndChargesNothing) {
  std::vector<std::string> pieces = StreamedReply({"Un début"});
  pieces.resize(1);  // the first chunk only, then an error object
  pieces.push_back(
      "data: " +
      ErrorBody("The server had an error", "server_error", "server_error") +
      "\n\n");
  fake_.Script({StreamResponse(pieces)});
  const StreamResult result =
      Stream({{"userId", "alice"}, {"message", "Bonjour"}});
  EXPECT_EQ(result.status, 200);
  ASSERT_GE(result.events.size(), 2u);
  EXPECT_EQ(result.events.front().data["delta"], "Un début");
  const Event& last = result.events.back();
  EXPECT_EQ(last.name, "error");
  EXPECT_EQ(last.data["code"], "AI_UNAVAILABLE") << last.data;
  EXPECT_FALSE(last.data["message"].get<std::string>().empty());
  EXPECT_EQ(Stats("alice")["remainingCredits"], 5);
  EXPECT_EQ(Stats("alice")["totalMessages"], 0);
}

// The offline coach (no AI key), paced as tools/run.sh runs it: a front-end
// sees a reply of several clauses as several events, not one or two.
class OfflineSseTest : public SseTest {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TestServer>(TestConfig(), &offline_);
    ASSERT_TRUE(server_->start_error().ok()) << server_->start_error();
    auto proxy =
        proxy::CoachProxy::Start(TestProxyConfig(server_->server().port()));
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
  }
  void TearDown() override {
    proxy_.reset();
    server_.reset();
  }

  OfflineCoach offline_{absl::Milliseconds(20)};
};

TEST_F(OfflineSseTest, AReplyOfSeveralClausesIsSeveralEvents) {
  const StreamResult result =
      Stream({{"userId", "olga"}, {"message", "Je suis timide au travail"}});
  EXPECT_EQ(result.status, 200);
  ASSERT_GE(result.events.size(), 4u) << "fewer than three deltas";
  std::string text;
  for (size_t i = 0; i + 1 < result.events.size(); ++i) {
    text += result.events[i].data["delta"].get<std::string>();
  }
  const json& reply = result.events.back().data["reply"];
  ASSERT_TRUE(reply.is_object()) << result.events.back().data;
  EXPECT_EQ(reply["assistantMessage"]["content"], text);
}

// RFC 9112 §6.1: no Transfer-Encoding in an answer to HTTP/1.0 (nginx
// speaks 1.0 to its upstreams by default). The events come as they are, and
// the connection's close ends them.
TEST_F(OfflineSseTest, AnHttp10ClientGetsTheEventsUnchunkedUntilTheClose) {
  const std::string body =
      json{{"userId", "dix"}, {"message", "Je suis timide au travail"}}.dump();
  const std::string raw = RawExchange(
      proxy_->port(),
      absl::StrCat("POST /api/chat/send/stream HTTP/1.0\r\n"
                   "Content-Type: application/json\r\nContent-Length: ",
                   body.size(), "\r\n\r\n", body));
  const size_t head_end = raw.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << raw;
  const std::string head = absl::AsciiStrToLower(raw.substr(0, head_end));
  EXPECT_TRUE(absl::StartsWith(head, "http/1.1 200")) << head;
  EXPECT_FALSE(absl::StrContains(head, "transfer-encoding")) << head;
  EXPECT_TRUE(absl::StrContains(head, "text/event-stream")) << head;
  std::string events_text = raw.substr(head_end + 4);
  int comments = 0;
  const std::vector<Event> events = TakeEvents(events_text, comments);
  EXPECT_EQ(events_text, "") << "bytes outside the events (chunk sizes?)";
  ASSERT_GE(events.size(), 4u) << raw;
  EXPECT_TRUE(events.back().data["reply"].is_object()) << raw;
}

class SseHeartbeatTest : public SseTest {
 protected:
  SseHeartbeatTest() { heartbeat_ = absl::Milliseconds(50); }
};

TEST_F(SseHeartbeatTest, AnIdleStreamGetsCommentsUntilTheNextEvent) {
  fake_.Script({StreamResponse(StreamedReply({"Un.", " Deux."}),
                               /*hold_after=*/1)});
  httplib::Client client("127.0.0.1", proxy_->port());
  client.set_read_timeout(30);
  std::string buffer;
  int comments = 0;
  std::vector<Event> events;
  httplib::Request request;
  request.method = "POST";
  request.path = "/api/chat/send/stream";
  request.body = json{{"userId", "alice"}, {"message", "Bonjour"}}.dump();
  request.set_header("Content-Type", "application/json");
  request.content_receiver = [&](const char* data, size_t length, uint64_t,
                                 uint64_t) {
    buffer.append(data, length);
    for (Event& e : TakeEvents(buffer, comments)) events.push_back(e);
    // The AI holds after its first piece: comments keep the stream alive
    // until it goes on.
    if (comments >= 2) fake_.ReleaseStreams();
    return true;
  };
  client.send(request);
  EXPECT_GE(comments, 2);
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(events.back().data.contains("reply")) << events.back().data;
}

}  // namespace
}  // namespace coach::testing
