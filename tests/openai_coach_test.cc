// OpenAiCoach against a real HTTP server on loopback that speaks OpenAI's
// chat-completions protocol (tests/support/fake_openai.h), not a mock: what
// the client sends, how each provider fault ends for the API's caller, and —
// after every failed send — that no credit was charged and nothing stored.
// Plus unit checks of the retry policy and the context window it relies on.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/app/server_config.h"
#include "server/coach/context_window.h"
#include "server/coach/openai_coach.h"
#include "server/coach/retry_policy.h"
#include "server/core/cancellation.h"
#include "server/core/coach.h"
#include "server/core/errors.h"
#include "tests/support/fake_openai.h"
#include "tests/support/httplib_tuning.h"
#include "tests/support/ports.h"
#include "tests/support/test_env.h"
#include "tests/support/test_server.h"

namespace coach::testing {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::SizeIs;

constexpr char kApiKey[] = "sk-test-SECRET-key-123";
// What FakeOpenAi answers once its script is used up, and the model its
// completions name (the dated snapshot, as OpenAI reports it).
constexpr char kDefaultReply[] = "Réponse du coach IA.";
constexpr char kAnswerModel[] = "gpt-4o-mini-2024-07-18";
constexpr int kFreeCredits = 5;

// --- Options, scripted answers, received requests ----------------------------

// Real defaults for everything the API sees (model, max tokens,
// temperature); short waits so that retries and timeouts take milliseconds.
OpenAiOptions FastOptions(const std::string& base_url) {
  OpenAiOptions options = FastOpenAiOptions(base_url, kApiKey);
  options.timeout = absl::Seconds(10);
  return options;
}

FakeResponse Answer(int status, std::string body, httplib::Headers headers = {},
                    absl::Duration delay = absl::ZeroDuration()) {
  return FakeResponse{.status = status,
                      .body = std::move(body),
                      .headers = std::move(headers),
                      .delay = delay,
                      .stream = {}};
}

// An OpenAI error answer: {"error": {"message", "type", "code", "param"}}.
FakeResponse ErrorAnswer(int status, const std::string& type,
                         const std::string& code,
                         const std::string& message = "provider error") {
  return Answer(status, ErrorBody(message, type, code));
}

// A 200 completion whose only choice carries `message` as given (to script
// null content, a refusal...).
std::string CompletionWithMessage(json message,
                                  const std::string& finish_reason = "stop") {
  return json{{"id", "chatcmpl-test"},
              {"object", "chat.completion"},
              {"model", kAnswerModel},
              {"choices", json::array({{{"index", 0},
                                        {"message", std::move(message)},
                                        {"finish_reason", finish_reason}}})}}
      .dump();
}

std::string HeaderOf(const ReceivedRequest& request, const std::string& name) {
  const auto it = request.headers.find(name);  // case-insensitive map
  return it == request.headers.end() ? "<absent>" : it->second;
}

// The (role, content) pairs of a chat-completions body, in order.
using Turn = std::pair<std::string, std::string>;
std::vector<Turn> TurnsOf(const json& body) {
  std::vector<Turn> turns;
  if (!body.is_object() || !body.contains("messages") ||
      !body["messages"].is_array()) {
    return turns;
  }
  for (const json& m : body["messages"]) {
    if (!m.is_object()) continue;
    turns.emplace_back(m.value("role", "<no role>"),
                       m.value("content", "<no text>"));
  }
  return turns;
}

CoachRequest Conversation(absl::string_view system_prompt,
                          std::vector<CoachTurn> turns) {
  return CoachRequest{.system_prompt = system_prompt,
                      .conversation = std::move(turns)};
}

CoachTurn UserTurn(std::string text) {
  return CoachTurn{.role = Role::kUser, .content = std::move(text)};
}
CoachTurn AssistantTurn(std::string text) {
  return CoachTurn{.role = Role::kAssistant, .content = std::move(text)};
}

// Every byte of every file in `dir` (the SQLite database, its WAL...).
std::string AllBytesUnder(const std::string& dir) {
  std::string bytes;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    std::ifstream in(entry.path(), std::ios::binary);
    bytes.append(std::istreambuf_iterator<char>(in),
                 std::istreambuf_iterator<char>());
  }
  return bytes;
}

