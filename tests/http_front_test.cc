// coach-proxy's HTTP front as an attacker and an operator see it (issue 12):
// raw-socket clients for framing, header floods and dripping; held AI
// replies for starvation and hang-ups; a restarting coach-server; /healthz
// and /readyz. Issue 24: silent connections from one address (127.0.0.1)
// against reads from another (127.0.0.2: all of 127.0.0.0/8 is loopback),
// Host and repeated headers, a pipelining client that never reads.
// Everything on loopback, every loop bounded in count and time.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "http/server.h"
#include "tests/support/ports.h"
#include "tests/support/promtool.h"
#include "tests/support/raw_http.h"
#include "tests/support/test_stack.h"

namespace coach::testing {
namespace {

using json = nlohmann::json;

// The status code of the first response in `raw` (0 if none).
int StatusOf(const std::string& raw) {
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || raw.size() < 12) return 0;
  return std::stoi(raw.substr(9, 3));
}

// The documented error body's "code" in `raw` ("" if none).
std::string CodeOf(const std::string& raw) {
  const size_t body = raw.find("\r\n\r\n");
  if (body == std::string::npos) return "";
  const json doc = json::parse(raw.substr(body + 4), nullptr, false);
  return doc.is_object() && doc.contains("code")
             ? doc["code"].get<std::string>()
             : "";
}

// The JSON body of the first response in `raw` (an empty object if none).
json BodyOf(const std::string& raw) {
  const size_t body = raw.find("\r\n\r\n");
  if (body == std::string::npos) return json::object();
  json doc = json::parse(raw.substr(body + 4), nullptr, false);
  return doc.is_object() ? doc : json::object();
}

// Resident memory of this process, in bytes (Linux).
long ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6)) * 1024;
    }
  }
  return 0;
}

// Waits (bounded) until `cancellation` is raised.
bool WaitCancelled(Cancellation& cancellation) {
  absl::Notification raised;
  cancellation.OnCancel([&raised] { raised.Notify(); });
  return raised.WaitForNotificationWithTimeout(absl::Seconds(20));
}

constexpr char kSendHead[] =
    "POST /api/chat/send HTTP/1.1\r\nHost: x\r\n"
    "Content-Type: application/json\r\n";

std::string SendRequest(const std::string& user, const std::string& text) {
  const std::string body = json{{"userId", user}, {"message", text}}.dump();
  return absl::StrCat(kSendHead, "Content-Length: ", body.size(), "\r\n\r\n",
                      body);
}

class HttpFrontTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(stack_.start_error().ok()); }

  int port() { return stack_.port(); }
  ScriptedCoach& coach() { return stack_.server().coach(); }

  json Stats(const std::string& user) {
    auto result = stack_.http().Get("/api/user/stats?userId=" + user);
    if (!result || result->status != 200) return json();
    return json::parse(result->body)["stats"];
  }

  // `method` on `target`, alone on a connection: everything read back.
  std::string RawRequest(const std::string& method, const std::string& target) {
    return RawExchange(port(),
                       absl::StrCat(method, " ", target,
                                    " HTTP/1.1\r\nHost: x\r\nConnection: close"
                                    "\r\n\r\n"));
  }

  // Another proxy in front of this stack's coach-server, its settings
  // edited by `edit`; null (and a failure) if it does not start.
  std::unique_ptr<proxy::CoachProxy> StartProxy(
      const std::function<void(proxy::ProxyConfig&)>& edit) {
    proxy::ProxyConfig config =
        TestProxyConfig(stack_.server().server().port());
    edit(config);
    auto started = proxy::CoachProxy::Start(config);
    EXPECT_TRUE(started.ok()) << started.status();
    return started.ok() ? *std::move(started) : nullptr;
  }

  TestStack stack_;
};

TEST_F(HttpFrontTest, PostWithoutContentLengthIs411AtOnce) {
  // The connection stays open: the answer must not wait for the client to
  // close (it used to read the "body" until then, without limit).
  RawConnection connection(port());
  ASSERT_TRUE(connection.Send(absl::StrCat(kSendHead, "\r\n")));
  const std::string answer = connection.ReadResponse();
  EXPECT_EQ(StatusOf(answer), 411) << answer;
  EXPECT_EQ(CodeOf(answer), "LENGTH_REQUIRED");
}

