// Issue 27: a reply survives one AI provider. Two or three local fake
// providers (real HTTP servers speaking OpenAI's protocol, each counting
// the calls, keys and models it gets) behind FallbackCoach over real
// OpenAiCoaches:
// - the primary failing, the backup answers with its own key and model,
//   and the send costs one credit and stores the backup's model;
// - after COACH_AI_BREAKER_FAILURES failures the primary is skipped for the
//   cooldown (the test's clock), then probed, and closed by a success;
// - a stream falls over before its first piece, not after;
// - everything failing: UNAVAILABLE, nothing charged, and once the breakers
//   are open without asking anyone;
// - a 400 is not asked of the next provider;
// - the providers file's validation.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "server/coach/fallback_coach.h"
#include "server/coach/openai_coach.h"
#include "server/coach/providers_file.h"
#include "tests/support/fake_openai.h"
#include "tests/support/test_env.h"
#include "tests/support/test_server.h"

namespace coach::testing {
namespace {

// A completion whose provider names `model`.
std::string CompletionFrom(const std::string& model, const std::string& text) {
  nlohmann::json body = nlohmann::json::parse(CompletionBody(text));
  body["model"] = model;
  return body.dump();
}

// A plain answer, and a streamed one.
FakeResponse Answer(int status, std::string body) {
  FakeResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

BreakerOptions Breaker(int failures,
                       absl::Duration cooldown = absl::Seconds(30)) {
  BreakerOptions options;
  options.failures = failures;
  options.cooldown = cooldown;
  return options;
}

// One fake provider and its settings: key `key-<name>`, model `<name>-model`.
struct FakeProvider {
  explicit FakeProvider(std::string provider_name)
      : name(std::move(provider_name)) {
    fake.SetDefault(Answer(
        200, CompletionFrom(name + "-model-2024", "Réponse de " + name)));
  }
  OpenAiOptions Options() const {
    OpenAiOptions options;
    options.api_key = "key-" + name;
    options.base_url = fake.base_url();
    options.model = name + "-model";
    options.max_retries = 0;  // a failure is reported at once
    options.timeout = absl::Seconds(20);
    return options;
  }
  void Fail(int status) {
    fake.SetDefault(
        Answer(status, ErrorBody("down", "server_error", "unavailable")));
  }
  // The Authorization header and the model of each request received.
  std::vector<std::pair<std::string, std::string>> Calls() const {
    std::vector<std::pair<std::string, std::string>> calls;
    for (const ReceivedRequest& r : fake.requests()) {
      const auto auth = r.headers.find("Authorization");
      calls.emplace_back(auth == r.headers.end() ? "" : auth->second,
                         r.json.value("model", ""));
    }
    return calls;
  }

  std::string name;
  FakeOpenAi fake;
};

class FallbackCoachTest : public ::testing::Test {
 protected:
  // A FallbackCoach over `providers`, on the test's clock.
  std::unique_ptr<FallbackCoach> Over(
      const std::vector<FakeProvider*>& providers,
      BreakerOptions breaker = Breaker(2)) {
    std::vector<FallbackCoach::Provider> members;
    for (FakeProvider* provider : providers) {
      auto openai = OpenAiCoach::Create(provider->Options(), env_);
      EXPECT_TRUE(openai.ok()) << openai.status();
      members.push_back({.name = provider->name, .coach = *std::move(openai)});
    }
    return std::make_unique<FallbackCoach>(std::move(members), breaker, env_);
  }

  // StartReply, waiting for the outcome; `pieces` collects a stream's.
  static absl::StatusOr<CoachReply> Ask(
      Coach& coach, std::vector<std::string>* pieces = nullptr) {
    CoachRequest request{
        .system_prompt = "Tu es un coach.",
        .conversation = {{.role = Role::kUser, .content = "Bonjour"}},
        .deadline = absl::Now() + absl::Seconds(30),
        .cancellation = nullptr,
        .on_delta = nullptr};
    if (pieces != nullptr) {
      request.on_delta = [pieces](absl::string_view piece) {
        pieces->emplace_back(piece);
      };
    }
    absl::StatusOr<CoachReply> reply;
    absl::Notification done;
    coach.StartReply(std::move(request), [&](absl::StatusOr<CoachReply> r) {
      reply = std::move(r);
      done.Notify();
    });
    done.WaitForNotification();
    return reply;
  }

  FakeClockEnv env_;
};

TEST_F(FallbackCoachTest, TheBackupAnswersWithItsOwnKeyAndModel) {
  FakeProvider primary("primary"), backup("backup");
  primary.Fail(503);
  auto coach = Over({&primary, &backup});
  absl::StatusOr<CoachReply> reply = Ask(*coach);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->content, "Réponse de backup");
  EXPECT_EQ(reply->model, "backup-model-2024");
  using Calls = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(primary.Calls(), (Calls{{"Bearer key-primary", "primary-model"}}));
  EXPECT_EQ(backup.Calls(), (Calls{{"Bearer key-backup", "backup-model"}}));
  EXPECT_GE(env_.CountLines("provider primary failed, falling over"), 1);
}

TEST_F(FallbackCoachTest, TheBreakerSkipsAFailingProviderThenProbesIt) {
  FakeProvider primary("primary"), backup("backup");
  primary.Fail(500);
  auto coach = Over({&primary, &backup});
  // Two failures in a row open the primary's breaker.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Ask(*coach).ok());
  EXPECT_EQ(primary.fake.request_count(), 2);
  EXPECT_EQ(env_.CountLines("provider primary skipped for 30s"), 1);
  EXPECT_NE(coach->RenderMetrics().find(
                "coach_ai_provider_breaker_state{provider=\"primary\"} 1"),
            std::string::npos);
  // Open: not asked at all for the cooldown.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Ask(*coach).ok());
  EXPECT_EQ(primary.fake.request_count(), 2);
  EXPECT_EQ(backup.fake.request_count(), 5);
  // After it, one request probes; the primary answers again: closed.
  env_.Advance(absl::Seconds(30));
  primary.fake.SetDefault(
      Answer(200, CompletionFrom("primary-model-2024", "Revenu")));
  absl::StatusOr<CoachReply> probe = Ask(*coach);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->content, "Revenu");
  EXPECT_EQ(env_.CountLines("provider primary answers again"), 1);
  ASSERT_TRUE(Ask(*coach).ok());
  EXPECT_EQ(primary.fake.request_count(), 4);
  EXPECT_EQ(backup.fake.request_count(), 5);
  const std::string metrics = coach->RenderMetrics();
  EXPECT_NE(
      metrics.find("coach_ai_provider_requests_total{provider=\"primary\"} 4"),
      std::string::npos)
      << metrics;
  EXPECT_NE(
      metrics.find("coach_ai_provider_failures_total{provider=\"primary\"} 2"),
      std::string::npos);
  EXPECT_NE(
      metrics.find("coach_ai_provider_breaker_state{provider=\"primary\"} 0"),
      std::string::npos);
}

TEST_F(FallbackCoachTest, AFailedProbeOpensTheBreakerForAnotherCooldown) {
  FakeProvider primary("primary"), backup("backup");
  primary.Fail(503);
  auto coach = Over({&primary, &backup});
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Ask(*coach).ok());
  env_.Advance(absl::Seconds(30));
  ASSERT_TRUE(Ask(*coach).ok());  // the probe fails, the backup answers
  EXPECT_EQ(primary.fake.request_count(), 3);
  ASSERT_TRUE(Ask(*coach).ok());
  EXPECT_EQ(primary.fake.request_count(), 3);  // open again
}