// A second chat-completions server, for what FakeOpenAi cannot do: it keeps
// httplib's default pool (8 threads on this 2-core machine), so its 9th
// concurrent request waits in a queue, not at the AI; and it writes without
// TCP_NODELAY, so its own Nagle delay would hide the client's. This one has a
// handler thread per request in flight, counts what it receives, and holds
// every answer until Release() — at most `max_hold` — so that a test knows
// its requests are all still waiting at the AI, whatever the machine's load.
class LocalCompletions {
 public:
  LocalCompletions(int threads, absl::Duration max_hold) : max_hold_(max_hold) {
    // Tuned as coach-proxy (workers, nodelay, listen backlog), by its code.
    HttplibTuning tuning;
    tuning.worker_threads = threads;
    TuneHttpServer(server_, tuning);
    server_.Post("/v1/chat/completions", [this](const httplib::Request&,
                                                httplib::Response& response) {
      {
        absl::MutexLock lock(&mu_);
        ++received_;
      }
      if (max_hold_ > absl::ZeroDuration()) {
        released_.WaitForNotificationWithTimeout(max_hold_);
      }
      response.set_content(CompletionBody(kDefaultReply), "application/json");
    });
    port_ = BindHttpServer(server_, "127.0.0.1:0", tuning.listen_backlog)
                .value_or(0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  // Destroy after the clients that keep connections to it (OpenAiCoach's
  // idle pool): httplib's workers otherwise wait out their keep-alive (5 s).
  ~LocalCompletions() {
    Release();
    server_.stop();
    thread_.join();
  }
  LocalCompletions(const LocalCompletions&) = delete;
  LocalCompletions& operator=(const LocalCompletions&) = delete;

  std::string base_url() const {
    return absl::StrCat("http://127.0.0.1:", port_, "/v1");
  }

  // Answers the requests held, and the next ones at once.
  void Release() {
    if (!released_.HasBeenNotified()) released_.Notify();
  }

  // Waits, at most `timeout`, until `n` requests have arrived.
  bool AwaitRequests(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const auto reached = [this, n] { return received_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

 private:
  const absl::Duration max_hold_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  absl::Notification released_;
  absl::Mutex mu_;
  int received_ ABSL_GUARDED_BY(mu_) = 0;
};

// --- Status assertions -------------------------------------------------------

::testing::AssertionResult IsOk(const grpc::Status& status) {
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "code " << status.error_code() << " reason "
         << ErrorInfoOf(status).reason << ": " << status.error_message();
}

// The public error errors.h defines for `reason` (the exact French message
// the user must get).
absl::Status PublicErrorFor(absl::string_view reason) {
  if (reason == "AI_UNAVAILABLE") return AiUnavailableError();
  if (reason == "CONTENT_FILTERED") return ContentFilteredError();
  if (reason == "INTERNAL") return InternalError();
  return absl::UnknownError(absl::StrCat("no public error for ", reason));
}

// `code`, `reason` in domain coach.v1, and errors.h's message for it — no
// provider detail (HTTP status, error body, key) reaches the user.
::testing::AssertionResult HasError(const grpc::Status& status,
                                    grpc::StatusCode code,
                                    absl::string_view reason) {
  const ErrorDetail info = ErrorInfoOf(status);
  const std::string expected_message(PublicErrorFor(reason).message());
  if (status.error_code() == code && info.reason == reason &&
      info.domain == "coach.v1" && status.error_message() == expected_message) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "expected code " << code << " reason " << reason << " message '"
         << expected_message << "'; got code " << status.error_code()
         << " reason '" << info.reason << "' domain '" << info.domain
         << "': " << status.error_message();
}

// --- Direct calls: OpenAiCoach::Create ---------------------------------------

TEST(OpenAiCoachCreateTest, RefusesAnEmptyKey) {
  OpenAiOptions options = FastOptions("http://127.0.0.1:8080/v1");
  options.api_key.clear();
  EXPECT_EQ(OpenAiCoach::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(OpenAiCoachCreateTest, RefusesABaseUrlThatIsNotHttp) {
  for (const char* url :
       {"", "api.openai.com/v1", "ftp://api.openai.com/v1",
        "file:///etc/passwd", "http://", "https:///v1", "localhost:8080/v1"}) {
    const auto coach = OpenAiCoach::Create(FastOptions(url));
    EXPECT_EQ(coach.status().code(), absl::StatusCode::kInvalidArgument)
        << "base URL \"" << url << "\"";
    EXPECT_THAT(coach.status().message(), Not(HasSubstr(kApiKey)));
  }
}

TEST(OpenAiCoachCreateTest, AcceptsHttpAndHttpsUrls) {
  for (const char* url : {"https://api.openai.com/v1", "http://127.0.0.1:8080",
                          "http://localhost:11434/v1/"}) {
    EXPECT_TRUE(OpenAiCoach::Create(FastOptions(url)).ok()) << url;
  }
}

// --- Direct calls: the protocol ----------------------------------------------

TEST(OpenAiCoachProtocolTest, PostsTheConfiguredRequestAndParsesTheAnswer) {
  FakeOpenAi fake;
  auto coach = OpenAiCoach::Create(FastOptions(fake.base_url()));
  ASSERT_TRUE(coach.ok()) << coach.status();

  const auto reply = (*coach)->Reply(Conversation(
      SystemPrompt(), {UserTurn("Je stresse avant mes examens."),
                       AssistantTurn("Qu'est-ce qui vous inquiète le plus ?"),
                       UserTurn("Les maths.")}));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->content, kDefaultReply);
  EXPECT_EQ(reply->model, kAnswerModel);
  ASSERT_TRUE(reply->usage.has_value());
  EXPECT_EQ(reply->usage->prompt_tokens, 42);
  EXPECT_EQ(reply->usage->completion_tokens, 17);

  const std::vector<ReceivedRequest> received = fake.requests();
  ASSERT_THAT(received, SizeIs(1));
  const ReceivedRequest& request = received[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/v1/chat/completions");
  EXPECT_EQ(HeaderOf(request, "Authorization"),
            std::string("Bearer ") + kApiKey);
  EXPECT_THAT(HeaderOf(request, "Content-Type"), HasSubstr("application/json"));
  ASSERT_TRUE(request.json.is_object()) << request.body;
  EXPECT_EQ(request.json.value("model", ""), "gpt-4o-mini");
  EXPECT_EQ(request.json.value("max_tokens", 0), 1000);
  EXPECT_DOUBLE_EQ(request.json.value("temperature", -1.0), 0.7);
  // The system prompt (French, compiled in) first, then the turns in order.
  ASSERT_FALSE(SystemPrompt().empty());
  EXPECT_THAT(SystemPrompt(), HasSubstr("coach"));
  EXPECT_THAT(
      TurnsOf(request.json),
      ElementsAre(Pair("system", std::string(SystemPrompt())),
                  Pair("user", "Je stresse avant mes examens."),
                  Pair("assistant", "Qu'est-ce qui vous inquiète le plus ?"),
                  Pair("user", "Les maths.")));
}

TEST(OpenAiCoachProtocolTest, SendsOverriddenModelMaxTokensAndTemperature) {
  FakeOpenAi fake;
  OpenAiOptions options = FastOptions(fake.base_url() + "/");  // trailing '/'
  options.model = "llama-3.1-8b-instruct";
  options.max_tokens = 256;
  options.temperature = 0.2;
  auto coach = OpenAiCoach::Create(options);
  ASSERT_TRUE(coach.ok()) << coach.status();

  ASSERT_TRUE(
      (*coach)->Reply(Conversation("Prompt.", {UserTurn("Salut")})).ok());
  const std::vector<ReceivedRequest> received = fake.requests();
  ASSERT_THAT(received, SizeIs(1));
  EXPECT_EQ(received[0].path, "/v1/chat/completions");
  EXPECT_EQ(received[0].json.value("model", ""), "llama-3.1-8b-instruct");
  EXPECT_EQ(received[0].json.value("max_tokens", 0), 256);
  EXPECT_DOUBLE_EQ(received[0].json.value("temperature", -1.0), 0.2);
}

// The budget keeps the newest earlier turns that fit and drops the oldest;
// the system prompt and the new message always go.
TEST(OpenAiCoachProtocolTest, TruncatesTheOldestTurnsToTheTokenBudget) {
  const std::string prompt = "Tu es un coach bienveillant.";
  std::vector<CoachTurn> turns;
  for (int i = 0; i < 6; ++i) {
    std::string text = absl::StrCat("Tour ", i, " ", std::string(400, 'x'));
    turns.push_back(i % 2 == 0 ? UserTurn(std::move(text))
                               : AssistantTurn(std::move(text)));
  }
  turns.push_back(UserTurn("Nouveau message"));
  const int turn_cost = EstimateTokens(turns[0].content);
  // Room for exactly two earlier turns, not three.
  const int budget = EstimateTokens(prompt) +
                     EstimateTokens("Nouveau message") + 3 * turn_cost - 1;

  FakeOpenAi fake;
  OpenAiOptions options = FastOptions(fake.base_url());
  options.context_token_budget = budget;
  auto coach = OpenAiCoach::Create(options);
  ASSERT_TRUE(coach.ok()) << coach.status();
  ASSERT_TRUE((*coach)->Reply(Conversation(prompt, turns)).ok());

  // A budget smaller than the prompt and the new message alone: both still go.
  options.context_token_budget = 1;
  auto tiny = OpenAiCoach::Create(options);
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  ASSERT_TRUE((*tiny)->Reply(Conversation(prompt, turns)).ok());

  const std::vector<ReceivedRequest> received = fake.requests();
  ASSERT_THAT(received, SizeIs(2));
  EXPECT_THAT(
      TurnsOf(received[0].json),
      ElementsAre(Pair("system", prompt), Pair("user", turns[4].content),
                  Pair("assistant", turns[5].content),
                  Pair("user", "Nouveau message")));
  EXPECT_THAT(
      TurnsOf(received[1].json),
      ElementsAre(Pair("system", prompt), Pair("user", "Nouveau message")));
}

TEST(OpenAiCoachProtocolTest, ConnectionRefusedIsUnavailable) {
  const RefusingLoopbackPort refusing;
  const int port = refusing.port();
  ASSERT_NE(port, 0);
  auto coach = OpenAiCoach::Create(
      FastOptions(absl::StrCat("http://127.0.0.1:", port, "/v1")));
  ASSERT_TRUE(coach.ok()) << coach.status();
  const auto reply =
      (*coach)->Reply(Conversation("Prompt.", {UserTurn("Allô")}));
  // UNAVAILABLE, not DEADLINE_EXCEEDED: the refusal ended the reply, every
  // retry included, before its timeout.
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable)
      << reply.status();
  EXPECT_THAT(reply.status().message(), Not(HasSubstr(kApiKey)));
}

// TLS: a server whose certificate no trusted CA signed (self-signed, made
// here with the openssl tool) is refused before any request is sent, while
// a client that skips verification gets through (the server works).
TEST(OpenAiCoachProtocolTest, RefusesAnUntrustedCertificate) {
  TempDir dir;
  const std::string cert = dir.File("cert.pem");
  const std::string key = dir.File("key.pem");
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
      "-nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
      "-keyout ",
      key, " -out ", cert, " >/dev/null 2>&1");
  if (std::system(command.c_str()) != 0) GTEST_SKIP() << "no openssl tool";

  httplib::SSLServer server(cert.c_str(), key.c_str());
  ASSERT_TRUE(server.is_valid());
  std::atomic<int> received{0};
  server.Post("/v1/chat/completions", [&received](const httplib::Request&,
                                                  httplib::Response& response) {
    ++received;
    response.set_content(CompletionBody("Par TLS."), "application/json");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread thread([&server] { server.listen_after_bind(); });

  absl::StatusCode refused = absl::StatusCode::kOk;
  {
    auto coach = OpenAiCoach::Create(
        FastOptions(absl::StrCat("https://127.0.0.1:", port, "/v1")));
    if (coach.ok()) {
      refused =
          (*coach)->Reply(Conversation("P.", {UserTurn("x")})).status().code();
    }
  }
  const int received_by_coach = received.load();
  httplib::SSLClient unverified("127.0.0.1", port);
  unverified.enable_server_certificate_verification(false);
  const auto answer =
      unverified.Post("/v1/chat/completions", "{}", "application/json");
  unverified.stop();
  server.stop();
  thread.join();

  EXPECT_EQ(refused, absl::StatusCode::kUnavailable);
  EXPECT_EQ(received_by_coach, 0);
  ASSERT_TRUE(answer) << "the TLS server does not work";
  EXPECT_EQ(answer->status, 200);
}

// The idle-connection pool exists to save latency. A request on a reused
// keep-alive connection must not wait for Nagle's algorithm: if the headers
// and the body go out separately, without TCP_NODELAY the body waits for the
// server's delayed ACK (40 ms or more on Linux) on every call.
TEST(OpenAiCoachProtocolTest, AReusedConnectionAddsNoNagleDelay) {
  LocalCompletions server(4, absl::ZeroDuration());  // outlives the coach
  auto coach = OpenAiCoach::Create(FastOptions(server.base_url()));
  ASSERT_TRUE(coach.ok()) << coach.status();
  std::vector<absl::Duration> latencies;
  for (int i = 0; i < 8; ++i) {
    const absl::Time start = absl::Now();
    ASSERT_TRUE((*coach)->Reply(Conversation("P.", {UserTurn("x")})).ok());
    latencies.push_back(absl::Now() - start);
  }
  std::sort(latencies.begin(), latencies.end());
  // The median: robust to a scheduling hiccup on a loaded machine.
  EXPECT_LT(latencies[latencies.size() / 2], absl::Milliseconds(20))
      << "min " << latencies.front() << " max " << latencies.back();
}

// Threads of this process, from /proc.
int ThreadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "Threads:")) return std::atoi(line.c_str() + 8);
  }
  return -1;
}

// A reply awaited from the AI holds a socket, not a thread: with 200 of them
// in flight at once (all received by the provider, none answered yet), the
// process has no more threads than before they started.
TEST(OpenAiCoachProtocolTest, RepliesInFlightHoldNoThreadEach) {
  constexpr int kInFlight = 200;
  static_assert(kInFlight < FakeOpenAi::kWorkers);
  FakeOpenAi fake;
  auto coach = OpenAiCoach::Create(FastOptions(fake.base_url()));
  ASSERT_TRUE(coach.ok()) << coach.status();
  // One reply first: the fake's workers (threads of this process too) are
  // all started once it has answered.
  ASSERT_TRUE((*coach)->Reply(Conversation("P.", {UserTurn("x")})).ok());
  const int threads_before = ThreadCount();
  fake.HoldAnswers();

  std::atomic<int> replies{0};
  absl::BlockingCounter all_replied(kInFlight);
  for (int i = 0; i < kInFlight; ++i) {
    (*coach)->StartReply(Conversation("P.", {UserTurn("x")}),
                         [&](absl::StatusOr<CoachReply> reply) {
                           if (reply.ok()) ++replies;
                           all_replied.DecrementCount();
                         });
  }
  const bool all_in_flight = fake.AwaitRequests(kInFlight, absl::Seconds(20));
  const int threads_in_flight = ThreadCount();
  fake.ReleaseAnswers();
  all_replied.Wait();

  ASSERT_TRUE(all_in_flight) << fake.request_count() << " received";
  EXPECT_EQ(replies, kInFlight);
  EXPECT_EQ(threads_in_flight, threads_before);
}

// A reply's outcome, waited for (bounded: a lost callback fails the test).
struct AwaitedReply {
  absl::Notification done;
  absl::StatusOr<CoachReply> reply;

  Coach::ReplyCallback Callback() {
    return [this](absl::StatusOr<CoachReply> r) {
      reply = std::move(r);
      done.Notify();
    };
  }
  bool Wait() { return done.WaitForNotificationWithTimeout(absl::Seconds(20)); }
};

// A coach against `fake_` whose timeout (60 s) no test waits for, on a
// clock that stands still: only a cancel can end its replies, or the waits
// before their retries.
class OpenAiCoachCancelTest : public ::testing::Test {
 protected:
  void CreateCoach() {
    OpenAiOptions options = FastOptions(fake_.base_url());
    options.timeout = absl::Seconds(60);
    auto coach = OpenAiCoach::Create(options, env_);
    ASSERT_TRUE(coach.ok()) << coach.status();
    coach_ = *std::move(coach);
  }

  // Starts a reply the returned Cancellation can stop; its outcome goes to
  // `outcome`.
  std::shared_ptr<Cancellation> StartCancellableReply(AwaitedReply& outcome) {
    auto cancellation = std::make_shared<Cancellation>();
    CoachRequest request = Conversation("P.", {UserTurn("x")});
    request.cancellation = cancellation;
    coach_->StartReply(std::move(request), outcome.Callback());
    return cancellation;
  }

  FakeOpenAi fake_;
  FakeClockEnv env_;  // outlives the coach
  std::unique_ptr<OpenAiCoach> coach_;
};

// A caller who gives up stops its request to the AI at once: CANCELLED, not
// the timeout it would otherwise reach (the provider never answers here).
TEST_F(OpenAiCoachCancelTest, ACancelledCallerStopsTheRequestInFlight) {
  fake_.HoldAnswers();
  ASSERT_NO_FATAL_FAILURE(CreateCoach());
  AwaitedReply outcome;
  auto cancellation = StartCancellableReply(outcome);
  ASSERT_TRUE(fake_.AwaitRequests(1, absl::Seconds(20)));
  cancellation->Cancel();

  ASSERT_TRUE(outcome.Wait()) << "still waiting on the AI";
  EXPECT_EQ(outcome.reply.status().code(), absl::StatusCode::kCancelled)
      << outcome.reply.status();
  EXPECT_EQ(fake_.request_count(), 1);
}

// The same during the wait before a retry: no second request is sent.
TEST_F(OpenAiCoachCancelTest, ACancelledCallerStopsTheWaitBeforeARetry) {
  fake_.Script({Answer(503, ErrorBody("busy", "server_error", ""),
                       {{"Retry-After", "30"}})});
  ASSERT_NO_FATAL_FAILURE(CreateCoach());
  AwaitedReply outcome;
  auto cancellation = StartCancellableReply(outcome);
  // The 503 is read and the 30 s wait has begun.
  ASSERT_TRUE(env_.AwaitLines("; retry 1 in 30000 ms", 1));
  cancellation->Cancel();

  ASSERT_TRUE(outcome.Wait()) << "still waiting out the Retry-After";
  EXPECT_EQ(outcome.reply.status().code(), absl::StatusCode::kCancelled)
      << outcome.reply.status();
  EXPECT_EQ(fake_.request_count(), 1);
}

// Storing a reply may wait (on SQLite's write lock, say). A caller's slow
// callback must not hold up the other replies: they keep arriving.
TEST(OpenAiCoachProtocolTest, ASlowCallbackDoesNotHoldUpOtherReplies) {
  FakeOpenAi fake;
  auto coach = OpenAiCoach::Create(FastOptions(fake.base_url()));
  ASSERT_TRUE(coach.ok()) << coach.status();

  absl::Notification first_called, release_first;
  (*coach)->StartReply(
      Conversation("P.", {UserTurn("un")}), [&](absl::StatusOr<CoachReply>) {
        first_called.Notify();
        release_first.WaitForNotificationWithTimeout(absl::Seconds(20));
      });
  ASSERT_TRUE(first_called.WaitForNotificationWithTimeout(absl::Seconds(20)));
  AwaitedReply second;
  (*coach)->StartReply(Conversation("P.", {UserTurn("deux")}),
                       second.Callback());
  const bool second_arrived = second.Wait();
  release_first.Notify();
  ASSERT_TRUE(second_arrived) << "held up by the first callback";
  EXPECT_TRUE(second.reply.ok()) << second.reply.status();
}

// Shutting down (CancelAll) ends the requests in flight and the waits
// before a retry at once, and refuses later replies.
TEST_F(OpenAiCoachCancelTest, CancelAllEndsEveryReplyNowAndLater) {
  fake_.Script({Answer(503, ErrorBody("busy", "server_error", ""),
                       {{"Retry-After", "30"}})});
  ASSERT_NO_FATAL_FAILURE(CreateCoach());

  AwaitedReply waiting, in_flight, later;
  coach_->StartReply(Conversation("P.", {UserTurn("un")}), waiting.Callback());
  ASSERT_TRUE(env_.AwaitLines("; retry 1 in 30000 ms", 1));
  fake_.HoldAnswers();
  coach_->StartReply(Conversation("P.", {UserTurn("deux")}),
                     in_flight.Callback());
  ASSERT_TRUE(fake_.AwaitRequests(2, absl::Seconds(20)));
  coach_->CancelAll();

  ASSERT_TRUE(waiting.Wait()) << "still waiting out the Retry-After";
  ASSERT_TRUE(in_flight.Wait()) << "still waiting on the AI";
  EXPECT_EQ(waiting.reply.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(in_flight.reply.status().code(), absl::StatusCode::kUnavailable);
  coach_->StartReply(Conversation("P.", {UserTurn("trois")}), later.Callback());
  ASSERT_TRUE(later.Wait());
  EXPECT_EQ(later.reply.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(fake_.request_count(), 2);
}

// Sets environment variables for a scope, and puts the old values back.
class ScopedEnvironment {
 public:
  explicit ScopedEnvironment(
      std::vector<std::pair<std::string, std::optional<std::string>>> values) {
    for (auto& [name, value] : values) {
      const char* old = std::getenv(name.c_str());
      saved_.emplace_back(name, old != nullptr ? std::optional<std::string>(old)
                                               : std::nullopt);
      Set(name, value);
    }
  }
  ~ScopedEnvironment() {
    for (const auto& [name, value] : saved_) Set(name, value);
  }

 private:
  static void Set(const std::string& name,
                  const std::optional<std::string>& value) {
    if (value.has_value()) {
      setenv(name.c_str(), value->c_str(), /*overwrite=*/1);
    } else {
      unsetenv(name.c_str());
    }
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// Requests carry the API key: they go through a proxy only when one is
// configured, never because http_proxy happens to be set.
TEST(OpenAiCoachProtocolTest, IgnoresProxyEnvironmentVariables) {
  FakeOpenAi fake;
  // A proxy that does not exist (going through it would fail), for every
  // variable curl reads; no exemption for loopback. Set before the coach
  // starts its thread.
  const std::string nowhere = "http://127.0.0.1:1";
  ScopedEnvironment environment({{"http_proxy", nowhere},
                                 {"https_proxy", nowhere},
                                 {"all_proxy", nowhere},
                                 {"ALL_PROXY", nowhere},
                                 {"no_proxy", std::nullopt},
                                 {"NO_PROXY", std::nullopt}});
  auto coach = OpenAiCoach::Create(FastOptions(fake.base_url()));
  ASSERT_TRUE(coach.ok()) << coach.status();
  auto reply = (*coach)->Reply(Conversation("P.", {UserTurn("x")}));
  EXPECT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(fake.request_count(), 1);
}

// --- End to end: a real coach-server with the OpenAI coach -------------------

class OpenAiEndToEndTest : public ::testing::Test {
 protected:
  // Starts the server with the OpenAI coach and `options` (FastOptions for
  // the fake when absent), on `env` (env_, real time, when absent). Call it
  // as ASSERT_NO_FATAL_FAILURE(Start()).
  void Start(std::optional<OpenAiOptions> options = std::nullopt,
             Env* env = nullptr) {
    options_ = options.value_or(FastOptions(fake_.base_url()));
    auto coach = OpenAiCoach::Create(options_, env != nullptr ? *env : env_);
    ASSERT_TRUE(coach.ok()) << coach.status();
    coach_ = *std::move(coach);
    Config config = TestConfig();
    config.openai = options_;
    server_ = std::make_unique<TestServer>(config, coach_.get());
    ASSERT_TRUE(server_->start_error().ok()) << server_->start_error();
  }

  grpc::Status Send(const std::string& user_id, const std::string& session_id,
                    const std::string& message,
                    v1::SendMessageResponse* out = nullptr) {
    return server_->Send(user_id, session_id, message, out);
  }

  grpc::Status Stats(const std::string& user_id, v1::UserStats* out) {
    v1::GetUserStatsRequest request;
    request.set_user_id(user_id);
    v1::GetUserStatsResponse response;
    grpc::Status status =
        server_->users().GetUserStats(Context().get(), request, &response);
    *out = response.stats();
    return status;
  }

  grpc::Status Sessions(const std::string& user_id,
                        v1::ListSessionsResponse* out) {
    v1::ListSessionsRequest request;
    request.set_user_id(user_id);
    return server_->chat().ListSessions(Context().get(), request, out);
  }

  int RemainingCredits(const std::string& user_id) {
    v1::UserStats stats;
    EXPECT_TRUE(IsOk(Stats(user_id, &stats)));
    EXPECT_TRUE(stats.has_remaining_credits()) << "a FREE user has a count";
    return stats.remaining_credits();
  }

  // After a failed first send (no sessionId): no credit charged, no session
  // and no message stored.
  void ExpectNothingChargedOrStored(const std::string& user_id) {
    v1::UserStats stats;
    ASSERT_TRUE(IsOk(Stats(user_id, &stats)));
    EXPECT_EQ(stats.remaining_credits(), kFreeCredits) << "credit charged";
    EXPECT_EQ(stats.total_chats(), 0);
    EXPECT_EQ(stats.total_messages(), 0);
    v1::ListSessionsResponse sessions;
    ASSERT_TRUE(IsOk(Sessions(user_id, &sessions)));
    EXPECT_THAT(sessions.sessions(), IsEmpty()) << "session stored";
  }

  // The stored messages of a session, oldest first.
  std::vector<MessageRecord> Stored(const std::string& session_id) {
    auto messages = server_->store().ListRecentMessages(session_id, 100);
    EXPECT_TRUE(messages.ok()) << messages.status();
    return messages.ok() ? *std::move(messages) : std::vector<MessageRecord>();
  }

  // Destroyed in reverse: the server, then the coach it uses, then the AI
  // servers (after the coach's idle connections to them are closed).
  FakeOpenAi fake_;
  std::unique_ptr<LocalCompletions> local_;  // for tests FakeOpenAi can't serve
  CapturingEnv env_;         // the coach's log lines, on real time
  FakeClockEnv fake_clock_;  // for the tests of our own timing
  OpenAiOptions options_;
  std::unique_ptr<OpenAiCoach> coach_;
  std::unique_ptr<TestServer> server_;
};

// Two sends in one session: the second request carries the system prompt,
// the first exchange, then the new message.
TEST_F(OpenAiEndToEndTest, SendsSystemPromptThenHistoryThenNewMessage) {
  ASSERT_NO_FATAL_FAILURE(Start());
  v1::SendMessageResponse first;
  ASSERT_TRUE(IsOk(Send("alice", "", "Comment mieux dormir ?", &first)));
  ASSERT_TRUE(IsOk(Send("alice", first.session_id(), "Et le week-end ?")));

  const std::vector<ReceivedRequest> received = fake_.requests();
  ASSERT_THAT(received, SizeIs(2));
  for (const ReceivedRequest& request : received) {
    EXPECT_EQ(request.path, "/v1/chat/completions");
    EXPECT_EQ(HeaderOf(request, "Authorization"),
              std::string("Bearer ") + kApiKey);
    EXPECT_EQ(request.json.value("model", ""), "gpt-4o-mini");
    EXPECT_EQ(request.json.value("max_tokens", 0), 1000);
    EXPECT_DOUBLE_EQ(request.json.value("temperature", -1.0), 0.7);
  }
  const std::string prompt(SystemPrompt());
  EXPECT_THAT(TurnsOf(received[0].json),
              ElementsAre(Pair("system", prompt),
                          Pair("user", "Comment mieux dormir ?")));
  EXPECT_THAT(TurnsOf(received[1].json),
              ElementsAre(Pair("system", prompt),
                          Pair("user", "Comment mieux dormir ?"),
                          Pair("assistant", kDefaultReply),
                          Pair("user", "Et le week-end ?")));
}

// The session's history through the real server, cut to the budget: with
// room for the last exchange only, the first is dropped.
TEST_F(OpenAiEndToEndTest, TruncatesTheSessionHistoryToTheBudget) {
  const std::string first(300, 'a');
  const std::string second(300, 'b');
  const std::string last = "Et maintenant ?";
  OpenAiOptions options = FastOptions(fake_.base_url());
  options.context_token_budget = EstimateTokens(SystemPrompt()) +
                                 EstimateTokens(last) + EstimateTokens(second) +
                                 EstimateTokens(kDefaultReply);
  ASSERT_NO_FATAL_FAILURE(Start(options));

  v1::SendMessageResponse sent;
  ASSERT_TRUE(IsOk(Send("bob", "", first, &sent)));
  ASSERT_TRUE(IsOk(Send("bob", sent.session_id(), second)));
  ASSERT_TRUE(IsOk(Send("bob", sent.session_id(), last)));

  const std::vector<ReceivedRequest> received = fake_.requests();
  ASSERT_THAT(received, SizeIs(3));
  EXPECT_THAT(
      TurnsOf(received[2].json),
      ElementsAre(Pair("system", std::string(SystemPrompt())),
                  Pair("user", second), Pair("assistant", kDefaultReply),
                  Pair("user", last)));
}

TEST_F(OpenAiEndToEndTest, SuccessStoresReplyModelAndUsageAndChargesACredit) {
  ASSERT_NO_FATAL_FAILURE(Start());
  fake_.Script({Answer(
      200, CompletionBody("Couchez-vous à heure fixe.", "stop", 42, 17))});
  v1::SendMessageResponse sent;
  ASSERT_TRUE(IsOk(Send("carol", "", "Comment mieux dormir ?", &sent)));
  EXPECT_EQ(sent.assistant_message().content(), "Couchez-vous à heure fixe.");
  EXPECT_EQ(sent.remaining_credits(), kFreeCredits - 1);
  EXPECT_EQ(RemainingCredits("carol"), kFreeCredits - 1);

  const std::vector<MessageRecord> stored = Stored(sent.session_id());
  ASSERT_THAT(stored, SizeIs(2));
  EXPECT_EQ(stored[0].role, Role::kUser);
  EXPECT_EQ(stored[0].content, "Comment mieux dormir ?");
  EXPECT_EQ(stored[0].model, "");
  EXPECT_FALSE(stored[0].usage.has_value());
  EXPECT_EQ(stored[1].role, Role::kAssistant);
  EXPECT_EQ(stored[1].content, "Couchez-vous à heure fixe.");
  // The model the provider answered with, not merely the one asked for.
  EXPECT_EQ(stored[1].model, kAnswerModel);
  ASSERT_TRUE(stored[1].usage.has_value());
  EXPECT_EQ(stored[1].usage->prompt_tokens, 42);
  EXPECT_EQ(stored[1].usage->completion_tokens, 17);
}

// --- The fault table ---------------------------------------------------------

struct FaultCase {
  std::string name;
  // Answered in order; then FakeOpenAi's default success.
  std::vector<FakeResponse> script;
  grpc::StatusCode code;
  std::string reason;        // "" for a successful send
  int requests;              // what the fake must receive
  std::string stored_reply;  // on success, the assistant message kept
};

void PrintTo(const FaultCase& fault, std::ostream* out) { *out << fault.name; }

std::vector<FaultCase> FaultCases() {
  using grpc::StatusCode;
  const std::string ai_unavailable = "AI_UNAVAILABLE";
  const std::string internal = "INTERNAL";
  const std::string filtered = "CONTENT_FILTERED";
  const std::string cut = "Pour progresser, commencez par";
  return {
      // Retried (connection errors, 408, 409, 429, 5xx), then answered.
      {"Http500ThenOk",
       {ErrorAnswer(500, "server_error", "")},
       StatusCode::OK,
       "",
       2,
       kDefaultReply},
      {"Http502And503ThenOk",
       {ErrorAnswer(502, "server_error", ""),
        ErrorAnswer(503, "server_error", "")},
       StatusCode::OK,
       "",
       3,
       kDefaultReply},
      {"Http408ThenOk",
       {ErrorAnswer(408, "timeout", "")},
       StatusCode::OK,
       "",
       2,
       kDefaultReply},
      {"Http409ThenOk",
       {ErrorAnswer(409, "conflict", "")},
       StatusCode::OK,
       "",
       2,
       kDefaultReply},
      {"Http429RateLimitThenOk",
       {ErrorAnswer(429, "requests", "rate_limit_exceeded")},
       StatusCode::OK,
       "",
       2,
       kDefaultReply},
      // Retries exhausted: 1 + max_retries (2) attempts.
      {"Http503ThreeTimes",
       {ErrorAnswer(503, "server_error", ""),
        ErrorAnswer(503, "server_error", ""),
        ErrorAnswer(503, "server_error", "")},
       StatusCode::UNAVAILABLE,
       ai_unavailable,
       3,
       ""},
      // Not retried: waiting will not fix them.
      {"Http429InsufficientQuota",
       {ErrorAnswer(429, "insufficient_quota", "insufficient_quota",
                    "You exceeded your current quota.")},
       StatusCode::UNAVAILABLE,
       ai_unavailable,
       1,
       ""},
      {"Http401InvalidKey",
       {ErrorAnswer(401, "invalid_request_error", "invalid_api_key",
                    std::string("Incorrect API key provided: ") + kApiKey)},
       StatusCode::UNAVAILABLE,
       ai_unavailable,
       1,
       ""},
      {"Http400",
       {ErrorAnswer(400, "invalid_request_error", "")},
       StatusCode::UNAVAILABLE,
       ai_unavailable,
       1,
       ""},
      {"Http403",
       {ErrorAnswer(403, "invalid_request_error",
                    "unsupported_country_region_territory")},
       StatusCode::UNAVAILABLE,
       ai_unavailable,
       1,
       ""},
      {"Http404UnknownModel",
       {ErrorAnswer(404, "invalid_request_error", "model_not_found")},
       StatusCode::UNAVAILABLE,
       ai_unavailable,
       1,
       ""},
      // A 200 that makes no sense: INTERNAL, not retried.
      {"MalformedJson",
       {Answer(200, "{not json")},
       StatusCode::INTERNAL,
       internal,
       1,
       ""},
      {"AnswerOverTheSizeCap",
       {Answer(200, CompletionBody(std::string(2 << 20, 'a')))},
       StatusCode::INTERNAL,
       internal,
       1,
       ""},
      {"NoChoices",
       {Answer(
           200,
           json{{"model", kAnswerModel}, {"choices", json::array()}}.dump())},
       StatusCode::INTERNAL,
       internal,
       1,
       ""},
      {"NullContent",
       {Answer(200, CompletionWithMessage(
                        {{"role", "assistant"}, {"content", nullptr}}))},
       StatusCode::INTERNAL,
       internal,
       1,
       ""},
      {"EmptyContent",
       {Answer(200, CompletionBody(""))},
       StatusCode::INTERNAL,
       internal,
       1,
       ""},
      // Cut at max_tokens: the text so far is a reply.
      {"FinishReasonLength",
       {Answer(200, CompletionBody(cut, "length"))},
       StatusCode::OK,
       "",
       1,
       cut},
      // Refused by the provider: the user is told so, in French.
      {"FinishReasonContentFilter",
       {Answer(200, CompletionBody("", "content_filter"))},
       StatusCode::FAILED_PRECONDITION,
       filtered,
       1,
       ""},
      {"ModelRefusal",
       {Answer(200, CompletionWithMessage({{"role", "assistant"},
                                           {"content", nullptr},
                                           {"refusal", "I can't help."}}))},
       StatusCode::FAILED_PRECONDITION,
       filtered,
       1,
       ""},
  };
}

class FaultTableTest : public OpenAiEndToEndTest,
                       public ::testing::WithParamInterface<FaultCase> {};

TEST_P(FaultTableTest, EndsAsExpectedAndChargesOnlyAReply) {
  const FaultCase& fault = GetParam();
  ASSERT_NO_FATAL_FAILURE(Start());
  fake_.Script(fault.script);

  v1::SendMessageResponse sent;
  const grpc::Status status =
      Send("dave", "", "Aidez-moi à m'organiser.", &sent);

  EXPECT_EQ(fake_.request_count(), fault.requests);
  // A retry resends the same request.
  for (const ReceivedRequest& request : fake_.requests()) {
    EXPECT_EQ(request.body, fake_.requests()[0].body);
  }
  if (fault.code == grpc::StatusCode::OK) {
    ASSERT_TRUE(IsOk(status));
    EXPECT_EQ(sent.assistant_message().content(), fault.stored_reply);
    EXPECT_EQ(RemainingCredits("dave"), kFreeCredits - 1);
    const std::vector<MessageRecord> stored = Stored(sent.session_id());
    ASSERT_THAT(stored, SizeIs(2));
    EXPECT_EQ(stored[1].content, fault.stored_reply);
  } else {
    EXPECT_TRUE(HasError(status, fault.code, fault.reason));
    ExpectNothingChargedOrStored("dave");
  }
}

INSTANTIATE_TEST_SUITE_P(Faults, FaultTableTest,
                         ::testing::ValuesIn(FaultCases()),
                         [](const ::testing::TestParamInfo<FaultCase>& info) {
                           return info.param.name;
                         });

// --- Retry-After -------------------------------------------------------------

// On the fake clock: the retry waits for the time the server asked, then
// goes at once (the fake clock moves only when the test moves it). The waits
// are long, so that a retry timed on real time could not pass for one timed
// on the fake clock: it would come many seconds late.
struct RetryAfterCase {
  std::string name;
  httplib::Headers headers;  // on a 429, then a success
  absl::Duration max_retry_after;
  bool succeeds;
  int requests;
  std::string logged;  // the coach's line about the retry
  // Moving the clock this far does not retry yet (zero: not checked)...
  absl::Duration not_yet;
  // ...this far does (not moved when the send fails at once).
  absl::Duration due;
};

void PrintTo(const RetryAfterCase& c, std::ostream* out) { *out << c.name; }

class RetryAfterTest : public OpenAiEndToEndTest,
                       public ::testing::WithParamInterface<RetryAfterCase> {};

TEST_P(RetryAfterTest, IsHonouredWithinItsBounds) {
  const RetryAfterCase& c = GetParam();
  OpenAiOptions options = FastOptions(fake_.base_url());
  options.max_retry_after = c.max_retry_after;
  // Below the send's own gRPC deadline (30 s, on real time).
  options.timeout = absl::Seconds(25);
  ASSERT_NO_FATAL_FAILURE(Start(options, &fake_clock_));
  fake_.Script({Answer(
      429, ErrorBody("Rate limit reached", "requests", "rate_limit_exceeded"),
      c.headers)});

  grpc::Status status;
  std::thread sender([&] { status = Send("erin", "", "Bonjour"); });
  // The 429 is read and the wait has begun (or the send given up).
  const bool logged = fake_clock_.AwaitLines(c.logged, 1);
  EXPECT_TRUE(logged) << fake_clock_.text();
  if (logged && c.succeeds) {
    if (c.not_yet > absl::ZeroDuration()) {
      fake_clock_.Advance(c.not_yet);
      EXPECT_EQ(fake_.request_count(), 1) << "retried before the wait was over";
    }
    fake_clock_.Advance(c.due - c.not_yet);
    // Sent now, without waiting for real time to pass.
    EXPECT_TRUE(fake_.AwaitRequests(2, absl::Seconds(10)))
        << "the retry did not go when the fake clock passed its wait";
  }
  sender.join();

  EXPECT_EQ(fake_.request_count(), c.requests);
  if (c.succeeds) {
    EXPECT_TRUE(IsOk(status));
    EXPECT_EQ(RemainingCredits("erin"), kFreeCredits - 1);
  } else {
    EXPECT_TRUE(
        HasError(status, grpc::StatusCode::UNAVAILABLE, "AI_UNAVAILABLE"));
    ExpectNothingChargedOrStored("erin");
  }
}

INSTANTIATE_TEST_SUITE_P(
    RetryAfter, RetryAfterTest,
    ::testing::Values(RetryAfterCase{"RetryAfterMs",
                                     {{"retry-after-ms", "20300"}},
                                     absl::Seconds(60),
                                     true,
                                     2,
                                     "; retry 1 in 20300 ms",
                                     absl::Milliseconds(20299),
                                     absl::Milliseconds(20300)},
                      RetryAfterCase{"RetryAfterSeconds",
                                     {{"Retry-After", "15"}},
                                     absl::Seconds(60),
                                     true,
                                     2,
                                     "; retry 1 in 15000 ms",
                                     absl::Milliseconds(14999),
                                     absl::Seconds(15)},
                      // Longer than max_retry_after: the backoff (FastOptions:
                      // 10 ms, less up to 25% of jitter) is used instead.
                      RetryAfterCase{"AboveTheCapIsIgnored",
                                     {{"retry-after-ms", "30000"}},
                                     absl::Milliseconds(200),
                                     true,
                                     2,
                                     "; retry 1 in ",
                                     absl::ZeroDuration(),
                                     absl::Milliseconds(10)},
                      // Within the cap but past the overall timeout (25 s):
                      // fail now rather than sleep into the deadline.
                      RetryAfterCase{"BeyondTheTimeoutFailsAtOnce",
                                     {{"retry-after-ms", "26000"}},
                                     absl::Seconds(60),
                                     false,
                                     1,
                                     "; no time left to retry",
                                     absl::ZeroDuration(),
                                     absl::ZeroDuration()}),
    [](const ::testing::TestParamInfo<RetryAfterCase>& info) {
      return info.param.name;
    });

// --- Timeouts and connection errors ------------------------------------------

// An answer later than the overall timeout: AI_UNAVAILABLE at the timeout,
// no retry past it. On real time: the cut is libcurl's transfer timeout,
// which a fake clock cannot move. The bounds are loose on purpose: at least
// most of the timeout (300 ms), and far below the 30 s the answer takes.
TEST_F(OpenAiEndToEndTest, AnAnswerThatComesTooLateIsUnavailable) {
  OpenAiOptions options = FastOptions(fake_.base_url());
  // Long enough for the request to reach the fake even in a sanitizer build
  // on a busy machine (at 300 ms, TSan once timed out before it arrived),
  // far shorter than the answer's 30 s.
  options.timeout = absl::Seconds(2);
  ASSERT_NO_FATAL_FAILURE(Start(options));
  fake_.Script(
      {Answer(200, CompletionBody("Trop tard."), {}, absl::Seconds(30))});

  const absl::Time start = absl::Now();
  const grpc::Status status = Send("frank", "", "Bonjour");
  const absl::Duration took = absl::Now() - start;

  EXPECT_TRUE(
      HasError(status, grpc::StatusCode::UNAVAILABLE, "AI_UNAVAILABLE"));
  EXPECT_GE(took, absl::Milliseconds(1900));
  EXPECT_LT(took, absl::Seconds(10));
  EXPECT_EQ(fake_.request_count(), 1);
  ExpectNothingChargedOrStored("frank");
}

TEST_F(OpenAiEndToEndTest, ConnectionRefusedIsRetriedThenUnavailable) {
  const RefusingLoopbackPort refusing;
  const int port = refusing.port();
  ASSERT_NE(port, 0);
  ASSERT_NO_FATAL_FAILURE(
      Start(FastOptions(absl::StrCat("http://127.0.0.1:", port, "/v1")),
            &fake_clock_));

  grpc::Status status;
  std::thread sender([&] { status = Send("grace", "", "Bonjour"); });
  // Each backoff (at most retry_max_delay) ends when the fake clock passes
  // it, far within the timeout: the send ends with the refusal, not with
  // the deadline.
  for (int retry = 1; retry <= options_.max_retries; ++retry) {
    const std::string line = absl::StrCat("; retry ", retry, " in ");
    if (!fake_clock_.AwaitLines(line, 1)) {
      ADD_FAILURE() << "no \"" << line << "\" in\n" << fake_clock_.text();
      break;
    }
    fake_clock_.Advance(options_.retry_max_delay);
  }
  sender.join();

  EXPECT_TRUE(
      HasError(status, grpc::StatusCode::UNAVAILABLE, "AI_UNAVAILABLE"));
  // Nothing listens, so attempts cannot be counted at the server; the
  // client's log says each retry ("...; retry N in M ms"): max_retries of
  // them, i.e. three attempts.
  EXPECT_EQ(fake_clock_.CountLines("; retry "), options_.max_retries)
      << fake_clock_.text();
  ExpectNothingChargedOrStored("grace");
}

// --- The key never leaks -----------------------------------------------------

struct KeyLeakCase {
  std::string name;
  std::vector<FakeResponse> script;
  int requests;
};

void PrintTo(const KeyLeakCase& c, std::ostream* out) { *out << c.name; }

class KeyLeakTest : public OpenAiEndToEndTest,
                    public ::testing::WithParamInterface<KeyLeakCase> {};

// The provider echoes the key in its error message: it must reach neither
// the client, nor the coach's log (captured by its Env), nor the database
// files.
TEST_P(KeyLeakTest, KeyIsNeverReturnedLoggedOrStored) {
  ASSERT_NO_FATAL_FAILURE(Start());
  fake_.Script(GetParam().script);

  const grpc::Status status = Send("heidi", "", "Bonjour");
  const std::string log = env_.text();

  EXPECT_TRUE(
      HasError(status, grpc::StatusCode::UNAVAILABLE, "AI_UNAVAILABLE"));
  EXPECT_EQ(fake_.request_count(), GetParam().requests);
  EXPECT_THAT(status.error_message(), Not(HasSubstr("SECRET")));
  EXPECT_THAT(status.error_details(), Not(HasSubstr("SECRET")));
  // The failure was logged (the capture works), without the key.
  EXPECT_THAT(log, HasSubstr("OpenAI: HTTP"));
  EXPECT_THAT(log, Not(HasSubstr("SECRET")));
  ExpectNothingChargedOrStored("heidi");
  EXPECT_THAT(
      AllBytesUnder(
          std::filesystem::path(server_->db_path()).parent_path().string()),
      Not(HasSubstr("SECRET")));
}

std::vector<KeyLeakCase> KeyLeakCases() {
  const std::string echo =
      std::string("Incorrect API key provided: ") + kApiKey;
  const FakeResponse server_error =
      ErrorAnswer(500, "server_error", "", echo + " (internal error)");
  return {
      {"Http401NotRetried",
       {ErrorAnswer(401, "invalid_request_error", "invalid_api_key", echo)},
       1},
      {"Http500Retried", {server_error, server_error, server_error}, 3},
      // The key in the fields other than `message`: none is logged.
      {"KeyInTypeAndCode", {ErrorAnswer(400, echo, echo, "Bad request")}, 1},
      // A part of the key (an exact-match filter would let it through):
      // no provider text is logged at all.
      {"PartOfTheKeyEchoed",
       {ErrorAnswer(401, "invalid_request_error", "invalid_api_key",
                    "Incorrect API key provided: sk-test-SECRET-ke**-123")},
       1},
  };
}

INSTANTIATE_TEST_SUITE_P(KeyLeak, KeyLeakTest,
                         ::testing::ValuesIn(KeyLeakCases()),
                         [](const ::testing::TestParamInfo<KeyLeakCase>& info) {
                           return info.param.name;
                         });

// --- Slow AI: credits and reads ----------------------------------------------

// k credits, n > k concurrent sends, each reply 300 ms: exactly k replies,
// and the AI is not even asked for the others (NO_CREDITS comes first).
TEST_F(OpenAiEndToEndTest, CreditInvariantHoldsWhileTheAiIsSlow) {
  ASSERT_NO_FATAL_FAILURE(Start());
  fake_.SetDefault(
      Answer(200, CompletionBody(kDefaultReply), {}, absl::Milliseconds(300)));
  constexpr int kSends = 12;
  std::vector<grpc::Status> results(kSends);
  std::vector<std::thread> senders;
  for (int i = 0; i < kSends; ++i) {
    senders.emplace_back([this, &results, i] {
      results[static_cast<size_t>(i)] =
          Send("ivan", "", absl::StrCat("Message ", i));
    });
  }
  for (std::thread& sender : senders) sender.join();

  int replied = 0;
  int no_credits = 0;
  for (const grpc::Status& status : results) {
    if (status.ok()) {
      ++replied;
    } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
               ErrorInfoOf(status).reason == "NO_CREDITS") {
      ++no_credits;
    } else {
      ADD_FAILURE() << "unexpected: " << IsOk(status).message();
    }
  }
  EXPECT_EQ(replied, kFreeCredits);
  EXPECT_EQ(no_credits, kSends - kFreeCredits);
  EXPECT_EQ(fake_.request_count(), kFreeCredits);
  EXPECT_EQ(RemainingCredits("ivan"), 0);
  v1::ListSessionsResponse sessions;
  ASSERT_TRUE(IsOk(Sessions("ivan", &sessions)));
  EXPECT_THAT(sessions.sessions(), SizeIs(kFreeCredits));
}

// Many sends waiting on a slow AI must not starve reads: while 20 sends are
// all held at the AI (released by the test, so that "still waiting" holds
// however loaded the machine), 50 reads complete, each OK, in well under the
// second a slow AI takes.
TEST_F(OpenAiEndToEndTest, ASlowAiDoesNotBlockReads) {
  constexpr int kSenders = 20;
  constexpr int kReads = 50;
  local_ = std::make_unique<LocalCompletions>(kSenders + 4, absl::Seconds(5));
  OpenAiOptions options = FastOptions(local_->base_url());
  options.timeout = absl::Seconds(8);
  ASSERT_NO_FATAL_FAILURE(Start(options));

  std::atomic<int> finished{0};
  std::vector<grpc::Status> results(kSenders);
  std::vector<std::thread> senders;
  const absl::Time sends_start = absl::Now();
  for (int i = 0; i < kSenders; ++i) {
    senders.emplace_back([this, &results, &finished, i] {
      results[static_cast<size_t>(i)] =
          Send(absl::StrCat("sender-", i), "", "Je suis lent ?");
      ++finished;
    });
  }

  const bool all_waiting = local_->AwaitRequests(kSenders, absl::Seconds(5));
  const absl::Duration to_reach_ai = absl::Now() - sends_start;
  EXPECT_TRUE(all_waiting) << "the sends never all reached the AI";
  std::vector<absl::Duration> latencies;
  absl::Duration reads_total;
  int finished_during_reads = -1;
  if (all_waiting) {
    const absl::Time reads_start = absl::Now();
    for (int i = 0; i < kReads; ++i) {
      const std::string user = absl::StrCat("sender-", i % kSenders);
      const absl::Time start = absl::Now();
      grpc::Status status;
      if (i % 2 == 0) {
        v1::UserStats stats;
        status = Stats(user, &stats);
      } else {
        v1::ListSessionsResponse sessions;
        status = Sessions(user, &sessions);
      }
      latencies.push_back(absl::Now() - start);
      EXPECT_TRUE(IsOk(status)) << "read " << i;
    }
    reads_total = absl::Now() - reads_start;
    finished_during_reads = finished.load();
  }
  local_->Release();
  for (std::thread& sender : senders) sender.join();
  const absl::Duration sends_total = absl::Now() - sends_start;

  for (int i = 0; i < kSenders; ++i) {
    EXPECT_TRUE(IsOk(results[static_cast<size_t>(i)])) << "send " << i;
  }
  if (!all_waiting) return;
  // The reads ran while every send was waiting at the AI.
  EXPECT_EQ(finished_during_reads, 0);
  EXPECT_LT(reads_total, absl::Milliseconds(900));
  std::sort(latencies.begin(), latencies.end());
  const std::string figures = absl::StrCat(
      kSenders, " sends at the AI after ", absl::FormatDuration(to_reach_ai),
      "; then ", kReads, " reads: total ", absl::FormatDuration(reads_total),
      ", median ", absl::FormatDuration(latencies[latencies.size() / 2]),
      ", max ", absl::FormatDuration(latencies.back()),
      "; sends released, all done after ", absl::FormatDuration(sends_total));
  std::printf("[ figures  ] %s\n", figures.c_str());
  RecordProperty("slow_ai_reads", figures);
}

// --- Unit checks: retry policy -----------------------------------------------

TEST(RetryPolicyTest, RetriesWhatTheSdksRetry) {
  struct Case {
    int status;
    const char* code;
    bool retryable;
  };
  for (const Case& c : std::vector<Case>{
           {0, "", true},  // no response: connection error, timeout
           {408, "", true},
           {409, "", true},
           {429, "rate_limit_exceeded", true},
           {429, "insufficient_quota", false},
           {500, "", true},
           {502, "", true},
           {503, "", true},
           {400, "", false},
           {401, "invalid_api_key", false},
           {403, "", false},
           {404, "model_not_found", false},
       }) {
    EXPECT_EQ(IsRetryable(c.status, c.code), c.retryable)
        << c.status << " " << c.code;
  }
}

// min(base * 2^(n-1), max), less up to 25% of jitter.
TEST(RetryPolicyTest, BackoffGrowsExponentiallyWithJitterAndIsCapped) {
  OpenAiOptions options;
  options.retry_base_delay = absl::Milliseconds(100);
  options.retry_max_delay = absl::Seconds(1);
  const absl::Duration nominal[] = {
      absl::Milliseconds(100), absl::Milliseconds(200), absl::Milliseconds(400),
      absl::Milliseconds(800), absl::Seconds(1),        absl::Seconds(1)};
  for (int retry = 1; retry <= 6; ++retry) {
    const absl::Duration expected = nominal[retry - 1];
    absl::Duration low = absl::InfiniteDuration();
    absl::Duration high = -absl::InfiniteDuration();
    for (int sample = 0; sample < 200; ++sample) {
      const absl::Duration delay = RetryDelay(retry, std::nullopt, options);
      EXPECT_GE(delay, expected * 0.75) << "retry " << retry;
      EXPECT_LE(delay, expected) << "retry " << retry;
      low = std::min(low, delay);
      high = std::max(high, delay);
    }
    EXPECT_LT(low, high) << "no jitter at retry " << retry;
  }
}

TEST(RetryPolicyTest, HonoursRetryAfterUpToTheCap) {
  OpenAiOptions options;
  options.retry_base_delay = absl::Milliseconds(100);
  options.retry_max_delay = absl::Seconds(1);
  options.max_retry_after = absl::Seconds(60);
  EXPECT_EQ(RetryDelay(1, absl::Seconds(3), options), absl::Seconds(3));
  EXPECT_EQ(RetryDelay(2, absl::Seconds(60), options), absl::Seconds(60));
  EXPECT_EQ(RetryDelay(1, absl::ZeroDuration(), options), absl::ZeroDuration());
  // Above the cap (or nonsense): ignored, the backoff applies.
  for (const absl::Duration ignored :
       {absl::Seconds(61), absl::Hours(1), absl::Seconds(-1)}) {
    const absl::Duration delay = RetryDelay(1, ignored, options);
    EXPECT_GE(delay, absl::Milliseconds(75)) << ignored;
    EXPECT_LE(delay, absl::Milliseconds(100)) << ignored;
  }
}

TEST(RetryPolicyTest, ParsesRetryAfterHeaders) {
  const absl::Time now = absl::FromCivil(
      absl::CivilSecond(2015, 10, 21, 7, 27, 30), absl::UTCTimeZone());
  EXPECT_EQ(ParseRetryAfter("250", "", now), absl::Milliseconds(250));
  EXPECT_EQ(ParseRetryAfter("", "2", now), absl::Seconds(2));
  // retry-after-ms is the more precise, and wins.
  EXPECT_EQ(ParseRetryAfter("250", "2", now), absl::Milliseconds(250));
  EXPECT_EQ(ParseRetryAfter("", "Wed, 21 Oct 2015 07:28:00 GMT", now),
            absl::Seconds(30));
  // A date already past: retry now.
  EXPECT_EQ(ParseRetryAfter("", "Wed, 21 Oct 2015 07:00:00 GMT", now),
            absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("", "", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("", "bientôt", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("", "-5", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("beaucoup", "", now), std::nullopt);
  // Unparsable ms, usable seconds: the seconds.
  EXPECT_EQ(ParseRetryAfter("beaucoup", "2", now), absl::Seconds(2));
}

// --- Unit checks: context window ---------------------------------------------

// Conservative: never under the ~4 bytes per token of BPE tokenizers.
TEST(ContextWindowTest, EstimatesAtLeastOneTokenPerFourBytes) {
  for (const std::string& text :
       {std::string(), std::string("a"), std::string("Bonjour, coach !"),
        std::string("Être à l'écoute, déjà ça. 🙂🙂"),
        std::string(4001, 'x')}) {
    EXPECT_GE(EstimateTokens(text), static_cast<int>(text.size() / 4))
        << text.size() << " bytes";
    EXPECT_GE(EstimateTokens(text), 1) << "a message costs its framing";
  }
}

TEST(ContextWindowTest, KeepsTheLastTurnEvenOverBudget) {
  const CoachRequest request =
      Conversation("Prompt.", {UserTurn("ancien"), AssistantTurn("réponse"),
                               UserTurn(std::string(10000, 'n'))});
  const std::vector<CoachTurn> kept = FitToBudget(request, 10);
  ASSERT_THAT(kept, SizeIs(1));
  EXPECT_EQ(kept[0].content, request.conversation.back().content);
  EXPECT_THAT(FitToBudget(Conversation("Prompt.", {}), 10), IsEmpty());
}

// Everything fits a generous budget; a tighter one keeps a suffix.
TEST(ContextWindowTest, KeepsTheNewestSuffixThatFits) {
  const CoachRequest request = Conversation(
      "Prompt.", {UserTurn("un"), AssistantTurn("deux"), UserTurn("trois"),
                  AssistantTurn("quatre"), UserTurn("cinq")});
  EXPECT_THAT(FitToBudget(request, 100000), SizeIs(5));
  const int two = EstimateTokens("Prompt.") + EstimateTokens("cinq") +
                  EstimateTokens("quatre");
  const std::vector<CoachTurn> kept = FitToBudget(request, two);
  ASSERT_THAT(kept, SizeIs(2));
  EXPECT_EQ(kept[0].content, "quatre");
  EXPECT_EQ(kept[1].content, "cinq");
}

// A timeout on each read would not bound the whole answer: a provider that
// trickles its body must still be cut at the reply's timeout. On real time:
// the cut is libcurl's transfer timeout, which a fake clock cannot move.
TEST(OpenAiCoachTimeoutTest, ATrickledAnswerIsCutAtTheTimeout) {
  absl::Notification stopping;
  httplib::Server server;
  const std::string body = CompletionBody("Une réponse qui arrive lentement.");
  server.Post("/v1/chat/completions", [&](const httplib::Request&,
                                          httplib::Response& response) {
    response.set_content_provider(
        body.size(), "application/json",
        [&](size_t offset, size_t, httplib::DataSink& sink) {
          // One byte per 100 ms: each read is quick, the whole is not.
          stopping.WaitForNotificationWithTimeout(absl::Milliseconds(100));
          sink.write(body.data() + offset, 1);
          return !stopping.HasBeenNotified();
        });
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread thread([&] { server.listen_after_bind(); });

  OpenAiOptions options =
      FastOptions(absl::StrCat("http://127.0.0.1:", port, "/v1"));
  options.timeout = absl::Milliseconds(500);
  options.max_retries = 0;
  auto coach = OpenAiCoach::Create(options);
  ASSERT_TRUE(coach.ok()) << coach.status();
  const absl::Time start = absl::Now();
  auto reply = (*coach)->Reply(Conversation("Prompt", {UserTurn("Bonjour")}));
  const absl::Duration took = absl::Now() - start;

  stopping.Notify();
  server.stop();
  thread.join();
  EXPECT_FALSE(reply.ok());
  // Loose: the whole body would take tens of seconds to trickle.
  EXPECT_LT(took, absl::Seconds(10))
      << "the body takes " << body.size() / 10.0 << " s to trickle";
}

// A send waiting on the AI (an OpenAI coach with a 60 s timeout, against
// `fake_`) while coach-server is cancelled or shut down.
class OpenAiShutdownTest : public ::testing::Test {
 protected:
  void StartServer() {
    OpenAiOptions options = FastOptions(fake_.base_url());
    options.timeout = absl::Seconds(60);
    Config config = TestConfig();
    config.openai = options;
    auto coach = OpenAiCoach::Create(options);
    ASSERT_TRUE(coach.ok()) << coach.status();
    coach_ = *std::move(coach);
    server_ = std::make_unique<TestServer>(config, coach_.get());
    ASSERT_TRUE(server_->start_error().ok()) << server_->start_error();
  }

  // Alice's send, on a thread of its own; its outcome goes to `sent`.
  std::thread SendInBackground(grpc::ClientContext* context,
                               grpc::Status* sent) {
    return std::thread([this, context, sent] {
      v1::SendMessageRequest request;
      request.set_user_id("alice");
      request.set_message("Bonjour");
      v1::SendMessageResponse response;
      *sent = server_->chat().SendMessage(context, request, &response);
    });
  }

  // Shuts the server down with `grace`; returns how long it took.
  absl::Duration Shutdown(absl::Duration grace) {
    const absl::Time start = absl::Now();
    server_->server().Shutdown(grace);
    return absl::Now() - start;
  }

  void ExpectNothingStoredOrCharged() {
    auto sessions = server_->store().ListSessions("alice", 10);
    ASSERT_TRUE(sessions.ok());
    EXPECT_TRUE(sessions->empty());
    auto user = server_->store().FindUser("alice");
    ASSERT_TRUE(user.ok());
    if (user->has_value()) {
      EXPECT_EQ((*user)->credits, kFreeCredits);
    }
  }

  FakeOpenAi fake_;
  std::unique_ptr<OpenAiCoach> coach_;
  std::unique_ptr<TestServer> server_;
};

// A client that cancels its send (or disconnects) stops the server's AI
// request at once: a graceful shutdown then has no call left to wait for.
// (Without that, it would wait for the AI until the grace of 30 s.)
TEST_F(OpenAiShutdownTest, ACancelledSendLeavesNothingWaitingOnTheAi) {
  fake_.HoldAnswers();
  ASSERT_NO_FATAL_FAILURE(StartServer());
  grpc::ClientContext context;
  grpc::Status sent;
  std::thread sender = SendInBackground(&context, &sent);
  ASSERT_TRUE(fake_.AwaitRequests(1, absl::Seconds(10)));
  context.TryCancel();
  sender.join();
  EXPECT_EQ(sent.error_code(), grpc::StatusCode::CANCELLED);

  EXPECT_LT(Shutdown(absl::Seconds(30)), absl::Seconds(10))
      << "the cancelled send still waited";
  ExpectNothingStoredOrCharged();
}

// Graceful shutdown is bounded by its grace even while a send waits on the
// AI: at the deadline the AI call is cut, and the send charges nothing.
TEST_F(OpenAiShutdownTest, ShutdownCutsASendWaitingOnTheAiAtTheGrace) {
  fake_.SetDefault(FakeResponse{.status = 200,
                                .body = CompletionBody("Trop tard."),
                                .headers = {},
                                .delay = absl::Seconds(30),
                                .stream = {}});
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto context = Context();
  grpc::Status sent;
  std::thread sender = SendInBackground(context.get(), &sent);
  ASSERT_TRUE(fake_.AwaitRequests(1, absl::Seconds(10)));

  const absl::Duration took = Shutdown(absl::Milliseconds(300));
  sender.join();
  EXPECT_LT(took, absl::Seconds(5)) << "shutdown waited for the AI";
  EXPECT_FALSE(sent.ok());
  ExpectNothingStoredOrCharged();
}

}  // namespace
}  // namespace coach::testing