TEST_F(HttpFrontTest, EveryTransferEncodingIsRefused) {
  for (const std::string& headers : {
           std::string("Transfer-Encoding: chunked\r\n"),
           std::string("transfer-encoding: CHUNKED\r\n"),
           std::string("Transfer-Encoding: identity\r\n"
                       "Transfer-Encoding: chunked\r\n"),
           std::string("Transfer-Encoding: gzip, chunked\r\n"),
           std::string("Transfer-Encoding: identity\r\n"),
       }) {
    SCOPED_TRACE(headers);
    const std::string answer = RawExchange(
        port(),
        absl::StrCat(kSendHead, headers, "\r\n", "5\r\n{\"a\":\r\n0\r\n\r\n"));
    EXPECT_EQ(StatusOf(answer), 411) << answer;
  }
  // With a length as well (a request smuggling classic): refused too.
  const std::string both = RawExchange(
      port(), absl::StrCat(kSendHead,
                           "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n"
                           "\r\n{}"));
  EXPECT_GE(StatusOf(both), 400) << both;
  EXPECT_EQ(coach().request_count(), 0);
}

TEST_F(HttpFrontTest, ConflictingContentLengthsAre400) {
  for (const std::string& lengths :
       {std::string("Content-Length: 2\r\nContent-Length: 3\r\n"),
        std::string("Content-Length: 2, 3\r\n")}) {
    const std::string answer =
        RawExchange(port(), absl::StrCat(kSendHead, lengths, "\r\n{}x"));
    EXPECT_EQ(StatusOf(answer), 400) << answer;
    EXPECT_EQ(CodeOf(answer), "INVALID_ARGUMENT");
  }
}

TEST_F(HttpFrontTest, TooManyHeadersAre431) {
  std::string many = "GET /api/user/stats?userId=u HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 101; ++i) absl::StrAppend(&many, "a", i, ": b\r\n");
  const std::string answer = RawExchange(port(), many + "\r\n");
  EXPECT_EQ(StatusOf(answer), 431) << answer;
  EXPECT_EQ(CodeOf(answer), "HEADERS_TOO_LARGE");
  EXPECT_NE(answer.find("X-Request-Id"), std::string::npos);
}

TEST_F(HttpFrontTest, HeaderFloodIsCutEarlyAndMemoryStaysFlat) {
  const long before = ResidentBytes();
  // 500,000 header lines (2.5 MB): the proxy answers 431 once its cap is
  // reached and closes; the rest of the flood hits a closed connection.
  RawConnection connection(port());
  ASSERT_TRUE(connection.Send("GET /api/user/stats?userId=u HTTP/1.1\r\n"));
  const std::string block = [] {
    std::string lines;
    for (int i = 0; i < 10000; ++i) lines += "a: b\r\n";
    return lines;
  }();
  int blocks_sent = 0;
  for (; blocks_sent < 50; ++blocks_sent) {
    if (!connection.Send(block)) break;
  }
  const std::string answer = connection.ReadAll();
  EXPECT_EQ(StatusOf(answer), 431) << answer.substr(0, 200);
  EXPECT_LT(ResidentBytes() - before, 32L * 1024 * 1024);
  // And the proxy still serves.
  EXPECT_EQ(Stats("u")["remainingCredits"], 5);
}

TEST_F(HttpFrontTest, BodyOverTheCapIs413Unread) {
  RawConnection connection(port());
  ASSERT_TRUE(connection.Send(
      absl::StrCat(kSendHead, "Content-Length: 100000000\r\n\r\n")));
  // Answered from the header: no body byte was sent.
  const std::string answer = connection.ReadResponse();
  EXPECT_EQ(StatusOf(answer), 413) << answer;
  EXPECT_EQ(CodeOf(answer), "PAYLOAD_TOO_LARGE");
}

TEST_F(HttpFrontTest, PipelinedRequestsAreAnsweredInOrder) {
  const std::string get =
      "GET /api/user/stats?userId=p HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string answer = RawExchange(
      port(), get + get + SendRequest("p", "Bonjour") +
                  "GET /api/user/stats?userId=p HTTP/1.1\r\nHost: x\r\n"
                  "Connection: close\r\n\r\n");
  std::vector<size_t> starts;
  for (size_t at = answer.find("HTTP/1.1 "); at != std::string::npos;
       at = answer.find("HTTP/1.1 ", at + 1)) {
    starts.push_back(at);
  }
  ASSERT_EQ(starts.size(), 4u) << answer;
  for (size_t at : starts) EXPECT_EQ(answer.substr(at, 12), "HTTP/1.1 200");
  // The last stats see the send before them.
  EXPECT_NE(answer.rfind("\"remainingCredits\":4"), std::string::npos);
}