TEST_F(FallbackCoachTest, AStreamFallsOverBeforeItsFirstPieceNotAfter) {
  FakeProvider primary("primary"), backup("backup");
  backup.fake.SetDefault(StreamResponse(StreamedReply({"Bon", "jour"})));
  primary.Fail(503);
  auto coach = Over({&primary, &backup}, Breaker(10));
  std::vector<std::string> pieces;
  absl::StatusOr<CoachReply> reply = Ask(*coach, &pieces);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(pieces, (std::vector<std::string>{"Bon", "jour"}));

  // The primary writes a piece, then its stream breaks: the reply fails;
  // the backup is not asked for another reply after that piece.
  primary.fake.SetDefault(
      StreamResponse({StreamChunk("Début"), "data: {not json\n\n"}));
  pieces.clear();
  const int backup_calls = backup.fake.request_count();
  reply = Ask(*coach, &pieces);
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(pieces, (std::vector<std::string>{"Début"}));
  EXPECT_EQ(backup.fake.request_count(), backup_calls);
}

TEST_F(FallbackCoachTest, EveryProviderFailingIsUnavailableThenFastWhenOpen) {
  FakeProvider a("a"), b("b"), c("c");
  for (FakeProvider* p : {&a, &b, &c}) p->Fail(503);
  auto coach = Over({&a, &b, &c}, Breaker(1));
  absl::StatusOr<CoachReply> reply = Ask(*coach);
  EXPECT_TRUE(absl::IsUnavailable(reply.status())) << reply.status();
  for (FakeProvider* p : {&a, &b, &c}) EXPECT_EQ(p->fake.request_count(), 1);
  // Every breaker open: refused at once, no provider asked.
  reply = Ask(*coach);
  EXPECT_TRUE(absl::IsUnavailable(reply.status())) << reply.status();
  for (FakeProvider* p : {&a, &b, &c}) EXPECT_EQ(p->fake.request_count(), 1);
}

