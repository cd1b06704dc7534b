// ChatService.StreamMessage end to end: a real server on loopback, a real
// SQLite file, a real gRPC client reading the stream as it comes. The coach
// is the test's (ScriptedCoach, whose default replies are the offline
// coach's, streamed by sentence), or the OpenAI coach against a local fake
// that streams its chunks when the test says so.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "server/coach/openai_coach.h"
#include "tests/support/fake_openai.h"
#include "tests/support/test_server.h"

namespace coach::testing {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr int kFreeCredits = 5;

// What a client read from one stream.
struct Streamed {
  std::vector<std::string> deltas;
  std::optional<v1::SendMessageResponse> reply;
  int messages = 0;  // every message read, deltas and reply
  grpc::Status status;

  std::string Text() const { return absl::StrJoin(deltas, ""); }
};

v1::SendMessageRequest Request(const std::string& user_id,
                               const std::string& session_id,
                               const std::string& message) {
  v1::SendMessageRequest request;
  request.set_user_id(user_id);
  request.set_session_id(session_id);
  request.set_message(message);
  return request;
}

// Reads a whole stream; `after_each` (optional) sees each message as read
// and returns false to stop reading and cancel.
Streamed ReadStream(
    v1::ChatService::Stub& stub, const v1::SendMessageRequest& request,
    const std::function<bool(const Streamed&)>& after_each = nullptr) {
  Streamed out;
  std::unique_ptr<grpc::ClientContext> context = Context();
  auto reader = stub.StreamMessage(context.get(), request);
  v1::StreamMessageResponse message;
  while (reader->Read(&message)) {
    ++out.messages;
    if (message.has_reply()) {
      EXPECT_FALSE(out.reply.has_value()) << "a second reply";
      out.reply = message.reply();
    } else {
      EXPECT_EQ(message.event_case(), v1::StreamMessageResponse::kDelta);
      EXPECT_FALSE(out.reply.has_value()) << "a delta after the reply";
      EXPECT_FALSE(message.delta().empty()) << "an empty delta";
      out.deltas.push_back(message.delta());
    }
    if (after_each && !after_each(out)) {
      context->TryCancel();
      while (reader->Read(&message)) {
      }
      break;
    }
  }
  out.status = reader->Finish();
  return out;
}

::testing::AssertionResult HasReason(const grpc::Status& status,
                                     grpc::StatusCode code,
                                     const std::string& reason) {
  if (status.error_code() == code && ErrorInfoOf(status).reason == reason) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "got code " << status.error_code() << " reason '"
         << ErrorInfoOf(status).reason << "': " << status.error_message();
}

// The rows of `table` in the SQLite file at `path`, or -1.
int CountRows(const std::string& path, const std::string& table) {
  sqlite3* db = nullptr;
  int count = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    const std::string sql = "SELECT COUNT(*) FROM " + table;
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) ==
            SQLITE_OK &&
        sqlite3_step(statement) == SQLITE_ROW) {
      count = sqlite3_column_int(statement, 0);
    }
    sqlite3_finalize(statement);
  }
  sqlite3_close(db);
  return count;
}

class StreamTestBase : public ::testing::Test {
 protected:
  virtual TestServer& server() = 0;

  int RemainingCredits(const std::string& user_id) {
    v1::GetUserStatsRequest request;
    request.set_user_id(user_id);
    v1::GetUserStatsResponse response;
    const grpc::Status status =
        server().users().GetUserStats(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.stats().has_remaining_credits()
               ? response.stats().remaining_credits()
               : -1;
  }
  int TotalMessages(const std::string& user_id) {
    v1::GetUserStatsRequest request;
    request.set_user_id(user_id);
    v1::GetUserStatsResponse response;
    EXPECT_TRUE(server()
                    .users()
                    .GetUserStats(Context().get(), request, &response)
                    .ok());
    return response.stats().total_messages();
  }
  std::vector<MessageRecord> Stored(const std::string& session_id) {
    auto messages = server().store().ListRecentMessages(session_id, 100);
    EXPECT_TRUE(messages.ok()) << messages.status();
    return messages.ok() ? *std::move(messages) : std::vector<MessageRecord>();
  }
  // Nothing charged, nothing stored for a user whose only send failed.
  void ExpectNothingChargedOrStored(const std::string& user_id) {
    EXPECT_EQ(RemainingCredits(user_id), kFreeCredits) << "credit charged";
    EXPECT_EQ(TotalMessages(user_id), 0) << "messages stored";
  }
  // The stream's reply is what SendMessage would return, stored as such,
  // and the deltas add up to it.
  void ExpectRepliedAndStored(const Streamed& streamed) {
    ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
    ASSERT_TRUE(streamed.reply.has_value());
    const v1::SendMessageResponse& reply = *streamed.reply;
    EXPECT_EQ(streamed.Text(), reply.assistant_message().content());
    const std::vector<MessageRecord> stored = Stored(reply.session_id());
    ASSERT_THAT(stored, SizeIs(2));
    EXPECT_EQ(stored[0].content, reply.user_message().content());
    EXPECT_EQ(stored[1].id, reply.assistant_message().id());
    EXPECT_EQ(stored[1].content, streamed.Text());
  }
};

// --- With the scripted coach (offline replies, streamed by sentence) -------

class StreamMessageTest : public StreamTestBase {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.start_error().ok()) << server_.start_error();
  }
  TestServer& server() override { return server_; }
  TestServer server_;
};