TEST_F(HttpFrontTest, ExpectContinueGetsAnInterimAnswer) {
  RawConnection connection(port());
  const std::string body = json{{"userId", "c"}, {"message", "Bonjour"}}.dump();
  ASSERT_TRUE(connection.Send(absl::StrCat(
      kSendHead, "Expect: 100-continue\r\nContent-Length: ", body.size(),
      "\r\n\r\n")));
  EXPECT_EQ(StatusOf(connection.ReadUntil("\r\n\r\n")), 100);
  ASSERT_TRUE(connection.Send(body));
  EXPECT_EQ(StatusOf(connection.ReadResponse()), 200);
}

TEST_F(HttpFrontTest, DrippingClientsDoNotStarveOthers) {
  // Far more clients than the old front had workers in tests (8), each
  // sending half a request head and keeping its connection.
  std::vector<std::unique_ptr<RawConnection>> drippers;
  for (int i = 0; i < 200; ++i) {
    auto connection = std::make_unique<RawConnection>(port());
    ASSERT_TRUE(connection->connected());
    ASSERT_TRUE(connection->Send(
        "GET /api/user/stats?userId=slow HTTP/1.1\r\nHost: x\r\n"));
    drippers.push_back(std::move(connection));
  }
  // A legitimate client is served meanwhile (its client would time out
  // after 30 s if it were queued behind the drippers).
  auto client = stack_.NewClient();
  client->set_read_timeout(5);
  for (int i = 0; i < 5; ++i) {
    auto result = client->Get("/api/user/stats?userId=legit");
    ASSERT_TRUE(result) << httplib::to_string(result.error());
    EXPECT_EQ(result->status, 200);
    // And the drippers drip on.
    for (auto& d : drippers) d->Send("X-Drip: 1\r\n");
  }
}

TEST_F(HttpFrontTest, AHeadThatNeverEndsIsClosedAfterTheHeaderTimeout) {
  proxy::ProxyConfig config = TestProxyConfig(stack_.server().server().port());
  config.header_timeout = absl::Milliseconds(300);
  auto proxy = proxy::CoachProxy::Start(config);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  RawConnection dripper((*proxy)->port());
  ASSERT_TRUE(dripper.Send("GET /api/user/stats HTTP/1.1\r\nHost: x\r\n"));
  // Closed by the proxy (the read would time out after 10 s otherwise).
  EXPECT_TRUE(dripper.PeerClosed());
}

TEST_F(HttpFrontTest, SendsWaitingOnASlowAiDoNotStarveReads) {
  constexpr int kSends = 100;
  coach().HoldUntilConcurrent(kSends + 1);  // never reached: held
  std::vector<std::unique_ptr<RawConnection>> senders;
  for (int i = 0; i < kSends; ++i) {
    auto connection = std::make_unique<RawConnection>(port(), 30);
    ASSERT_TRUE(connection->Send(SendRequest(absl::StrCat("w", i), "Bonjour")));
    senders.push_back(std::move(connection));
  }
  ASSERT_TRUE(coach().WaitForRequests(kSends));
  // Every send waits on the AI; reads are answered meanwhile.
  auto client = stack_.NewClient();
  client->set_read_timeout(5);
  auto result = client->Get("/api/user/stats?userId=reader");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  // Then the AI answers, and every send completes.
  coach().CancelAll();
  for (auto& sender : senders) {
    EXPECT_EQ(StatusOf(sender->ReadResponse()), 200);
  }
}

TEST_F(HttpFrontTest, AClientThatHangsUpCancelsItsSend) {
  coach().HoldUntilConcurrent(2);  // never reached: held
  {
    RawConnection connection(port());
    ASSERT_TRUE(connection.Send(SendRequest("quitter", "Bonjour")));
    ASSERT_TRUE(coach().WaitForRequests(1));
  }  // hangs up
  // The proxy cancels its call; coach-server raises the send's
  // cancellation (the coach's request sees it).
  const std::shared_ptr<Cancellation> cancellation =
      coach().requests().at(0).cancellation;
  ASSERT_NE(cancellation, nullptr);
  EXPECT_TRUE(WaitCancelled(*cancellation));
  coach().CancelAll();
  // Nothing charged, nothing stored.
  const json stats = Stats("quitter");
  EXPECT_EQ(stats["remainingCredits"], 5);
  EXPECT_EQ(stats["totalMessages"], 0);
}

