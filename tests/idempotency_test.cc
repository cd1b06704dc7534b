// Retry-safe sends (issue 17): a send with an Idempotency-Key runs once,
// whatever the retries. Over gRPC (the `idempotency-key` metadata) against
// a real coach-server, and over REST through the real proxy with a real
// HTTP client: the replay byte for byte with `Idempotent-Replayed: true`,
// one charge; 409 while the first runs; 422 for another request; expiry on
// the test clock; a first attempt whose client hung up frees the key. The
// store's side runs on both engines in store_test.cc.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "base/thread_pool.h"
#include "server/coach/offline_coach.h"
#include "tests/support/raw_http.h"
#include "tests/support/test_stack.h"

namespace coach::testing {
namespace {

using json = nlohmann::json;

constexpr char kKeyMetadata[] = "idempotency-key";
constexpr char kReplayedMetadata[] = "idempotent-replayed";

// Holds every reply until released, and answers a caller who leaves at once
// with CANCELLED (as the OpenAI coach does, aborting its request). Counts
// the replies asked for and the sends ended (their outcome delivered and
// handled: the domain has stored, charged or freed what it had).
class GateCoach final : public Coach {
 public:
  ~GateCoach() override {
    ReleaseAll();
    // The pool, destroyed first (declared last), delivers what is left.
  }

  void StartReply(CoachRequest request, ReplyCallback done) override {
    auto call = std::make_shared<Call>();
    call->request = request;
    call->done = std::move(done);
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back(call);
    }
    if (request.cancellation != nullptr) {
      // Weak: the call holds its request, which holds the cancellation,
      // which would hold this callback, and so the call (a cycle that leaks
      // when the caller never leaves). calls_ keeps the call alive.
      request.cancellation->OnCancel([this, weak = std::weak_ptr<Call>(call)] {
        std::shared_ptr<Call> call = weak.lock();
        if (call == nullptr) return;
        pool_.Schedule([this, call] {
          Deliver(*call, absl::CancelledError("the caller left"));
        });
      });
    }
  }
  void CancelAll() override { ReleaseAll(); }

  // Every reply held so far is written now.
  void ReleaseAll() {
    std::vector<std::shared_ptr<Call>> calls;
    {
      absl::MutexLock lock(&mu_);
      calls = calls_;
    }
    for (const std::shared_ptr<Call>& call : calls) {
      pool_.Schedule([this, call] {
        // Claimed before any piece is written: a call already ended (its
        // caller left) must get no piece either — its stream may be gone.
        if (call->delivered.exchange(true)) return;
        absl::StatusOr<CoachReply> reply;
        OfflineCoach().StartReply(
            call->request,
            [&reply](absl::StatusOr<CoachReply> r) { reply = std::move(r); });
        End(*call, std::move(reply));
      });
    }
  }

  // Bounded waits: a broken rule fails the test instead of hanging it.
  bool WaitAsked(int n) { return Wait(/*ended=*/false, n); }
  bool WaitEnded(int n) { return Wait(/*ended=*/true, n); }
  int asked() {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(calls_.size());
  }

 private:
  struct Call {
    CoachRequest request;
    ReplyCallback done;
    std::atomic<bool> delivered{false};
  };
  struct Target {
    const GateCoach* coach;
    bool ended;
    int n;
  };

  void Deliver(Call& call, absl::StatusOr<CoachReply> reply) {
    if (call.delivered.exchange(true)) return;
    End(call, std::move(reply));
  }
  // Once per call, by whoever claimed `delivered`.
  void End(Call& call, absl::StatusOr<CoachReply> reply) {
    ReplyCallback done = std::move(call.done);
    done(std::move(reply));
    absl::MutexLock lock(&mu_);
    ++ended_;
  }

  static bool Reached(Target* t) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    const int count =
        t->ended ? t->coach->ended_ : static_cast<int>(t->coach->calls_.size());
    return count >= t->n;
  }
  bool Wait(bool ended, int n) {
    Target target{this, ended, n};
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&Reached, &target),
                                absl::Seconds(20));
  }

  absl::Mutex mu_;
  std::vector<std::shared_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  int ended_ ABSL_GUARDED_BY(mu_) = 0;
  ThreadPool pool_{8};
};

// One gRPC send with a key; the response, and whether the server said it
// was a replay.
struct GrpcSend {
  grpc::Status status;
  v1::SendMessageResponse response;
  bool replayed = false;
};