TEST_F(FallbackCoachTest, ARequestTheProviderRefusesIsNotAskedElsewhere) {
  FakeProvider primary("primary"), backup("backup");
  primary.Fail(400);
  auto coach = Over({&primary, &backup}, Breaker(1));
  EXPECT_FALSE(Ask(*coach).ok());
  EXPECT_FALSE(Ask(*coach).ok());
  EXPECT_EQ(backup.fake.request_count(), 0);
  // Nor does it open the breaker: the request was wrong, not the provider.
  EXPECT_EQ(primary.fake.request_count(), 2);
}

// Through the server: the backup's reply costs one credit and is stored
// with the model that wrote it; all failing costs nothing.
TEST_F(FallbackCoachTest, OneCreditForTheReplyStoredWithItsModel) {
  FakeProvider primary("primary"), backup("backup");
  primary.Fail(503);
  auto coach = Over({&primary, &backup}, Breaker(10));
  TestServer server(TestConfig(), coach.get());
  ASSERT_TRUE(server.start_error().ok()) << server.start_error();
  v1::SendMessageResponse sent;
  ASSERT_TRUE(server.Send("ana", "", "Bonjour", &sent).ok());
  EXPECT_EQ(sent.remaining_credits(), 4);
  auto messages = server.store().ListRecentMessages(sent.session_id(), 10);
  ASSERT_TRUE(messages.ok());
  ASSERT_EQ(messages->size(), 2u);
  EXPECT_EQ((*messages)[1].model, "backup-model-2024");

  backup.Fail(503);
  const grpc::Status failed = server.Send("ana", "", "Encore");
  EXPECT_EQ(failed.error_code(), grpc::StatusCode::UNAVAILABLE);
  v1::GetUserStatsRequest ask;
  ask.set_user_id("ana");
  v1::GetUserStatsResponse stats;
  ASSERT_TRUE(server.users().GetUserStats(Context().get(), ask, &stats).ok());
  EXPECT_EQ(stats.stats().remaining_credits(), 4);
}

// --- The providers file
// -------------------------------------------------------

std::optional<std::string> TestKeys(const std::string& name) {
  if (name == "KEY_A" || name == "KEY_B") return "sk-" + name;
  if (name == "EMPTY") return "";
  return std::nullopt;
}

absl::StatusOr<std::vector<ProviderSettings>> Parse(const std::string& text) {
  OpenAiOptions defaults;
  defaults.max_retries = 3;
  return ParseProvidersFile("providers.json", text, defaults, TestKeys);
}

TEST(ProvidersFileTest, ReadsProvidersInOrderWithTheirKeysAndDefaults) {
  auto providers = Parse(R"([
    {"name": "openai", "baseUrl": "https://api.openai.com/v1",
     "apiKeyEnv": "KEY_A", "model": "gpt-4o-mini"},
    {"name": "azure", "baseUrl": "https://example.openai.azure.com/v1",
     "apiKeyEnv": "KEY_B", "model": "gpt-4o", "maxTokens": 500,
     "temperature": 0.2, "timeout": "20s"}])");
  ASSERT_TRUE(providers.ok()) << providers.status();
  ASSERT_EQ(providers->size(), 2u);
  EXPECT_EQ((*providers)[0].name, "openai");
  EXPECT_EQ((*providers)[0].options.api_key, "sk-KEY_A");
  EXPECT_EQ((*providers)[0].options.max_tokens, OpenAiOptions().max_tokens);
  EXPECT_EQ((*providers)[0].options.max_retries, 3);  // the OPENAI_* default
  EXPECT_EQ((*providers)[1].options.api_key, "sk-KEY_B");
  EXPECT_EQ((*providers)[1].options.max_tokens, 500);
  EXPECT_EQ((*providers)[1].options.temperature, 0.2);
  EXPECT_EQ((*providers)[1].options.timeout, absl::Seconds(20));
  EXPECT_EQ(Parse(R"([{"name":"n","baseUrl":"http://h","apiKeyEnv":"KEY_A",
                       "model":"m","timeout":7.5}])")
                ->front()
                .options.timeout,
            absl::Seconds(7.5));
}

