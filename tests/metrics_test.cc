// base/metrics.h's exposition (escaping, histogram buckets, concurrent
// updates), then coach-server's metrics after real RPCs on a real gRPC
// server on loopback, validated by Prometheus's own `promtool check
// metrics` (Debian's prometheus package; skipped if absent here, CI has it);
// coach-proxy's, on their own listener and never on the REST port.
#include "base/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdio.h>
#include <sys/wait.h>

#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "tests/support/promtool.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_server.h"
#include "tests/support/test_stack.h"

namespace coach {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// ------------------------------------------------------------- Exposition

TEST(MetricsExpositionTest, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(metrics::EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(metrics::EscapeHelp("a\\b\"c\nd"), "a\\\\b\"c\\nd");

  metrics::Registry registry;
  registry.AddCounter("t_total", "Line one\nline \\two", {"path"})
      .WithLabels({"C:\\dir \"x\"\nend"})
      .Increment(3);
  EXPECT_EQ(registry.Render(),
            "# HELP t_total Line one\\nline \\\\two\n"
            "# TYPE t_total counter\n"
            "t_total{path=\"C:\\\\dir \\\"x\\\"\\nend\"} 3\n");
}

TEST(MetricsExpositionTest, HistogramBucketsAreCumulativeUpToInf) {
  metrics::Registry registry;
  metrics::Histogram& h =
      registry.AddHistogram("d_seconds", "D.", {"m"}, {0.1, 0.5, 1})
          .WithLabels({"x"});
  // A value equal to a bound falls in that bound's bucket (le: <=).
  for (double v : {0.05, 0.1, 0.3, 2.0}) h.Observe(v);
  EXPECT_EQ(registry.Render(),
            "# HELP d_seconds D.\n"
            "# TYPE d_seconds histogram\n"
            "d_seconds_bucket{m=\"x\",le=\"0.1\"} 2\n"
            "d_seconds_bucket{m=\"x\",le=\"0.5\"} 3\n"
            "d_seconds_bucket{m=\"x\",le=\"1\"} 3\n"
            "d_seconds_bucket{m=\"x\",le=\"+Inf\"} 4\n"
            "d_seconds_sum{m=\"x\"} 2.45\n"
            "d_seconds_count{m=\"x\"} 4\n");
}

TEST(MetricsExpositionTest, UnlabelledSeriesGaugesAndValues) {
  metrics::Registry registry;
  registry.AddGauge("g", "G.").WithLabels({}).Set(-2.5);
  registry.AddHistogram("h_seconds", "H.", {}, {0.25}).WithLabels({});
  registry.AddCounter("never_total", "No series yet.", {"a"});
  EXPECT_EQ(registry.Render(),
            "# HELP g G.\n# TYPE g gauge\ng -2.5\n"
            "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"0.25\"} 0\n"
            "h_seconds_bucket{le=\"+Inf\"} 0\n"
            "h_seconds_sum 0\nh_seconds_count 0\n"
            "# HELP never_total No series yet.\n# TYPE never_total counter\n");
  EXPECT_EQ(metrics::FormatValue(1e21), "1e+21");
  EXPECT_EQ(metrics::FormatValue(0.1), "0.1");
  EXPECT_EQ(metrics::FormatValue(123456789), "123456789");
  EXPECT_EQ(metrics::FormatValue(1.0 / 0.0), "+Inf");
}

// Cached series updated from several threads lose nothing (run under TSan).
TEST(MetricsExpositionTest, ConcurrentUpdatesAreAllCounted) {
  metrics::Registry registry;
  metrics::Counter& counter =
      registry.AddCounter("c_total", "C.").WithLabels({});
  metrics::Histogram& histogram =
      registry.AddHistogram("h_seconds", "H.", {}, {1}).WithLabels({});
  metrics::Family<metrics::Gauge>& gauges =
      registry.AddGauge("g", "G.", {"thread"});
  constexpr int kThreads = 4;
  constexpr int kEach = 10000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      metrics::Gauge& gauge = gauges.WithLabels({absl::StrCat(t)});
      for (int i = 0; i < kEach; ++i) {
        counter.Increment();
        histogram.Observe(i % 2 == 0 ? 0.5 : 2);
        gauge.Add(1);
        if (i % 1000 == 0) registry.Render();  // while updated
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counter.Value(), kThreads * kEach);
  EXPECT_EQ(
      histogram.BucketCounts(),
      (std::vector<uint64_t>{kThreads * kEach / 2, kThreads * kEach / 2}));
  EXPECT_EQ(gauges.WithLabels({"0"}).Value(), kEach);
}

// ------------------------------------------------------- coach-server's

// The value of the sample `series` (name and labels, exactly as rendered),
// or nullopt if absent.
std::optional<double> Sample(const std::string& text,
                             const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double value;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &value)) {
        return value;
      }
    }
  }
  return std::nullopt;
}