GrpcSend SendWithKey(TestServer& server, const std::string& user,
                     const std::string& session_id, const std::string& message,
                     const std::string& key,
                     grpc::ClientContext* context = nullptr) {
  std::unique_ptr<grpc::ClientContext> own = Context();
  if (context == nullptr) context = own.get();
  context->AddMetadata(kKeyMetadata, key);
  v1::SendMessageRequest request;
  request.set_user_id(user);
  request.set_session_id(session_id);
  request.set_message(message);
  GrpcSend sent;
  sent.status = server.chat().SendMessage(context, request, &sent.response);
  for (const auto* metadata : {&context->GetServerInitialMetadata(),
                               &context->GetServerTrailingMetadata()}) {
    const auto found = metadata->find(kReplayedMetadata);
    if (found != metadata->end() && found->second == "true") {
      sent.replayed = true;
    }
  }
  return sent;
}

// One REST exchange through the proxy.
struct RestReply {
  int status = 0;
  std::string body;
  httplib::Headers headers;
  bool replayed() const {
    const auto found = headers.find("Idempotent-Replayed");
    return found != headers.end() && found->second == "true";
  }
  json doc() const { return json::parse(body, nullptr, false); }
};

RestReply Post(httplib::Client& client, const std::string& path,
               const json& body, const std::string& key) {
  httplib::Headers headers;
  if (!key.empty()) headers.emplace("Idempotency-Key", key);
  auto result = client.Post(path, headers, body.dump(), "application/json");
  RestReply reply;
  if (!result) {
    ADD_FAILURE() << "no answer: " << httplib::to_string(result.error());
    return reply;
  }
  reply.status = result->status;
  reply.body = result->body;
  reply.headers = result->headers;
  return reply;
}

class IdempotencyTest : public ::testing::Test {
 protected:
  IdempotencyTest() : stack_(ServerConfig(), &coach_) {}
  // The server's config: the test's, and no background purge racing the
  // purge a test makes itself.
  static Config ServerConfig() {
    Config config = TestConfig();
    config.idempotency_purge_interval = absl::Hours(1);
    return config;
  }
  void SetUp() override {
    ASSERT_TRUE(stack_.start_error().ok()) << stack_.start_error();
  }

  TestServer& server() { return stack_.server(); }

  // Credits and messages of `user`, as the API reports them.
  v1::UserStats Stats(const std::string& user) {
    v1::GetUserStatsRequest request;
    request.set_user_id(user);
    v1::GetUserStatsResponse response;
    EXPECT_TRUE(server()
                    .users()
                    .GetUserStats(Context().get(), request, &response)
                    .ok());
    return response.stats();
  }
  int Remaining(const std::string& user) {
    return Stats(user).remaining_credits();
  }
  int Messages(const std::string& user) { return Stats(user).total_messages(); }

  // Runs `send` while a thread releases the coach's replies once `asked`
  // have been asked for.
  template <typename Send>
  auto ReleasedAfter(int asked, Send send) {
    std::thread release([this, asked] {
      EXPECT_TRUE(coach_.WaitAsked(asked));
      coach_.ReleaseAll();
    });
    auto result = send();
    release.join();
    return result;
  }

  GateCoach coach_;
  TestStack stack_;
};

// --- gRPC
// ----------------------------------------------------------------------

TEST_F(IdempotencyTest, GrpcRetryReplaysTheResponseAndChargesOnce) {
  const GrpcSend first = ReleasedAfter(
      1, [&] { return SendWithKey(server(), "ana", "", "Bonjour", "k-1"); });
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_FALSE(first.replayed);
  EXPECT_EQ(first.response.remaining_credits(), 4);

  const GrpcSend again = SendWithKey(server(), "ana", "", "Bonjour", "k-1");
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_TRUE(again.replayed);
  // The same message, field for field and byte for byte.
  EXPECT_EQ(again.response.SerializeAsString(),
            first.response.SerializeAsString());
  EXPECT_EQ(coach_.asked(), 1);
  EXPECT_EQ(Remaining("ana"), 4);
  EXPECT_EQ(Messages("ana"), 2);
  // A send without a key runs, as ever.
  const grpc::Status plain =
      ReleasedAfter(2, [&] { return server().Send("ana", "", "Bonjour"); });
  EXPECT_TRUE(plain.ok());
  EXPECT_EQ(Remaining("ana"), 3);
}