TEST_F(StreamMessageTest, DeltasThenOneReplyThatAddsUpAndIsStoredAndCharged) {
  const Streamed streamed = ReadStream(
      server_.chat(),
      Request("alice", "", "Je suis timide, comment aborder quelqu'un ?"));
  ASSERT_NO_FATAL_FAILURE(ExpectRepliedAndStored(streamed));
  // The offline coach gives several pieces at once here: the reactor joins
  // those that come while a write is in flight, so their count varies.
  EXPECT_GE(streamed.deltas.size(), 1u);
  EXPECT_EQ(streamed.messages, static_cast<int>(streamed.deltas.size()) + 1);
  ASSERT_TRUE(streamed.reply->has_remaining_credits());
  EXPECT_EQ(streamed.reply->remaining_credits(), kFreeCredits - 1);
  EXPECT_EQ(RemainingCredits("alice"), kFreeCredits - 1);
  EXPECT_EQ(streamed.reply->user_message().content(),
            "Je suis timide, comment aborder quelqu'un ?");
}

// A coach that does not stream: its whole reply comes as one delta.
TEST_F(StreamMessageTest, ACoachThatDoesNotStreamGivesOneDelta) {
  server_.coach().ReplyWith("  Une réponse d'un bloc, espaces compris.  ");
  const Streamed streamed =
      ReadStream(server_.chat(), Request("alice", "", "Bonjour"));
  ASSERT_NO_FATAL_FAILURE(ExpectRepliedAndStored(streamed));
  EXPECT_THAT(
      streamed.deltas,
      ::testing::ElementsAre("  Une réponse d'un bloc, espaces compris.  "));
}

TEST_F(StreamMessageTest, ContinuesASessionLikeSendMessage) {
  const Streamed first =
      ReadStream(server_.chat(), Request("alice", "", "Premier message"));
  ASSERT_NO_FATAL_FAILURE(ExpectRepliedAndStored(first));
  const Streamed second = ReadStream(
      server_.chat(),
      Request("alice", first.reply->session_id(), "Deuxième message"));
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_EQ(second.reply->session_id(), first.reply->session_id());
  EXPECT_THAT(Stored(first.reply->session_id()), SizeIs(4));
  EXPECT_EQ(RemainingCredits("alice"), kFreeCredits - 2);
}

TEST_F(StreamMessageTest, AnInvalidRequestIsInvalidArgumentWithNoMessage) {
  const Streamed streamed =
      ReadStream(server_.chat(), Request("alice", "", "   "));
  EXPECT_EQ(streamed.messages, 0);
  EXPECT_TRUE(HasReason(streamed.status, grpc::StatusCode::INVALID_ARGUMENT,
                        "INVALID_ARGUMENT"));
  EXPECT_EQ(server_.coach().request_count(), 0);
  ExpectNothingChargedOrStored("alice");
}

TEST_F(StreamMessageTest, NoCreditsIsAPlainErrorBeforeAnyMessage) {
  std::string session_id;
  for (int i = 0; i < kFreeCredits; ++i) {
    v1::SendMessageResponse sent;
    ASSERT_TRUE(server_.Send("alice", session_id, "Question", &sent).ok());
    session_id = sent.session_id();
  }
  const int asked = server_.coach().request_count();
  const Streamed streamed =
      ReadStream(server_.chat(), Request("alice", session_id, "Encore ?"));
  EXPECT_EQ(streamed.messages, 0);
  EXPECT_TRUE(HasReason(streamed.status, grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "NO_CREDITS"));
  EXPECT_EQ(server_.coach().request_count(), asked) << "the coach was asked";
}

TEST_F(StreamMessageTest, AnUnknownSessionIsNotFoundBeforeAnyMessage) {
  const Streamed streamed = ReadStream(
      server_.chat(),
      Request("alice", "0b7e3f0c-5c2a-4d4e-9a8b-1f2e3d4c5b6a", "Salut"));
  EXPECT_EQ(streamed.messages, 0);
  EXPECT_TRUE(HasReason(streamed.status, grpc::StatusCode::NOT_FOUND,
                        "SESSION_NOT_FOUND"));
}