TEST_F(HttpFrontTest, StopLetsRequestsInProgressFinishAndClosesDrippers) {
  coach().HoldUntilConcurrent(2);
  RawConnection sender(port(), 30);
  ASSERT_TRUE(sender.Send(SendRequest("late", "Bonjour")));
  ASSERT_TRUE(coach().WaitForRequests(1));
  RawConnection dripper(port(), 30);
  ASSERT_TRUE(dripper.Send("GET /api/user/stats HTTP/1.1\r\n"));

  std::thread stopper([&] { stack_.proxy().Stop(absl::Seconds(20)); });
  // The dripper is closed at once; the send in progress is not.
  EXPECT_TRUE(dripper.PeerClosed());
  coach().CancelAll();  // the AI answers
  const std::string answer = sender.ReadAll();
  EXPECT_EQ(StatusOf(answer), 200) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos);
  stopper.join();
  v1::GetUserStatsRequest request;
  request.set_user_id("late");
  v1::GetUserStatsResponse stats;
  ASSERT_TRUE(stack_.server()
                  .users()
                  .GetUserStats(Context().get(), request, &stats)
                  .ok());
  EXPECT_EQ(stats.stats().remaining_credits(), 4);
}

TEST_F(HttpFrontTest, StopPastTheGraceCancelsWhatRemains) {
  coach().HoldUntilConcurrent(2);
  RawConnection sender(port(), 30);
  ASSERT_TRUE(sender.Send(SendRequest("cut", "Bonjour")));
  ASSERT_TRUE(coach().WaitForRequests(1));
  stack_.proxy().Stop(absl::Milliseconds(50));
  EXPECT_TRUE(sender.PeerClosed());
  const std::shared_ptr<Cancellation> cancellation =
      coach().requests().at(0).cancellation;
  EXPECT_TRUE(WaitCancelled(*cancellation));
}

TEST_F(HttpFrontTest, HealthAndReadiness) {
  auto healthz = stack_.http().Get("/healthz");
  ASSERT_TRUE(healthz);
  EXPECT_EQ(healthz->status, 200);
  auto readyz = stack_.http().Get("/readyz");
  ASSERT_TRUE(readyz);
  EXPECT_EQ(readyz->status, 200) << readyz->body;

  // A proxy whose coach-server is down: alive, not ready.
  const RefusingLoopbackPort refusing;
  auto lonely = proxy::CoachProxy::Start(TestProxyConfig(refusing.port()));
  ASSERT_TRUE(lonely.ok());
  httplib::Client client("127.0.0.1", (*lonely)->port());
  client.set_read_timeout(10);
  auto alive = client.Get("/healthz");
  ASSERT_TRUE(alive);
  EXPECT_EQ(alive->status, 200);
  auto ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_EQ(json::parse(ready->body)["code"], "UNAVAILABLE");
}

TEST_F(HttpFrontTest, ReadsRecoverAsSoonAsTheServerIsBack) {
  ASSERT_EQ(Stats("r")["remainingCredits"], 5);
  const int grpc_port = stack_.server().server().port();
  stack_.server().server().Shutdown(absl::ZeroDuration());
  stack_.server().server().Wait();
  // While it is down, a read waits for it (5 s), then answers 503.
  auto down = stack_.http().Get("/api/user/stats?userId=r");
  ASSERT_TRUE(down);
  EXPECT_EQ(down->status, 503) << down->body;
  // A new coach-server on the same port and store.
  Config config = stack_.server().config();
  config.grpc_listen = absl::StrCat("127.0.0.1:", grpc_port);
  auto restarted = CoachServer::Start(config, stack_.server().store(), coach(),
                                      stack_.server().clock());
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  const absl::Time back = absl::Now();
  // The first read after the restart is answered, not refused: the
  // channel has seen the server down and reconnects within its 500 ms
  // backoff, which the read waits out (a fail-fast read got 503 here).
  auto result = stack_.http().Get("/api/user/stats?userId=r");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200) << result->body;
  std::printf("first read answered %.0f ms after the restart\n",
              absl::ToDoubleMilliseconds(absl::Now() - back));
  (*restarted)->Shutdown(absl::ZeroDuration());
}

// Every read that waited for a coach-server that never came is 503
// UNAVAILABLE (docs/api.md), the streamed export as the others (it was 504).
TEST_F(HttpFrontTest, ReadsWhileNoServerIsReachableAre503) {
  auto proxy = StartProxy([](proxy::ProxyConfig& config) {
    config.upstream_read_deadline = absl::Milliseconds(300);
  });
  ASSERT_NE(proxy, nullptr);
  stack_.server().server().Shutdown(absl::ZeroDuration());
  stack_.server().server().Wait();
  httplib::Client client("127.0.0.1", proxy->port());
  for (const std::string target :
       {"/api/user/stats?userId=r", "/api/user/export?userId=r",
        "/api/chat/sessions?userId=r"}) {
    SCOPED_TRACE(target);
    auto result = client.Get(target);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 503) << result->body;
    EXPECT_EQ(json::parse(result->body, nullptr, false).value("code", ""),
              "UNAVAILABLE")
        << result->body;
  }
}