TEST_F(IdempotencyTest, GrpcSameKeyForAnotherRequestIsRefused) {
  ASSERT_TRUE(ReleasedAfter(1, [&] {
                return SendWithKey(server(), "ana", "", "Bonjour", "k");
              }).status.ok());
  const GrpcSend other = SendWithKey(server(), "ana", "", "Au revoir", "k");
  EXPECT_EQ(other.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ErrorInfoOf(other.status).reason, "IDEMPOTENCY_KEY_REUSED");
  EXPECT_FALSE(other.replayed);
  // The key is the user's own: another user's "k" is free.
  EXPECT_TRUE(ReleasedAfter(2, [&] {
                return SendWithKey(server(), "bob", "", "Au revoir", "k");
              }).status.ok());
  EXPECT_EQ(coach_.asked(), 2);
  EXPECT_EQ(Remaining("ana"), 4);
  // A key that is not 1 to 255 printable ASCII characters.
  for (const std::string& bad : {std::string(256, 'x'), std::string()}) {
    const GrpcSend refused = SendWithKey(server(), "ana", "", "Bonjour", bad);
    EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(ErrorInfoOf(refused.status).field, "Idempotency-Key");
  }
  EXPECT_TRUE(ReleasedAfter(3, [&] {
                return SendWithKey(server(), "ana", "", "Bonjour",
                                   std::string(255, '~'));
              }).status.ok());
}

// Sixteen copies of one send at once, one key: one runs and is charged; the
// others, answered while the first is held, are told it runs; every later
// retry gets its response.
TEST_F(IdempotencyTest, SixteenConcurrentDuplicatesRunAndChargeOnce) {
  constexpr int kCopies = 16;
  std::vector<GrpcSend> sent(kCopies);
  absl::Mutex mu;
  int answered = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kCopies; ++i) {
    threads.emplace_back([&, i] {
      sent[i] = SendWithKey(server(), "cat", "", "Bonjour", "same");
      absl::MutexLock lock(&mu);
      ++answered;
    });
  }
  {
    // All but the running one answer without the coach.
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(mu.AwaitWithTimeout(
        absl::Condition(
            +[](int* n) { return *n >= kCopies - 1; }, &answered),
        absl::Seconds(20)));
  }
  coach_.ReleaseAll();
  for (std::thread& thread : threads) thread.join();
  int ok = 0, in_progress = 0;
  std::string body;
  for (const GrpcSend& s : sent) {
    if (s.status.ok() && !s.replayed) {
      ++ok;
      body = s.response.SerializeAsString();
    } else if (ErrorInfoOf(s.status).reason == "IDEMPOTENCY_IN_PROGRESS") {
      EXPECT_EQ(s.status.error_code(), grpc::StatusCode::ABORTED);
      ++in_progress;
    } else {
      ADD_FAILURE() << "code " << s.status.error_code() << ": "
                    << s.status.error_message();
    }
  }
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(in_progress, kCopies - 1);
  EXPECT_EQ(coach_.asked(), 1);
  EXPECT_EQ(Remaining("cat"), 4);
  EXPECT_EQ(Messages("cat"), 2);
  const GrpcSend later = SendWithKey(server(), "cat", "", "Bonjour", "same");
  EXPECT_TRUE(later.replayed);
  EXPECT_EQ(later.response.SerializeAsString(), body);
}

TEST_F(IdempotencyTest, AKeyExpiresAfterItsTtlOnTheServersClock) {
  const GrpcSend first = ReleasedAfter(
      1, [&] { return SendWithKey(server(), "eve", "", "Bonjour", "k"); });
  ASSERT_TRUE(first.status.ok());
  // Just before its 24 hours: still the same response.
  server().clock().Advance(absl::Hours(24) - absl::Seconds(1));
  EXPECT_TRUE(SendWithKey(server(), "eve", "", "Bonjour", "k").replayed);
  EXPECT_EQ(Remaining("eve"), 4);
  // At 24 hours the key is forgotten: the same request runs again.
  server().clock().Advance(absl::Seconds(1));
  const GrpcSend again = ReleasedAfter(
      2, [&] { return SendWithKey(server(), "eve", "", "Bonjour", "k"); });
  ASSERT_TRUE(again.status.ok());
  EXPECT_FALSE(again.replayed);
  EXPECT_NE(again.response.session_id(), first.response.session_id());
  EXPECT_EQ(Remaining("eve"), 3);
  // And the purge deletes it once expired again (nothing else is left).
  server().clock().Advance(absl::Hours(24));
  auto purged =
      server().store().PurgeIdempotencyKeys(server().clock().Now(), 100);
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(*purged, 1);
}