TEST_F(StreamMessageTest, ACoachFailureEndsTheStreamAndChargesNothing) {
  server_.coach().FailWith(absl::UnavailableError("AI down"));
  const Streamed streamed =
      ReadStream(server_.chat(), Request("alice", "", "Bonjour"));
  EXPECT_EQ(streamed.messages, 0);
  EXPECT_TRUE(HasReason(streamed.status, grpc::StatusCode::UNAVAILABLE,
                        "AI_UNAVAILABLE"));
  ExpectNothingChargedOrStored("alice");
}

// --- With the OpenAI coach, streaming from the local fake ------------------

std::string ErrorEvent(const std::string& code) {
  return "data: " + ErrorBody("The server had an error", "server_error", code) +
         "\n\n";
}

class OpenAiStreamMessageTest : public StreamTestBase {
 protected:
  void SetUp() override {
    auto coach = OpenAiCoach::Create(
        FastOpenAiOptions(fake_.base_url(), "sk-test-stream"));
    ASSERT_TRUE(coach.ok()) << coach.status();
    coach_ = *std::move(coach);
    Config config = TestConfig();
    config.openai = FastOpenAiOptions(fake_.base_url(), "sk-test-stream");
    server_ = std::make_unique<TestServer>(config, coach_.get());
    ASSERT_TRUE(server_->start_error().ok()) << server_->start_error();
  }
  TestServer& server() override { return *server_; }

  // Destroyed in reverse: the server, the coach, then the fake.
  FakeOpenAi fake_;
  std::unique_ptr<OpenAiCoach> coach_;
  std::unique_ptr<TestServer> server_;
};

// The fake writes one chunk and waits: the client has its first delta while
// the model is still "writing"; then the rest, and the reply as stored.
TEST_F(OpenAiStreamMessageTest, FirstDeltaArrivesWhileTheAiStillWrites) {
  fake_.Script({StreamResponse(
      StreamedReply({"Bonjour", " à vous.", " Respirez.", " Puis parlez."}),
      /*hold_after=*/1)});
  bool first_seen_while_held = false;
  const Streamed streamed =
      ReadStream(server_->chat(), Request("alice", "", "Comment me détendre ?"),
                 [&](const Streamed& so_far) {
                   if (so_far.deltas.size() == 1 && !so_far.reply.has_value()) {
                     EXPECT_EQ(so_far.deltas[0], "Bonjour");
                     first_seen_while_held = fake_.completed_streams() == 0;
                     fake_.ReleaseStreams();
                   }
                   return true;
                 });
  EXPECT_TRUE(first_seen_while_held);
  ASSERT_NO_FATAL_FAILURE(ExpectRepliedAndStored(streamed));
  EXPECT_EQ(streamed.Text(), "Bonjour à vous. Respirez. Puis parlez.");
  EXPECT_EQ(RemainingCredits("alice"), kFreeCredits - 1);
  // Model and usage from the chunks, stored with the reply.
  const std::vector<MessageRecord> stored =
      Stored(streamed.reply->session_id());
  ASSERT_THAT(stored, SizeIs(2));
  EXPECT_EQ(stored[1].model, "gpt-4o-mini-2024-07-18");
  ASSERT_TRUE(stored[1].usage.has_value());
  EXPECT_EQ(stored[1].usage->prompt_tokens, 42);
  EXPECT_EQ(stored[1].usage->completion_tokens, 17);
  // Asked as a stream, with the usage.
  const std::vector<ReceivedRequest> requests = fake_.requests();
  ASSERT_THAT(requests, SizeIs(1));
  EXPECT_EQ(requests[0].json["stream"], true);
  EXPECT_EQ(requests[0].json["stream_options"]["include_usage"], true);
}

// SendMessage keeps the plain request (its client waits for the whole reply).
TEST_F(OpenAiStreamMessageTest, SendMessageStaysUnstreamed) {
  ASSERT_TRUE(server_->Send("alice", "", "Bonjour").ok());
  const std::vector<ReceivedRequest> requests = fake_.requests();
  ASSERT_THAT(requests, SizeIs(1));
  EXPECT_FALSE(requests[0].json.contains("stream"));
}