TEST(ProvidersFileTest, RefusesWhatIsWrongNamingIt) {
  const std::string ok =
      R"("name":"p","baseUrl":"http://h","apiKeyEnv":"KEY_A","model":"m")";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "not valid JSON"},
      {"{}", "non-empty JSON array"},
      {"[]", "non-empty JSON array"},
      {"[1]", "provider 1: not a JSON object"},
      {R"([{"baseUrl":"http://h","apiKeyEnv":"KEY_A","model":"m"}])",
       "\"name\" is required"},
      {"[{" + ok + "},{" + ok + "}]",
       "provider 2 (\"p\"): the name is used twice"},
      {R"([{"name":"p","baseUrl":"ftp://h","apiKeyEnv":"KEY_A","model":"m"}])",
       "\"baseUrl\" must start with http"},
      {R"([{"name":"p","baseUrl":"http://h","apiKeyEnv":"NOPE","model":"m"}])",
       "names NOPE, which is not set"},
      {R"([{"name":"p","baseUrl":"http://h","apiKeyEnv":"EMPTY","model":"m"}])",
       "names EMPTY, which is not set"},
      {R"([{"name":"p","baseUrl":"http://h","apiKeyEnv":"KEY_A","model":""}])",
       "\"model\" is required"},
      {"[{" + ok + R"(,"apiKey":"sk-leak"}])", "unknown field \"apiKey\""},
      {"[{" + ok + R"(,"maxTokens":0}])", "\"maxTokens\""},
      {"[{" + ok + R"(,"temperature":3}])", "\"temperature\""},
      {"[{" + ok + R"(,"timeout":"soon"}])", "\"timeout\""},
      {"[{" + ok + R"(,"timeout":"-5s"}])", "\"timeout\" must be positive"},
  };
  for (const auto& [text, expected] : cases) {
    auto parsed = Parse(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status()));
    EXPECT_NE(parsed.status().message().find("providers.json"),
              std::string::npos);
    EXPECT_NE(parsed.status().message().find(expected), std::string::npos)
        << text << " -> " << parsed.status().message();
    EXPECT_EQ(parsed.status().message().find("sk-"), std::string::npos)
        << "a key in an error message";
  }
}

// A key pasted as the value of "apiKeyEnv" (the file asks for the key's
// variable) is not echoed in the error coach-server prints at start.
TEST(ProvidersFileTest, AKeyPutInApiKeyEnvIsNotEchoed) {
  const absl::StatusOr<std::vector<ProviderSettings>> parsed = Parse(
      R"([{"name":"p","baseUrl":"http://h","model":"m",
           "apiKeyEnv":"sk-proj-SECRET0123456789"}])");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().message().find("SECRET0123456789"),
            std::string::npos)
      << parsed.status();
}

// An error object at the head of a stream (HTTP 200, no piece given yet)
// follows the retry rule (ADR 0006): insufficient_quota is never retried
// (it was: the "no HTTP status" shortcut came before the code).
TEST(StreamRetryRuleTest, AnInsufficientQuotaErrorInTheStreamIsNotRetried) {
  FakeOpenAi fake;
  fake.Script(
      {StreamResponse({"data: " +
                       ErrorBody("You exceeded your current quota",
                                 "insufficient_quota", "insufficient_quota") +
                       "\n\n"})});
  fake.SetDefault(StreamResponse(StreamedReply({"Payé", " deux fois"})));
  OpenAiOptions options = FastOpenAiOptions(fake.base_url(), "sk-quota");
  options.max_retries = 2;
  auto coach = OpenAiCoach::Create(options);
  ASSERT_TRUE(coach.ok()) << coach.status();
  CoachRequest request{
      .system_prompt = "Tu es un coach.",
      .conversation = {{.role = Role::kUser, .content = "Bonjour"}},
      .deadline = absl::Now() + absl::Seconds(30),
      .cancellation = nullptr,
      .on_delta = [](absl::string_view) {}};
  const absl::StatusOr<CoachReply> reply = (*coach)->Reply(std::move(request));
  EXPECT_FALSE(reply.ok()) << "answered by a retry: " << reply->content;
  EXPECT_EQ(fake.request_count(), 1) << "insufficient_quota was retried";
}