// The client hangs up while the coach writes: that attempt stores and
// charges nothing and frees its key, so the retry runs.
TEST_F(IdempotencyTest, GrpcRetryAfterTheClientHungUpRunsNormally) {
  std::unique_ptr<grpc::ClientContext> context = Context();
  GrpcSend first;
  std::thread sender([&] {
    first = SendWithKey(server(), "fay", "", "Bonjour", "k", context.get());
  });
  ASSERT_TRUE(coach_.WaitAsked(1));
  context->TryCancel();
  sender.join();
  EXPECT_EQ(first.status.error_code(), grpc::StatusCode::CANCELLED);
  // The server has handled the cancelled attempt to its end.
  ASSERT_TRUE(coach_.WaitEnded(1));
  EXPECT_EQ(Remaining("fay"), 5);

  const GrpcSend retry = ReleasedAfter(
      2, [&] { return SendWithKey(server(), "fay", "", "Bonjour", "k"); });
  ASSERT_TRUE(retry.status.ok()) << retry.status.error_message();
  EXPECT_FALSE(retry.replayed);
  EXPECT_EQ(Remaining("fay"), 4);
  EXPECT_EQ(Messages("fay"), 2);
}

// --- REST, through the proxy
// -----------------------------------------------------

TEST_F(IdempotencyTest, RestRetryReplaysTheSameJsonWithTheReplayHeader) {
  const json body = {{"userId", "ana"}, {"message", "Bonjour"}};
  const RestReply first = ReleasedAfter(
      1, [&] { return Post(stack_.http(), "/api/chat/send", body, "r-1"); });
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_FALSE(first.replayed());
  EXPECT_EQ(first.doc()["remainingCredits"], 4);

  // The same request, its JSON written otherwise: the same send.
  const RestReply again =
      Post(stack_.http(), "/api/chat/send",
           json{{"message", "Bonjour"}, {"userId", "ana"}}, "r-1");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_TRUE(again.replayed());
  EXPECT_EQ(again.body, first.body);  // byte for byte
  EXPECT_EQ(coach_.asked(), 1);
  EXPECT_EQ(Remaining("ana"), 4);

  // Another request with the key: 422 in the documented shape.
  const RestReply other =
      Post(stack_.http(), "/api/chat/send",
           json{{"userId", "ana"}, {"message", "Salut"}}, "r-1");
  EXPECT_EQ(other.status, 422) << other.body;
  EXPECT_EQ(other.doc()["code"], "IDEMPOTENCY_KEY_REUSED");
  EXPECT_FALSE(other.doc()["message"].get<std::string>().empty());
  EXPECT_FALSE(other.replayed());
  // A key too long: 400 naming the header.
  const RestReply bad =
      Post(stack_.http(), "/api/chat/send", body, std::string(256, 'k'));
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_TRUE(absl::StrContains(bad.doc()["message"].get<std::string>(),
                                "Idempotency-Key"))
      << bad.body;
  EXPECT_EQ(bad.doc()["field"], "Idempotency-Key") << bad.body;
  // A key gRPC metadata cannot carry (not printable ASCII): the proxy's own
  // 400, naming the header too.
  const RestReply unprintable =
      Post(stack_.http(), "/api/chat/send", body, "cl\xC3\xA9-1");
  EXPECT_EQ(unprintable.status, 400) << unprintable.body;
  EXPECT_EQ(unprintable.doc()["code"], "INVALID_ARGUMENT");
  EXPECT_EQ(unprintable.doc()["field"], "Idempotency-Key") << unprintable.body;
  EXPECT_EQ(Remaining("ana"), 4);
}

TEST_F(IdempotencyTest, RestSameKeyWhileTheFirstRunsIs409) {
  const json body = {{"userId", "gus"}, {"message", "Bonjour"}};
  RestReply first;
  std::thread sender([&] {
    auto client = stack_.NewClient();
    first = Post(*client, "/api/chat/send", body, "k");
  });
  ASSERT_TRUE(coach_.WaitAsked(1));
  const RestReply second = Post(stack_.http(), "/api/chat/send", body, "k");
  EXPECT_EQ(second.status, 409) << second.body;
  EXPECT_EQ(second.doc()["code"], "IDEMPOTENCY_IN_PROGRESS");
  coach_.ReleaseAll();
  sender.join();
  EXPECT_EQ(first.status, 200) << first.body;
  // Then the retry gets the response.
  const RestReply third = Post(stack_.http(), "/api/chat/send", body, "k");
  EXPECT_TRUE(third.replayed());
  EXPECT_EQ(third.body, first.body);
  EXPECT_EQ(Remaining("gus"), 4);
}