TEST_F(HttpFrontTest, ALongSessionIsReadable) {
  // 300 exchanges of two 4,000-character messages of 2-byte characters:
  // the session's answer is 4.8 MB, over gRPC's default receive limit.
  v1::SetPlanRequest plan;
  plan.set_user_id("long");
  plan.set_plan(v1::PREMIUM);
  v1::SetPlanResponse plan_response;
  ASSERT_TRUE(stack_.server()
                  .users()
                  .SetPlan(AdminContext().get(), plan, &plan_response)
                  .ok());
  std::string text;
  for (int i = 0; i < 4000; ++i) text += "é";
  coach().ReplyWith(text);
  std::string session_id;
  for (int i = 0; i < 300; ++i) {
    v1::SendMessageResponse response;
    ASSERT_TRUE(stack_.server().Send("long", session_id, text, &response).ok());
    session_id = response.session_id();
  }
  auto result = stack_.http().Get("/api/chat/sessions/" + session_id);
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body.substr(0, 300);
  EXPECT_GT(result->body.size(), 4u * 1024 * 1024);
  EXPECT_EQ(json::parse(result->body)["session"]["messages"].size(), 600u);
}

TEST_F(HttpFrontTest, MetricsCountRequestsByRouteMethodAndStatus) {
  auto proxy = StartProxy([](proxy::ProxyConfig& config) {
    config.metrics_listen = "127.0.0.1:0";
  });
  ASSERT_NE(proxy, nullptr);
  auto client = NewProxyClient(proxy->port());
  auto stats = client->Get("/api/user/stats?userId=m");
  ASSERT_TRUE(stats);
  ASSERT_EQ(stats->status, 200);
  ASSERT_TRUE(client->Get("/nope"));
  ASSERT_EQ(
      StatusOf(RawExchange(proxy->port(), absl::StrCat(kSendHead, "\r\n"))),
      411);
  // On its own listener (on the REST port, /metrics is an unknown route).
  httplib::Client scraper("127.0.0.1", proxy->metrics_port());
  scraper.set_read_timeout(10);
  auto metrics = scraper.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->get_header_value("Content-Type"),
            "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = metrics->body;
  for (const char* series : {
           "coach_proxy_http_requests_total{route=\"/api/user/stats\","
           "method=\"GET\",status=\"200\"} 1",
           "coach_proxy_http_requests_total{route=\"-\",method=\"GET\","
           "status=\"404\"} 1",
           "coach_proxy_http_requests_total{route=\"-\",method=\"POST\","
           "status=\"411\"} 1",
           "coach_proxy_http_request_duration_seconds_count{route=\"/api/user/"
           "stats\"} 1",
           // Scrapes are not API requests: not in flight, not counted.
           "coach_proxy_http_requests_in_flight 0",
       }) {
    EXPECT_NE(text.find(series), std::string::npos) << series << "\n" << text;
  }
#ifdef COACH_PROMTOOL
  const PromtoolVerdict verdict = CheckWithPromtool(COACH_PROMTOOL, text);
  EXPECT_EQ(verdict.exit_code, 0) << verdict.output << "\n" << text;
#endif
}

// ------------------------------------------------------ Issue 24: lock-out

constexpr char kStatsRead[] =
    "GET /api/user/stats?userId=legit HTTP/1.1\r\nHost: x\r\n\r\n";