// [DONE] ends the reply, whether or not the provider (or a gateway) then
// closes the body: before, a complete reply, already shown piece by piece,
// failed at the timeout when the body stayed open (nothing stored).
TEST(StreamDoneTest, TheReplyEndsAtDoneNotWhenTheBodyCloses) {
  FakeOpenAi fake;
  // chunk, finish, usage, [DONE]; then held open (a keep-alive comment
  // would follow).
  std::vector<std::string> events = StreamedReply({"Réponse complète."});
  events.push_back(": keep-alive\n\n");
  fake.SetDefault(StreamResponse(events, /*hold_after=*/4));
  OpenAiOptions options = FastOpenAiOptions(fake.base_url(), "sk-done");
  options.timeout = absl::Seconds(3);
  options.max_retries = 0;
  auto coach = OpenAiCoach::Create(options);
  ASSERT_TRUE(coach.ok()) << coach.status();
  std::vector<std::string> pieces;
  CoachRequest request{
      .system_prompt = "Tu es un coach.",
      .conversation = {{.role = Role::kUser, .content = "Bonjour"}},
      .deadline = absl::Now() + absl::Seconds(30),
      .cancellation = nullptr,
      .on_delta = [&pieces](absl::string_view p) { pieces.emplace_back(p); }};
  const absl::Time start = absl::Now();
  const absl::StatusOr<CoachReply> reply = (*coach)->Reply(std::move(request));
  const absl::Duration took = absl::Now() - start;
  fake.ReleaseStreams();
  EXPECT_EQ(pieces, (std::vector<std::string>{"Réponse complète."}));
  EXPECT_TRUE(reply.ok()) << reply.status() << " after " << took;
  EXPECT_LT(took, absl::Seconds(2));
}

// Destroyed with replies in flight: the primary's replies fail ("shutting
// down") on its own threads while the providers are destroyed, and must
// neither fall over to a provider being destroyed (a use-after-free ASan
// reported in StartReply before) nor be lost: each is delivered once.
TEST(FallbackDestructionTest, DestroyedWithRepliesInFlightOnThePrimary) {
  for (int round = 0; round < 10; ++round) {
    FakeOpenAi primary_fake, backup_fake;
    primary_fake.HoldAnswers();
    backup_fake.HoldAnswers();
    std::vector<FallbackCoach::Provider> members;
    int i = 0;
    for (FakeOpenAi* fake : {&primary_fake, &backup_fake}) {
      OpenAiOptions options =
          FastOpenAiOptions(fake->base_url(), "sk-" + std::to_string(i));
      options.max_retries = 0;
      auto openai = OpenAiCoach::Create(options);
      ASSERT_TRUE(openai.ok());
      members.push_back(
          {.name = "p" + std::to_string(i++), .coach = *std::move(openai)});
    }
    auto coach =
        std::make_unique<FallbackCoach>(std::move(members), Breaker(1000));
    std::atomic<int> done{0};
    constexpr int kCalls = 64;
    for (int c = 0; c < kCalls; ++c) {
      coach->StartReply(
          CoachRequest{
              .system_prompt = "Tu es un coach.",
              .conversation = {{.role = Role::kUser, .content = "Bonjour"}},
              .deadline = absl::Now() + absl::Seconds(30),
              .cancellation = nullptr,
              .on_delta = nullptr},
          [&done](absl::StatusOr<CoachReply>) { ++done; });
    }
    // All sent (the fake holds them).
    ASSERT_TRUE(primary_fake.AwaitRequests(kCalls, absl::Seconds(20)));
    coach.reset();
    EXPECT_EQ(done.load(), kCalls) << "round " << round;
  }
}
}  // namespace
}  // namespace coach::testing