TEST_F(IdempotencyTest, RestRetryAfterTheClientHungUpRunsNormally) {
  const std::string body =
      json{{"userId", "hal"}, {"message", "Bonjour"}}.dump();
  {
    RawConnection hanging(stack_.port());
    ASSERT_TRUE(hanging.connected());
    ASSERT_TRUE(
        hanging.Send("POST /api/chat/send HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nIdempotency-Key: k\r\n"
                     "Content-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body));
    ASSERT_TRUE(coach_.WaitAsked(1));
  }  // hangs up while the coach writes
  ASSERT_TRUE(coach_.WaitEnded(1));
  EXPECT_EQ(Remaining("hal"), 5);
  const RestReply retry = ReleasedAfter(2, [&] {
    return Post(stack_.http(), "/api/chat/send", json::parse(body), "k");
  });
  ASSERT_EQ(retry.status, 200) << retry.body;
  EXPECT_FALSE(retry.replayed());
  EXPECT_EQ(Remaining("hal"), 4);
  EXPECT_EQ(Messages("hal"), 2);
}

// An error the same request would meet again is replayed too; one the user
// can end (no credits left) is not stored, so the retry runs once credits
// are back.
TEST_F(IdempotencyTest, RestStoresOnlyTheErrorsARetryWouldMeetAgain) {
  const json lost = {{"userId", "ivy"},
                     {"sessionId", "0b7e3f0c-5c2a-4d4e-9a8b-1f2e3d4c5b6a"},
                     {"message", "Bonjour"}};
  const RestReply missing = Post(stack_.http(), "/api/chat/send", lost, "e");
  EXPECT_EQ(missing.status, 404) << missing.body;
  EXPECT_FALSE(missing.replayed());
  const RestReply replayed = Post(stack_.http(), "/api/chat/send", lost, "e");
  EXPECT_EQ(replayed.status, 404);
  EXPECT_TRUE(replayed.replayed());
  EXPECT_EQ(replayed.body, missing.body);

  // Out of credits: 402, key released.
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(ReleasedAfter(i + 1, [&] {
                  return server().Send("ivy", "", "Encore");
                }).ok());
  }
  const json ask = {{"userId", "ivy"}, {"message", "Une de plus ?"}};
  const RestReply broke = Post(stack_.http(), "/api/chat/send", ask, "n");
  EXPECT_EQ(broke.status, 402) << broke.body;
  v1::GrantCreditsRequest grant;
  grant.set_user_id("ivy");
  grant.set_credits(1);
  v1::GrantCreditsResponse granted;
  ASSERT_TRUE(server()
                  .users()
                  .GrantCredits(AdminContext().get(), grant, &granted)
                  .ok());
  const RestReply paid = ReleasedAfter(
      6, [&] { return Post(stack_.http(), "/api/chat/send", ask, "n"); });
  EXPECT_EQ(paid.status, 200) << paid.body;
  EXPECT_FALSE(paid.replayed());
}

TEST_F(IdempotencyTest, RestStreamReplayIsTheStoredReplyAsItsOnlyEvent) {
  const json body = {{"userId", "joy"}, {"message", "Bonjour"}};
  const RestReply first = ReleasedAfter(1, [&] {
    return Post(stack_.http(), "/api/chat/send/stream", body, "s");
  });
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_FALSE(first.replayed());
  EXPECT_TRUE(absl::StrContains(first.body, "\"delta\"")) << first.body;
  const size_t reply_at = first.body.rfind("data: {\"reply\":");
  ASSERT_NE(reply_at, std::string::npos) << first.body;
  const std::string reply_event = first.body.substr(reply_at);

  const RestReply again =
      Post(stack_.http(), "/api/chat/send/stream", body, "s");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_TRUE(again.replayed());
  EXPECT_EQ(again.body, reply_event);  // the one event, byte for byte
  // The key names the send, whichever route retries it: /send replays it
  // as its JSON, the stream's `reply`.
  const RestReply unary = Post(stack_.http(), "/api/chat/send", body, "s");
  EXPECT_TRUE(unary.replayed());
  EXPECT_EQ("data: {\"reply\":" + unary.body + "}\n\n", reply_event);
  EXPECT_EQ(coach_.asked(), 1);
  EXPECT_EQ(Remaining("joy"), 4);
}

}  // namespace
}  // namespace coach::testing