// The value of `series` (a full series name with its labels) in a
// Prometheus text, or -1 if absent.
double SeriesValue(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

// The proxy's metrics text, from its metrics listener.
std::string Scrape(const proxy::CoachProxy& proxy) {
  httplib::Client client("127.0.0.1", proxy.metrics_port());
  client.set_read_timeout(10);
  auto scraped = client.Get("/metrics");
  return scraped && scraped->status == 200 ? scraped->body : "";
}

TEST_F(HttpFrontTest, ASilentConnectionIsClosedAfterTheHeaderTimeout) {
  auto proxy = StartProxy([](proxy::ProxyConfig& config) {
    config.header_timeout = absl::Milliseconds(300);  // keep-alive: 60 s
  });
  ASSERT_NE(proxy, nullptr);
  // A client that connects and sends nothing holds its place for the
  // header timeout, not the keep-alive timeout (the read would give up
  // after 10 s).
  RawConnection silent(proxy->port(), /*read_timeout_s=*/10);
  ASSERT_TRUE(silent.connected());
  const absl::Time connected = absl::Now();
  EXPECT_TRUE(silent.PeerClosed());
  EXPECT_LT(absl::Now() - connected, absl::Seconds(5));
  // Between two requests a connection still has the keep-alive timeout:
  // still open well past the header timeout.
  RawConnection kept(proxy->port(), 10);
  ASSERT_TRUE(kept.Send(kStatsRead));
  ASSERT_EQ(StatusOf(kept.ReadResponse()), 200);
  EXPECT_FALSE(kept.HungUpWithin(std::chrono::seconds(1)));
  ASSERT_TRUE(kept.Send(kStatsRead));
  EXPECT_EQ(StatusOf(kept.ReadResponse()), 200);
}

TEST_F(HttpFrontTest, SilentConnectionsFromOneAddressDoNotKeepOthersOut) {
  auto proxy = StartProxy([](proxy::ProxyConfig& config) {
    config.max_connections = 50;
    config.max_connections_per_client = 100;  // the table alone
    config.metrics_listen = "127.0.0.1:0";
  });
  ASSERT_NE(proxy, nullptr);
  // The oldest connection has a request in progress (a send on a held AI):
  // it is never closed for a newcomer.
  coach().HoldUntilConcurrent(2);  // never reached: held
  RawConnection sender(proxy->port(), 30);
  ASSERT_TRUE(sender.Send(SendRequest("busy", "Bonjour")));
  ASSERT_TRUE(coach().WaitForRequests(1));
  // 60 connections from 127.0.0.1 that send nothing: more than the table.
  std::vector<std::unique_ptr<RawConnection>> silent;
  for (int i = 0; i < 60; ++i) {
    silent.push_back(std::make_unique<RawConnection>(proxy->port(), 10));
    ASSERT_TRUE(silent.back()->connected());
  }
  // 20 reads from another address, each on a new connection, accepted
  // after every silent one (the accept queue is first in, first out).
  const absl::Time started = absl::Now();
  for (int i = 0; i < 20; ++i) {
    RawConnection reader(proxy->port(), 5, "127.0.0.2");
    ASSERT_TRUE(reader.connected());
    ASSERT_TRUE(reader.Send(kStatsRead));
    EXPECT_EQ(StatusOf(reader.ReadResponse()), 200) << "read " << i;
  }
  EXPECT_LT(absl::Now() - started, absl::Seconds(5));
  // The oldest silent connections made room: at least the 11 that came
  // when the table was full of live ones.
  EXPECT_TRUE(silent.front()->PeerClosed());
  EXPECT_GE(SeriesValue(Scrape(*proxy),
                        "coach_proxy_http_connections_shed_total{reason="
                        "\"idle_evicted\"}"),
            11);
  // The send in progress was left alone.
  coach().CancelAll();  // the AI answers
  EXPECT_EQ(StatusOf(sender.ReadResponse()), 200);
}

TEST_F(HttpFrontTest, OneAddressHoldsATenthOfTheConnectionsByDefault) {
  auto proxy = StartProxy([](proxy::ProxyConfig& config) {
    config.max_connections = 50;  // per client: 0, a tenth: 5
    config.metrics_listen = "127.0.0.1:0";
  });
  ASSERT_NE(proxy, nullptr);
  std::vector<std::unique_ptr<RawConnection>> silent;
  for (int i = 0; i < 5; ++i) {
    silent.push_back(std::make_unique<RawConnection>(proxy->port(), 10));
    ASSERT_TRUE(silent.back()->connected());
  }
  // A sixth from the same address is closed at accept, unanswered.
  RawConnection sixth(proxy->port(), 10);
  ASSERT_TRUE(sixth.connected());
  sixth.Send(kStatsRead);
  EXPECT_EQ(sixth.ReadAll(), "");
  // Another address is served.
  RawConnection other(proxy->port(), 10, "127.0.0.2");
  ASSERT_TRUE(other.Send(kStatsRead));
  EXPECT_EQ(StatusOf(other.ReadResponse()), 200);
  EXPECT_EQ(SeriesValue(Scrape(*proxy),
                        "coach_proxy_http_connections_shed_total{reason="
                        "\"client_limit\"}"),
            1);
}

TEST_F(HttpFrontTest, APipeliningClientThatNeverReadsIsCutAtTheWriteTimeout) {
  auto proxy = StartProxy([](proxy::ProxyConfig& config) {
    config.write_timeout = absl::Milliseconds(500);  // keep-alive: 60 s
  });
  ASSERT_NE(proxy, nullptr);
  // /openapi.json is ~50 KB. 4 answers fit in the kernel's buffers (no
  // write waits: the proxy then waits for a next request); 200 do not (a
  // write waits, with more requests behind it).
  for (const int pipelined : {4, 200}) {
    SCOPED_TRACE(pipelined);
    RawConnection reader(proxy->port(), 10, "", /*receive_buffer=*/4096);
    ASSERT_TRUE(reader.connected());
    reader.ProbeEvery(1);
    std::string requests;
    for (int i = 0; i < pipelined; ++i) {
      requests += "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    }
    ASSERT_TRUE(reader.Send(requests));
    // Never read: cut once its answers have not moved for the write
    // timeout, freeing what they held (not after the keep-alive timeout).
    EXPECT_TRUE(reader.HungUpWithin(std::chrono::seconds(10)));
  }
}

// ------------------------------------------------- Issue 24: strict HTTP

TEST_F(HttpFrontTest, AnHttp11RequestNeedsExactlyOneValidHost) {
  for (const std::string& head : {
           std::string("GET /healthz HTTP/1.1\r\n"),
           std::string("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: a\r\n"),
           std::string("GET /healthz HTTP/1.1\r\nHost: a\r\nhost: b\r\n"),
           std::string("GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n"),
           std::string("GET /healthz HTTP/1.1\r\nHost: a/b\r\n"),
           std::string("GET /healthz HTTP/1.1\r\nHost: user@a\r\n"),
       }) {
    SCOPED_TRACE(head);
    const std::string answer = RawExchange(port(), head + "\r\n");
    EXPECT_EQ(StatusOf(answer), 400) << answer;
    EXPECT_EQ(CodeOf(answer), "INVALID_ARGUMENT");
    const json body = BodyOf(answer);
    EXPECT_EQ(body.value("error", ""), "Paramètres manquants ou invalides");
    EXPECT_NE(body.value("message", "").find("Host"), std::string::npos);
  }
  for (const std::string& head : {
           std::string("GET /healthz HTTP/1.0\r\n"),  // 1.0 may omit it
           std::string("GET /healthz HTTP/1.1\r\nHost: localhost:3000\r\n"),
           std::string("GET /healthz HTTP/1.1\r\nHost: [::1]:3000\r\n"),
           std::string("GET /healthz HTTP/1.1\r\nHost: \r\n"),
       }) {
    SCOPED_TRACE(head);
    const std::string answer =
        RawExchange(port(), head + "Connection: close\r\n\r\n");
    EXPECT_EQ(StatusOf(answer), 200) << answer;
  }
}

TEST_F(HttpFrontTest, ARepeatedAuthorizationOrIdempotencyKeyIs400) {
  const std::string read =
      "GET /api/user/stats?userId=twice HTTP/1.1\r\nHost: x\r\n";
  const std::string once = RawExchange(
      port(), read + "Authorization: Bearer a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(StatusOf(once), 200) << once;
  const std::string twice = RawExchange(
      port(), read +
                  "Authorization: Bearer a\r\n"
                  "authorization: Bearer b\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(StatusOf(twice), 400) << twice;
  const json body = BodyOf(twice);
  EXPECT_EQ(body.value("error", ""), "Paramètres manquants ou invalides");
  EXPECT_EQ(body.value("code", ""), "INVALID_ARGUMENT");
  EXPECT_EQ(body.value("field", ""), "Authorization");
  EXPECT_EQ(body.value("message", ""),
            "L'en-tête « Authorization » ne doit figurer qu'une fois dans la "
            "requête.");
  // A send with two keys: refused before coach-server is asked.
  const std::string payload =
      json{{"userId", "twice"}, {"message", "Bonjour"}}.dump();
  const std::string keys =
      RawExchange(port(), absl::StrCat(kSendHead,
                                       "Idempotency-Key: k1\r\n"
                                       "Idempotency-Key: k2\r\n"
                                       "Connection: close\r\n"
                                       "Content-Length: ",
                                       payload.size(), "\r\n\r\n", payload));
  EXPECT_EQ(StatusOf(keys), 400) << keys;
  EXPECT_EQ(CodeOf(keys), "INVALID_ARGUMENT");
  EXPECT_EQ(coach().request_count(), 0);
}

// RFC 9110 §9.3.2: HEAD is answered as GET, with the Content-Length GET's
// body has and no body, on every GET path (the API's, the operations');
// the keep-alive connection then serves the next request (a body left on
// it would be read as the next answer's start).
TEST_F(HttpFrontTest, HeadIsAGetWithoutItsBody) {
  ASSERT_TRUE(Stats("tete").is_object());
  for (const std::string target :
       {"/api/user/stats?userId=tete", "/healthz", "/openapi.json",
        "/api/user/export?userId=tete"}) {
    SCOPED_TRACE(target);
    RawConnection connection(port());
    ASSERT_TRUE(connection.Send(absl::StrCat(
        "HEAD ", target, " HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
    const std::string raw = connection.ReadAll();
    EXPECT_EQ(StatusOf(raw), 200) << raw;
    const size_t head_end = raw.find("\r\n\r\n");
    ASSERT_NE(head_end, std::string::npos) << raw;
    const std::string head = raw.substr(0, head_end);
    EXPECT_TRUE(absl::StrContains(head, "Content-Length: ") ||
                absl::StrContains(head, "Transfer-Encoding: chunked"))
        << head;
    EXPECT_FALSE(absl::StrContains(head, "Content-Length: 0\r\n")) << head;
    // Right after the head: the next answer, whole.
    const std::string next = raw.substr(head_end + 4);
    EXPECT_EQ(StatusOf(next), 200) << raw;
    EXPECT_TRUE(absl::EndsWith(next, R"({"status":"SERVING"})")) << raw;
  }
}

// RFC 9112 §3.2.2: a server accepts a target in absolute form (what a
// client configured to use a proxy sends).
TEST_F(HttpFrontTest, AnAbsoluteFormTargetIsItsPathAndQuery) {
  ASSERT_TRUE(Stats("abs").is_object());
  for (const std::string target :
       {"http://x/healthz", "HTTP://x:3000/api/user/stats?userId=abs"}) {
    SCOPED_TRACE(target);
    const std::string raw = RawRequest("GET", target);
    EXPECT_EQ(StatusOf(raw), 200) << raw;
  }
}

// The operations' paths answer other methods as the API's paths do: 405
// and Allow (HEAD wherever GET is), not 404.
TEST_F(HttpFrontTest, OtherMethodsOnAGetPathAre405WithAllow) {
  for (const std::string target :
       {"/healthz", "/readyz", "/openapi.json", "/api/user/stats"}) {
    SCOPED_TRACE(target);
    const std::string raw = RawRequest("DELETE", target);
    EXPECT_EQ(StatusOf(raw), 405) << raw;
    EXPECT_TRUE(absl::StrContains(raw, "\r\nAllow: GET, HEAD\r\n")) << raw;
    EXPECT_EQ(CodeOf(raw), "METHOD_NOT_ALLOWED") << raw;
  }
}

// http::Server alone: a handler that keeps its exchanges past Shutdown (it
// ignores OnCancel) neither holds Shutdown up nor reaches the destroyed
// server when it answers, streams or lets them go afterwards. (Before, the
// exchanges held their connections: Shutdown waited 10 s, returned, and the
// late calls used the freed server and event loop: ASan's
// heap-use-after-free.)
TEST(HttpServerTest, ExchangesKeptPastShutdownDoNotReachTheServer) {
  absl::Mutex mu;
  std::vector<std::shared_ptr<http::Exchange>> kept;
  http::ServerOptions options;
  options.refusal = [](http::Refusal refusal, const http::Request&) {
    return http::Response{
        .status = http::StatusOf(refusal), .headers = {}, .body = ""};
  };
  auto server = http::Server::Start(
      std::move(options), [&](std::shared_ptr<http::Exchange> exchange) {
        if (exchange->request().path == "/stream") {
          exchange->StartStream(200, {}, absl::InfiniteDuration(), "");
          exchange->Send("first");
        }
        absl::MutexLock lock(&mu);
        kept.push_back(std::move(exchange));
      });
  ASSERT_TRUE(server.ok()) << server.status();
  RawConnection waiting((*server)->port(), 10);
  RawConnection streaming((*server)->port(), 10);
  ASSERT_TRUE(waiting.Send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(streaming.Send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_NE(streaming.ReadUntil("first").find("first"), std::string::npos);
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(mu.AwaitWithTimeout(
        absl::Condition(
            +[](std::vector<std::shared_ptr<http::Exchange>>* v) {
              return v->size() == 2;
            },
            &kept),
        absl::Seconds(10)));
  }
  (*server)->Shutdown(absl::ZeroDuration());
  EXPECT_EQ((*server)->open_connections(), 0);
  server->reset();
  EXPECT_TRUE(waiting.PeerClosed());
  EXPECT_TRUE(streaming.PeerClosed());
  // The server is gone: every call is ignored, and so is the release of an
  // exchange never answered.
  absl::MutexLock lock(&mu);
  for (const std::shared_ptr<http::Exchange>& exchange : kept) {
    exchange->Reply({.status = 200, .headers = {}, .body = "late"});
    exchange->Send("late");
    exchange->Finish();
    exchange->OnCancel([] {});
  }
  kept.clear();
}

}  // namespace
}  // namespace coach::testing