// The client cancels after two pieces: the AI request is aborted at once
// (the fake sees its client leave while it holds the rest), nothing is
// stored or charged, and the credit held is given back: a user with one
// credit left can spend it right after.
TEST_F(OpenAiStreamMessageTest, ClientCancelAbortsTheAiAndChargesNothing) {
  std::string session_id;
  for (int i = 0; i < kFreeCredits - 1; ++i) {
    v1::SendMessageResponse sent;
    ASSERT_TRUE(server_->Send("alice", session_id, "Question", &sent).ok());
    session_id = sent.session_id();
  }
  ASSERT_EQ(RemainingCredits("alice"), 1);
  const int messages_before = TotalMessages("alice");
  fake_.Script({StreamResponse(StreamedReply({"Un.", " Deux.", " Trois."}),
                               /*hold_after=*/2)});
  const Streamed streamed = ReadStream(
      server_->chat(), Request("alice", session_id, "Une longue réponse ?"),
      [](const Streamed& so_far) { return so_far.Text() != "Un. Deux."; });
  EXPECT_EQ(streamed.Text(), "Un. Deux.");
  EXPECT_FALSE(streamed.reply.has_value());
  EXPECT_EQ(streamed.status.error_code(), grpc::StatusCode::CANCELLED);
  // Bounded: without the abort the fake would wait for a release.
  EXPECT_TRUE(fake_.AwaitAbortedStreams(1, absl::Seconds(20)))
      << "the AI request was not aborted";
  EXPECT_EQ(fake_.completed_streams(), 0);
  EXPECT_EQ(TotalMessages("alice"), messages_before) << "stored";
  EXPECT_EQ(RemainingCredits("alice"), 1) << "charged";
  // The hold is given back when the send ends on the server, after the
  // client saw CANCELLED: a shutdown waits for that end.
  server_->server().Shutdown(absl::Seconds(30));
  EXPECT_EQ(CountRows(server_->db_path(), "credit_reservations"), 0)
      << "the credit hold was kept";
}

// An error object after a piece: the stream ends with the error, nothing
// charged or stored, and no retry (a second reply would follow the first's
// pieces).
TEST_F(OpenAiStreamMessageTest, AnAiErrorMidStreamEndsItAndChargesNothing) {
  fake_.Script({StreamResponse(
      {StreamChunk("Début de réponse"), ErrorEvent("server_error")})});
  const Streamed streamed =
      ReadStream(server_->chat(), Request("alice", "", "Bonjour"));
  EXPECT_EQ(streamed.Text(), "Début de réponse");
  EXPECT_FALSE(streamed.reply.has_value());
  EXPECT_TRUE(HasReason(streamed.status, grpc::StatusCode::UNAVAILABLE,
                        "AI_UNAVAILABLE"));
  EXPECT_EQ(fake_.request_count(), 1) << "retried after a piece was sent";
  ExpectNothingChargedOrStored("alice");
}

// A stream that ends before [DONE], after a piece: a failed reply.
TEST_F(OpenAiStreamMessageTest, AStreamCutBeforeDoneIsAFailedReply) {
  fake_.Script(
      {StreamResponse({StreamChunk("Une réponse"), StreamChunk(" coupée")})});
  const Streamed streamed =
      ReadStream(server_->chat(), Request("alice", "", "Bonjour"));
  EXPECT_FALSE(streamed.reply.has_value());
  EXPECT_TRUE(HasReason(streamed.status, grpc::StatusCode::UNAVAILABLE,
                        "AI_UNAVAILABLE"));
  EXPECT_EQ(fake_.request_count(), 1);
  ExpectNothingChargedOrStored("alice");
}

// Before the first piece, an error is retried as for SendMessage.
TEST_F(OpenAiStreamMessageTest, AnErrorBeforeTheFirstPieceIsRetried) {
  fake_.Script({StreamResponse({ErrorEvent("server_error")}),
                StreamResponse(StreamedReply({"Deuxième", " essai."}))});
  const Streamed streamed =
      ReadStream(server_->chat(), Request("alice", "", "Bonjour"));
  ASSERT_NO_FATAL_FAILURE(ExpectRepliedAndStored(streamed));
  EXPECT_EQ(streamed.Text(), "Deuxième essai.");
  EXPECT_EQ(fake_.request_count(), 2);
}

TEST_F(OpenAiStreamMessageTest, ContentFilterMidStreamIsContentFiltered) {
  fake_.Script(
      {StreamResponse({StreamChunk("Je "), StreamFinish("content_filter"),
                       StreamUsage(), StreamDone()})});
  const Streamed streamed =
      ReadStream(server_->chat(), Request("alice", "", "Bonjour"));
  EXPECT_EQ(streamed.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << ErrorInfoOf(streamed.status).reason;
  EXPECT_EQ(ErrorInfoOf(streamed.status).reason, "CONTENT_FILTERED");
  ExpectNothingChargedOrStored("alice");
}

}  // namespace
}  // namespace coach::testing