// Answers only when the test says so, with token usage: lets a test look
// at the metrics while a send waits on the AI.
class ManualCoach final : public Coach {
 public:
  void StartReply(CoachRequest /*request*/, ReplyCallback done) override {
    absl::MutexLock lock(&mu_);
    pending_.push_back(std::move(done));
  }
  // Waits (bounded) until `n` replies are awaited.
  bool AwaitPending(size_t n) {
    absl::MutexLock lock(&mu_);
    const auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return pending_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(20));
  }
  // Answers every awaited reply, on this thread.
  void ReplyAll(int prompt_tokens, int completion_tokens) {
    std::vector<ReplyCallback> pending;
    {
      absl::MutexLock lock(&mu_);
      pending.swap(pending_);
    }
    for (ReplyCallback& done : pending) {
      done(CoachReply{
          .content = "Réponse",
          .model = "test",
          .usage = TokenUsage{.prompt_tokens = prompt_tokens,
                              .completion_tokens = completion_tokens}});
    }
  }
  void CancelAll() override { ReplyAll(0, 0); }

 private:
  absl::Mutex mu_;
  std::vector<ReplyCallback> pending_ ABSL_GUARDED_BY(mu_);
};

class ServerMetricsTest : public ::testing::Test {
 protected:
  ManualCoach coach_;
  testing::TestServer server_{testing::TestConfig(), &coach_};

  std::string Metrics() { return server_.server().RenderMetrics(); }
  // A send that the coach answers with 11 prompt and 7 completion tokens.
  grpc::Status AnsweredSend(const std::string& user) {
    grpc::Status status;
    std::thread sender([&] { status = server_.Send(user, "", "Bonjour"); });
    const bool asked = coach_.AwaitPending(1);
    coach_.ReplyAll(11, 7);
    sender.join();
    EXPECT_TRUE(asked);
    return status;
  }
};

TEST_F(ServerMetricsTest, CountsSendsByOutcomeRpcsByCodeTokensAndHolds) {
  ASSERT_TRUE(server_.start_error().ok()) << server_.start_error();
  // A FREE user's five credits, then a sixth send refused.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(AnsweredSend("ana").ok());
  EXPECT_FALSE(server_.Send("ana", "", "Encore").ok());
  EXPECT_FALSE(server_.Send("ana", "", "").ok());  // invalid

  // A send waiting on the AI holds a credit: the gauge shows it.
  grpc::Status waiting;
  std::thread sender([&] { waiting = server_.Send("bob", "", "Bonjour"); });
  ASSERT_TRUE(coach_.AwaitPending(1));
  EXPECT_EQ(Sample(Metrics(), "coach_credit_holds"), 1);
  coach_.ReplyAll(11, 7);
  sender.join();
  ASSERT_TRUE(waiting.ok()) << waiting.error_message();

  const std::string text = Metrics();
  EXPECT_EQ(Sample(text, "coach_credit_holds"), 0) << text;
  EXPECT_EQ(Sample(text, "coach_sends_total{outcome=\"ok\"}"), 6);
  EXPECT_EQ(Sample(text, "coach_sends_total{outcome=\"no_credits\"}"), 1);
  EXPECT_EQ(Sample(text, "coach_sends_total{outcome=\"invalid_argument\"}"), 1);
  EXPECT_EQ(Sample(text, "coach_sends_total{outcome=\"rate_limited\"}"), 0);
  EXPECT_EQ(Sample(text, "coach_ai_prompt_tokens_total"), 6 * 11);
  EXPECT_EQ(Sample(text, "coach_ai_completion_tokens_total"), 6 * 7);
  // By plan and model (issue 26): FREE users, the coach's model.
  EXPECT_EQ(
      Sample(text, "coach_ai_replies_total{plan=\"FREE\",model=\"test\"}"), 6);
  EXPECT_EQ(Sample(text,
                   "coach_ai_tokens_total{plan=\"FREE\",model=\"test\","
                   "kind=\"prompt\"}"),
            6 * 11);
  EXPECT_EQ(Sample(text,
                   "coach_ai_tokens_total{plan=\"FREE\",model=\"test\","
                   "kind=\"completion\"}"),
            6 * 7);
  EXPECT_EQ(
      Sample(text, "coach_ai_reply_duration_seconds_count{result=\"ok\"}"), 6);
  const std::string send = "method=\"coach.v1.ChatService/SendMessage\"";
  EXPECT_EQ(Sample(text, "coach_rpc_handled_total{" + send + ",code=\"OK\"}"),
            6);
  EXPECT_EQ(Sample(text, "coach_rpc_handled_total{" + send +
                             ",code=\"INVALID_ARGUMENT\"}"),
            1);
  EXPECT_EQ(Sample(text, "coach_rpc_duration_seconds_count{" + send + "}"), 8);
  EXPECT_EQ(Sample(text, "coach_rpc_duration_seconds_bucket{" + send +
                             ",le=\"+Inf\"}"),
            8);
}

TEST_F(ServerMetricsTest, PromtoolAcceptsTheExposition) {
#ifndef COACH_PROMTOOL
  GTEST_SKIP() << "promtool not found (Debian package prometheus; "
                  "tools/setup.sh installs it): exposition not validated";
#else
  ASSERT_TRUE(server_.start_error().ok()) << server_.start_error();
  ASSERT_TRUE(AnsweredSend("ana").ok());
  EXPECT_FALSE(server_.Send("ana", "", "").ok());
  const std::string text = Metrics();
  ASSERT_THAT(text, HasSubstr("coach_sends_total{outcome=\"ok\"} 1"));

  const testing::PromtoolVerdict verdict =
      testing::CheckWithPromtool(COACH_PROMTOOL, text);
  EXPECT_EQ(verdict.exit_code, 0) << verdict.output << "\n" << text;
#endif
}

// ------------------------------------------------------------ coach-proxy

// Issue 24: the proxy's metrics are for operators, not for the public port
// (they show routes, traffic and errors): GET /metrics on
// COACH_PROXY_METRICS_LISTEN only.
TEST(ProxyMetricsTest, ServedOnTheirOwnListenerNeverOnTheRestPort) {
  testing::TestServer server;
  ASSERT_TRUE(server.start_error().ok()) << server.start_error();
  proxy::ProxyConfig config = testing::TestProxyConfig(server.server().port());
  config.metrics_listen = "127.0.0.1:0";
  auto proxy = proxy::CoachProxy::Start(config);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ASSERT_NE((*proxy)->metrics_port(), 0);
  ASSERT_NE((*proxy)->metrics_port(), (*proxy)->port());

  // The REST port: /metrics is no route of the API.
  auto rest = testing::NewProxyClient((*proxy)->port());
  auto hidden = rest->Get("/metrics");
  ASSERT_TRUE(hidden);
  EXPECT_EQ(hidden->status, 404);
  EXPECT_THAT(hidden->body, HasSubstr("\"code\":\"ROUTE_NOT_FOUND\""));
  EXPECT_THAT(hidden->body, Not(HasSubstr("coach_proxy_")));
  auto health = rest->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);

  // Its own listener: the numbers, which saw the REST port's 404.
  httplib::Client scraper("127.0.0.1", (*proxy)->metrics_port());
  scraper.set_read_timeout(10);
  auto scraped = scraper.Get("/metrics");
  ASSERT_TRUE(scraped);
  EXPECT_EQ(scraped->status, 200);
  EXPECT_EQ(scraped->get_header_value("Content-Type"),
            "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(Sample(scraped->body,
                   "coach_proxy_http_requests_total{route=\"-\",method=\"GET\","
                   "status=\"404\"}"),
            1)
      << scraped->body;
  EXPECT_EQ(Sample(scraped->body, "coach_proxy_http_connections"), 1);
  // Nothing else there: no API, no other method.
  auto other = scraper.Get("/api/user/stats?userId=u");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
  auto removed = scraper.Delete("/metrics");
  ASSERT_TRUE(removed);
  EXPECT_EQ(removed->status, 405);
#ifdef COACH_PROMTOOL
  const testing::PromtoolVerdict verdict =
      testing::CheckWithPromtool(COACH_PROMTOOL, scraped->body);
  EXPECT_EQ(verdict.exit_code, 0) << verdict.output << "\n" << scraped->body;
#endif

  // Unset (the default), nothing listens for them.
  auto quiet = proxy::CoachProxy::Start(
      testing::TestProxyConfig(server.server().port()));
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  EXPECT_EQ((*quiet)->metrics_port(), 0);
}

}  // namespace
}  // namespace coach
