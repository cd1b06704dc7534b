// coach.v1.ChatService end to end: a real server on loopback, a real SQLite
// file, a real gRPC client. Only the clock and the coach are the test's.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tests/support/test_server.h"

namespace coach::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr char kNoCreditsMessage[] =
    "Vous avez épuisé vos crédits de chat. Passez à un abonnement supérieur "
    "pour continuer.";

// A well-formed session id that no session has.
constexpr char kUnknownSessionId[] = "0b7e3f0c-5c2a-4d4e-9a8b-1f2e3d4c5b6a";

// --- Helpers independent of the production code --------------------------

absl::Time Utc(int y, int mo, int d, int h, int mi, int s) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s),
                         absl::UTCTimeZone());
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

std::string Repeat(absl::string_view unit, int times) {
  std::string out;
  out.reserve(unit.size() * static_cast<size_t>(times));
  for (int i = 0; i < times; ++i) out.append(unit.data(), unit.size());
  return out;
}

// Strict UTF-8 decoding (no overlong forms, surrogates or > U+10FFFF): the
// number of code points, or nullopt if `text` is not well-formed UTF-8.
std::optional<size_t> Utf8CodePoints(absl::string_view text) {
  static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
  size_t count = 0;
  for (size_t i = 0; i < text.size(); ++count) {
    const auto lead = static_cast<unsigned char>(text[i]);
    size_t length = 0;
    uint32_t cp = 0;
    if (lead < 0x80) {
      length = 1;
      cp = lead;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2;
      cp = lead & 0x1Fu;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3;
      cp = lead & 0x0Fu;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4;
      cp = lead & 0x07u;
    } else {
      return std::nullopt;
    }
    if (i + length > text.size()) return std::nullopt;
    for (size_t k = 1; k < length; ++k) {
      const auto c = static_cast<unsigned char>(text[i + k]);
      if ((c & 0xC0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (c & 0x3Fu);
    }
    if (cp < kMinForLength[length] || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return std::nullopt;
    }
    i += length;
  }
  return count;
}

// Lower-case RFC 4122 version 4: 8-4-4-4-12 hex, version nibble 4, variant
// 10xx.
bool IsUuidV4(absl::string_view id) {
  if (id.size() != 36) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return id[14] == '4' &&
         absl::string_view("89ab").find(id[19]) != absl::string_view::npos;
}

// --- Status assertions (usable as EXPECT_TRUE(...), with a readable why) --

::testing::AssertionResult IsOk(const grpc::Status& status) {
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "code " << status.error_code() << " reason "
         << ErrorInfoOf(status).reason << ": " << status.error_message();
}

// The canonical code, and an ErrorInfo with `reason` in domain coach.v1.
::testing::AssertionResult HasError(const grpc::Status& status,
                                    grpc::StatusCode code,
                                    absl::string_view reason) {
  const ErrorDetail info = ErrorInfoOf(status);
  if (status.error_code() == code && info.reason == reason &&
      info.domain == "coach.v1") {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "expected code " << code << " reason " << reason
         << " domain coach.v1; got code " << status.error_code() << " reason '"
         << info.reason << "' domain '" << info.domain
         << "': " << status.error_message();
}

// INVALID_ARGUMENT naming `field` in its ErrorInfo and in its French message
// (« field »).
::testing::AssertionResult IsInvalid(const grpc::Status& status,
                                     absl::string_view field) {
  ::testing::AssertionResult error =
      HasError(status, grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT");
  if (!error) return error;
  const ErrorDetail info = ErrorInfoOf(status);
  const std::string quoted = absl::StrCat("« ", field, " »");
  if (info.field == field &&
      absl::StrContains(status.error_message(), quoted)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "expected field '" << field << "' and a message containing "
         << quoted << "; got field '" << info.field
         << "': " << status.error_message();
}

::testing::AssertionResult IsNoCredits(const grpc::Status& status) {
  ::testing::AssertionResult error =
      HasError(status, grpc::StatusCode::RESOURCE_EXHAUSTED, "NO_CREDITS");
  if (!error) return error;
  if (status.error_message() == kNoCreditsMessage) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "not the documented message: " << status.error_message();
}

// --- The fixture: one call per helper, every call with Context() ---------

class ChatServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.start_error().ok()) << server_.start_error();
  }

  grpc::Status Send(const std::string& user_id, const std::string& session_id,
                    const std::string& message, v1::SendMessageResponse* out) {
    v1::SendMessageRequest request;
    request.set_user_id(user_id);
    request.set_session_id(session_id);
    request.set_message(message);
    return server_.chat().SendMessage(Context().get(), request, out);
  }
  grpc::Status Send(const std::string& user_id, const std::string& session_id,
                    const std::string& message) {
    v1::SendMessageResponse ignored;
    return Send(user_id, session_id, message, &ignored);
  }
  // `count` sends of `user_id` into `session_id` from as many threads at
  // once ("Message 0", "Message 1"...): their statuses and responses, by index.
  struct ConcurrentSends {
    std::vector<grpc::Status> statuses;
    std::vector<v1::SendMessageResponse> responses;
  };
  ConcurrentSends SendConcurrently(const std::string& user_id,
                                   const std::string& session_id, int count) {
    ConcurrentSends sends{
        .statuses = std::vector<grpc::Status>(count),
        .responses = std::vector<v1::SendMessageResponse>(count)};
    std::vector<std::thread> threads;
    for (int i = 0; i < count; ++i) {
      threads.emplace_back([&, i] {
        sends.statuses[i] =
            Send(user_id, session_id, absl::StrCat("Message ", i),
                 &sends.responses[i]);
      });
    }
    for (std::thread& t : threads) t.join();
    return sends;
  }
  // A send that must succeed.
  v1::SendMessageResponse MustSend(const std::string& user_id,
                                   const std::string& session_id,
                                   const std::string& message) {
    v1::SendMessageResponse sent;
    const grpc::Status status = Send(user_id, session_id, message, &sent);
    EXPECT_TRUE(IsOk(status)) << "send of '" << message << "'";
    return sent;
  }

  grpc::Status Create(const std::string& user_id,
                      const std::optional<std::string>& title,
                      v1::Session* out) {
    v1::CreateSessionRequest request;
    request.set_user_id(user_id);
    if (title.has_value()) request.set_title(*title);
    v1::CreateSessionResponse response;
    grpc::Status status =
        server_.chat().CreateSession(Context().get(), request, &response);
    *out = response.session();
    return status;
  }
  v1::Session MustCreate(const std::string& user_id,
                         const std::optional<std::string>& title = {}) {
    v1::Session session;
    EXPECT_TRUE(IsOk(Create(user_id, title, &session)));
    return session;
  }

  grpc::Status Get(const std::string& session_id, const std::string& user_id,
                   v1::Session* out) {
    v1::GetSessionRequest request;
    request.set_session_id(session_id);
    request.set_user_id(user_id);
    v1::GetSessionResponse response;
    grpc::Status status =
        server_.chat().GetSession(Context().get(), request, &response);
    *out = response.session();
    return status;
  }
  grpc::Status Get(const std::string& session_id, const std::string& user_id) {
    v1::Session ignored;
    return Get(session_id, user_id, &ignored);
  }
  v1::Session MustGet(const std::string& session_id,
                      const std::string& user_id = "") {
    v1::Session session;
    EXPECT_TRUE(IsOk(Get(session_id, user_id, &session)));
    return session;
  }

  grpc::Status Update(const std::string& session_id, const std::string& user_id,
                      const std::string& title, v1::Session* out) {
    v1::UpdateSessionRequest request;
    request.set_session_id(session_id);
    request.set_user_id(user_id);
    request.set_title(title);
    v1::UpdateSessionResponse response;
    grpc::Status status =
        server_.chat().UpdateSession(Context().get(), request, &response);
    *out = response.session();
    return status;
  }
  grpc::Status Update(const std::string& session_id, const std::string& user_id,
                      const std::string& title) {
    v1::Session ignored;
    return Update(session_id, user_id, title, &ignored);
  }

  grpc::Status Delete(const std::string& session_id, const std::string& user_id,
                      v1::DeleteSessionResponse* out) {
    v1::DeleteSessionRequest request;
    request.set_session_id(session_id);
    request.set_user_id(user_id);
    return server_.chat().DeleteSession(Context().get(), request, out);
  }
  grpc::Status Delete(const std::string& session_id,
                      const std::string& user_id) {
    v1::DeleteSessionResponse ignored;
    return Delete(session_id, user_id, &ignored);
  }

  grpc::Status List(const std::string& user_id, v1::ListSessionsResponse* out) {
    v1::ListSessionsRequest request;
    request.set_user_id(user_id);
    return server_.chat().ListSessions(Context().get(), request, out);
  }
  std::vector<v1::SessionSummary> MustList(const std::string& user_id) {
    v1::ListSessionsResponse response;
    EXPECT_TRUE(IsOk(List(user_id, &response)));
    return {response.sessions().begin(), response.sessions().end()};
  }

  grpc::Status GetHistory(const std::string& user_id, std::optional<int> limit,
                          v1::GetHistoryResponse* out) {
    v1::GetHistoryRequest request;
    request.set_user_id(user_id);
    if (limit.has_value()) request.set_limit(*limit);
    return server_.chat().GetHistory(Context().get(), request, out);
  }
  v1::GetHistoryResponse MustHistory(const std::string& user_id,
                                     std::optional<int> limit = {}) {
    v1::GetHistoryResponse response;
    EXPECT_TRUE(IsOk(GetHistory(user_id, limit, &response)));
    return response;
  }
  v1::HistoryStats Totals(const std::string& user_id) {
    return MustHistory(user_id).stats();
  }

  v1::UserStats Stats(const std::string& user_id) {
    v1::GetUserStatsRequest request;
    request.set_user_id(user_id);
    v1::GetUserStatsResponse response;
    EXPECT_TRUE(IsOk(
        server_.users().GetUserStats(Context().get(), request, &response)));
    return response.stats();
  }
  // Credits left this month as GetUserStats reports them (-1: unlimited).
  int RemainingCredits(const std::string& user_id) {
    const v1::UserStats stats = Stats(user_id);
    return stats.has_remaining_credits() ? stats.remaining_credits() : -1;
  }

  void SetPlan(const std::string& user_id, v1::Plan plan) {
    v1::SetPlanRequest request;
    request.set_user_id(user_id);
    request.set_plan(plan);
    v1::SetPlanResponse response;
    ASSERT_TRUE(IsOk(
        server_.users().SetPlan(AdminContext().get(), request, &response)));
  }

  // Spends all of a FREE user's credits of the current month in one session.
  std::string SpendAllCredits(const std::string& user_id) {
    std::string session_id;
    for (int i = 0; i < 5; ++i) {
      session_id = MustSend(user_id, session_id, absl::StrCat("Question ", i))
                       .session_id();
    }
    EXPECT_EQ(RemainingCredits(user_id), 0);
    return session_id;
  }

  TestServer server_;
};

// ===========================================================================
// ListSessions
// ===========================================================================

TEST_F(ChatServiceTest, ListSessionsIsNewestUpdatedFirstWithSummaries) {
  const absl::Time t0 = server_.clock().Now();
  const v1::Session older = MustCreate("alice", "Plus ancienne");
  server_.clock().Advance(absl::Minutes(1));
  const v1::Session newer = MustCreate("alice", "Plus récente");
  MustCreate("bob", "Celle de Bob");  // Never listed for alice.

  // Newest created first while nothing else happened.
  std::vector<v1::SessionSummary> listed = MustList("alice");
  ASSERT_THAT(listed, SizeIs(2));
  EXPECT_EQ(listed[0].id(), newer.id());
  EXPECT_EQ(listed[1].id(), older.id());
  EXPECT_EQ(listed[1].message_count(), 0);
  EXPECT_EQ(listed[1].last_message(), "");

  // A send into the older one makes it the most recently updated.
  server_.coach().ReplyWith("Très bonne question, parlons-en.");
  server_.clock().Advance(absl::Minutes(1));
  MustSend("alice", older.id(), "Comment aborder quelqu'un ?");
  listed = MustList("alice");
  ASSERT_THAT(listed, SizeIs(2));
  EXPECT_EQ(listed[0].id(), older.id());
  EXPECT_EQ(listed[0].title(), "Plus ancienne");
  EXPECT_EQ(listed[0].message_count(), 2);
  // The last message is the coach's reply (short: kept whole).
  EXPECT_EQ(listed[0].last_message(), "Très bonne question, parlons-en.");
  EXPECT_EQ(FromProto(listed[0].created_at()), t0);
  EXPECT_EQ(FromProto(listed[0].updated_at()), t0 + absl::Minutes(2));
  EXPECT_EQ(listed[1].id(), newer.id());
  EXPECT_GT(FromProto(listed[0].updated_at()),
            FromProto(listed[1].updated_at()));

  // A rename moves the other one back on top.
  server_.clock().Advance(absl::Minutes(1));
  ASSERT_TRUE(IsOk(Update(newer.id(), "alice", "Renommée")));
  listed = MustList("alice");
  ASSERT_THAT(listed, SizeIs(2));
  EXPECT_EQ(listed[0].id(), newer.id());
  EXPECT_EQ(listed[1].id(), older.id());
}

TEST_F(ChatServiceTest, ListSessionsOfAnUnknownUserIsEmpty) {
  EXPECT_THAT(MustList("jamais-vu"), IsEmpty());
}

TEST_F(ChatServiceTest, LastMessageAndPreviewAreTheReplyShortenedUtf8Safely) {
  // 300 code points of 2- and 4-byte characters, single spaces.
  const std::string reply = Repeat("Réponse détaillée 🙂 ", 15) + "fin.";
  server_.coach().ReplyWith(reply);
  const v1::SendMessageResponse sent = MustSend("alice", "", "Salut");
  EXPECT_EQ(sent.assistant_message().content(), reply);  // Stored whole.

  const size_t limit =
      static_cast<size_t>(server_.config().limits.preview_length);
  const std::vector<v1::SessionSummary> listed = MustList("alice");
  ASSERT_THAT(listed, SizeIs(1));
  const std::string& last = listed[0].last_message();
  const std::optional<size_t> code_points = Utf8CodePoints(last);
  ASSERT_TRUE(code_points.has_value()) << "not UTF-8: " << last;
  EXPECT_LE(*code_points, limit);
  EXPECT_GE(*code_points, limit - 25);  // Cut near the limit, not far before.
  EXPECT_GT(last.size(), limit);        // Counted in characters, not bytes.
  ASSERT_TRUE(absl::EndsWith(last, "…")) << last;
  EXPECT_TRUE(absl::StartsWith(reply, last.substr(0, last.size() - 3))) << last;

  const v1::GetHistoryResponse history = MustHistory("alice");
  ASSERT_THAT(history.history(), SizeIs(1));
  EXPECT_EQ(history.history(0).preview(), last);
  EXPECT_EQ(history.history(0).message_count(), 2);
}

// ===========================================================================
// CreateSession
// ===========================================================================

TEST_F(ChatServiceTest, CreateSessionWithoutTitleIsNouvelleConversation) {
  const v1::Session created = MustCreate("alice");
  EXPECT_TRUE(IsUuidV4(created.id())) << created.id();
  EXPECT_EQ(created.title(), "Nouvelle conversation");
  EXPECT_THAT(created.messages(), IsEmpty());
  EXPECT_EQ(FromProto(created.created_at()), server_.clock().Now());
  EXPECT_EQ(FromProto(created.updated_at()), server_.clock().Now());

  const std::vector<v1::SessionSummary> listed = MustList("alice");
  ASSERT_THAT(listed, SizeIs(1));
  EXPECT_EQ(listed[0].id(), created.id());
  EXPECT_EQ(listed[0].title(), "Nouvelle conversation");
  EXPECT_EQ(listed[0].message_count(), 0);
  EXPECT_EQ(listed[0].last_message(), "");
  EXPECT_THAT(MustGet(created.id(), "alice").messages(), IsEmpty());
  // An empty session costs nothing.
  EXPECT_EQ(RemainingCredits("alice"), 5);
}

TEST_F(ChatServiceTest, CreateSessionTrimsTheGivenTitle) {
  // ASCII spaces and a no-break space (U+00A0) around the title.
  const v1::Session created =
      MustCreate("alice", " \t Ma conversation\xC2\xA0 ");
  EXPECT_EQ(created.title(), "Ma conversation");
  EXPECT_EQ(MustGet(created.id()).title(), "Ma conversation");
}

TEST_F(ChatServiceTest, CreateSessionRefusesABlankTitle) {
  v1::Session session;
  EXPECT_TRUE(IsInvalid(Create("alice", "   ", &session), "title"));
  EXPECT_TRUE(IsInvalid(Create("alice", "\n\t\xC2\xA0", &session), "title"));
  EXPECT_THAT(MustList("alice"), IsEmpty());
}

// docs/product-rules.md: the title is optional, and an empty one is no
// title.
TEST_F(ChatServiceTest, CreateSessionWithAnEmptyTitleGetsTheDefault) {
  EXPECT_EQ(MustCreate("alice", "").title(), "Nouvelle conversation");
  EXPECT_THAT(MustList("alice"), ::testing::SizeIs(1));
}

TEST_F(ChatServiceTest, TitleLengthCountsCharactersNotBytes) {
  const int max = server_.config().limits.max_title_length;  // 200
  // 200 two-byte characters (400 bytes) are accepted, 201 are not.
  const std::string longest = Repeat("é", max);
  EXPECT_EQ(MustCreate("alice", longest).title(), longest);
  v1::Session session;
  EXPECT_TRUE(
      IsInvalid(Create("alice", Repeat("é", max + 1), &session), "title"));
  // Same limit on rename.
  const std::string id = MustList("alice").at(0).id();
  EXPECT_TRUE(IsOk(Update(id, "alice", Repeat("😀", max))));
  EXPECT_TRUE(IsInvalid(Update(id, "alice", Repeat("😀", max + 1)), "title"));
  EXPECT_EQ(MustGet(id).title(), Repeat("😀", max));
  EXPECT_THAT(MustList("alice"), SizeIs(1));
}

// ===========================================================================
// GetSession
// ===========================================================================

TEST_F(ChatServiceTest, GetSessionReturnsMessagesOldestFirstWithBothRoles) {
  const absl::Time t0 = server_.clock().Now();
  const v1::SendMessageResponse first = MustSend("alice", "", "Premier");
  server_.clock().Advance(absl::Minutes(3));
  const v1::SendMessageResponse second =
      MustSend("alice", first.session_id(), "Deuxième");

  // By the owner, and without userId (the id is an unguessable capability).
  for (const std::string& user_id : {std::string("alice"), std::string()}) {
    const v1::Session session = MustGet(first.session_id(), user_id);
    EXPECT_EQ(session.id(), first.session_id());
    EXPECT_EQ(FromProto(session.created_at()), t0);
    EXPECT_EQ(FromProto(session.updated_at()), t0 + absl::Minutes(3));
    ASSERT_THAT(session.messages(), SizeIs(4));
    const auto& m = session.messages();
    EXPECT_EQ(m[0].id(), first.user_message().id());
    EXPECT_EQ(m[1].id(), first.assistant_message().id());
    EXPECT_EQ(m[2].id(), second.user_message().id());
    EXPECT_EQ(m[3].id(), second.assistant_message().id());
    EXPECT_EQ(m[0].role(), v1::USER);
    EXPECT_EQ(m[1].role(), v1::ASSISTANT);
    EXPECT_EQ(m[2].role(), v1::USER);
    EXPECT_EQ(m[3].role(), v1::ASSISTANT);
    EXPECT_EQ(m[0].content(), "Premier");
    EXPECT_EQ(m[1].content(), first.assistant_message().content());
    EXPECT_EQ(m[2].content(), "Deuxième");
    EXPECT_EQ(m[3].content(), second.assistant_message().content());
    EXPECT_EQ(FromProto(m[0].created_at()), t0);
    EXPECT_EQ(FromProto(m[3].created_at()), t0 + absl::Minutes(3));
  }
}

// ===========================================================================
// UpdateSession
// ===========================================================================

TEST_F(ChatServiceTest, UpdateSessionRenamesAndMovesUpdatedAt) {
  const absl::Time t0 = server_.clock().Now();
  const v1::Session created = MustCreate("alice");
  server_.clock().Advance(absl::Minutes(5));

  v1::Session updated;
  ASSERT_TRUE(
      IsOk(Update(created.id(), "alice", "  Confiance en soi  ", &updated)));
  EXPECT_EQ(updated.id(), created.id());
  EXPECT_EQ(updated.title(), "Confiance en soi");
  EXPECT_EQ(FromProto(updated.created_at()), t0);
  EXPECT_EQ(FromProto(updated.updated_at()), t0 + absl::Minutes(5));

  const v1::Session reread = MustGet(created.id(), "alice");
  EXPECT_EQ(reread.title(), "Confiance en soi");
  EXPECT_EQ(FromProto(reread.updated_at()), t0 + absl::Minutes(5));
  // Without userId too (capability), as for GetSession.
  EXPECT_TRUE(IsOk(Update(created.id(), "", "Autre titre")));
  EXPECT_EQ(MustGet(created.id()).title(), "Autre titre");
}

TEST_F(ChatServiceTest, UpdateSessionRefusesABlankTitleAndKeepsTheOld) {
  const v1::Session created = MustCreate("alice", "Titre d'origine");
  EXPECT_TRUE(IsInvalid(Update(created.id(), "alice", ""), "title"));
  EXPECT_TRUE(IsInvalid(Update(created.id(), "alice", "  \t "), "title"));
  EXPECT_EQ(MustGet(created.id()).title(), "Titre d'origine");
}

// ===========================================================================
// DeleteSession
// ===========================================================================

TEST_F(ChatServiceTest, DeleteRemovesTheSessionsMessages) {
  const std::string doomed = MustSend("alice", "", "Un").session_id();
  MustSend("alice", doomed, "Deux");
  const std::string kept = MustSend("alice", "", "Trois").session_id();
  v1::HistoryStats before = Totals("alice");
  EXPECT_EQ(before.total_sessions(), 2);
  EXPECT_EQ(before.total_messages(), 6);

  v1::DeleteSessionResponse deleted;
  ASSERT_TRUE(IsOk(Delete(doomed, "alice", &deleted)));
  EXPECT_TRUE(deleted.success());

  const grpc::StatusCode not_found = grpc::StatusCode::NOT_FOUND;
  EXPECT_TRUE(HasError(Get(doomed, "alice"), not_found, "SESSION_NOT_FOUND"));
  EXPECT_TRUE(HasError(Get(doomed, ""), not_found, "SESSION_NOT_FOUND"));
  EXPECT_TRUE(
      HasError(Delete(doomed, "alice"), not_found, "SESSION_NOT_FOUND"));
  EXPECT_TRUE(HasError(Send("alice", doomed, "Encore ?"), not_found,
                       "SESSION_NOT_FOUND"));

  // Totals drop by the deleted session's 4 messages; the other is intact.
  const v1::HistoryStats after = Totals("alice");
  EXPECT_EQ(after.total_sessions(), 1);
  EXPECT_EQ(after.total_messages(), 2);
  const std::vector<v1::SessionSummary> listed = MustList("alice");
  ASSERT_THAT(listed, SizeIs(1));
  EXPECT_EQ(listed[0].id(), kept);
  EXPECT_THAT(MustGet(kept).messages(), SizeIs(2));

  // The message rows themselves are gone from the SQLite file, not only the
  // session's counter (read through the store the server uses).
  auto rows = server_.store().ListRecentMessages(doomed, 1000);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_THAT(*rows, IsEmpty());
}

// ===========================================================================
// SendMessage
// ===========================================================================

TEST_F(ChatServiceTest, SendWithoutSessionStartsOneTitledFromTheMessage) {
  v1::SendMessageResponse sent;
  grpc::Status status =
      Send("user123", "", "  Bonjour, j'ai besoin de conseils  ", &sent);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(sent.session_id().empty());
  EXPECT_EQ(sent.user_message().role(), v1::USER);
  EXPECT_EQ(sent.user_message().content(), "Bonjour, j'ai besoin de conseils");
  EXPECT_EQ(sent.assistant_message().role(), v1::ASSISTANT);
  EXPECT_FALSE(sent.assistant_message().content().empty());
  ASSERT_TRUE(sent.has_remaining_credits());
  EXPECT_EQ(sent.remaining_credits(), 4);

  v1::GetSessionRequest get;
  get.set_session_id(sent.session_id());
  v1::GetSessionResponse session;
  ASSERT_TRUE(server_.chat().GetSession(Context().get(), get, &session).ok());
  EXPECT_EQ(session.session().title(), "Bonjour, j'ai besoin de conseils");
  ASSERT_THAT(session.session().messages(), SizeIs(2));
  EXPECT_EQ(session.session().messages(0).id(), sent.user_message().id());
  EXPECT_EQ(session.session().messages(1).id(), sent.assistant_message().id());
}

TEST_F(ChatServiceTest, NewSessionTitleIsShortenedUtf8SafelyWithAnEllipsis) {
  // ~180 code points of 1-, 2-, 3- and 4-byte characters.
  const std::string message =
      "  " + Repeat("Élodie préfère les cafés ensoleillés 😊 à Noël — ", 4) +
      "  ";
  const v1::SendMessageResponse sent = MustSend("alice", "", message);
  const std::string title = MustGet(sent.session_id()).title();

  const size_t limit =
      static_cast<size_t>(server_.config().limits.auto_title_length);
  const std::optional<size_t> code_points = Utf8CodePoints(title);
  ASSERT_TRUE(code_points.has_value()) << "not UTF-8: " << title;
  EXPECT_LE(*code_points, limit);
  EXPECT_GE(*code_points, limit - 15);  // Cut near the limit.
  EXPECT_GT(title.size(), limit);       // Counted in characters, not bytes.
  ASSERT_TRUE(absl::EndsWith(title, "…")) << title;
  // What precedes the ellipsis is the start of the trimmed message.
  const std::string kept = title.substr(0, title.size() - 3);
  EXPECT_TRUE(absl::StartsWith(message.substr(2), kept)) << title;
  EXPECT_FALSE(absl::EndsWith(kept, " ")) << title;

  // The title is one line; the message itself keeps its line breaks.
  const v1::SendMessageResponse multiline =
      MustSend("carol", "", "\n  Bonjour\n\ncoach  \n");
  EXPECT_EQ(multiline.user_message().content(), "Bonjour\n\ncoach");
  EXPECT_EQ(MustGet(multiline.session_id()).title(), "Bonjour coach");

  // A short first message is the title as is (trimmed); later sends keep it.
  const std::string id =
      MustSend("bob", "", "  Timide au travail  ").session_id();
  MustSend("bob", id, "Autre sujet complètement différent");
  EXPECT_EQ(MustGet(id).title(), "Timide au travail");
}

TEST_F(ChatServiceTest, ContinuingASessionGivesTheCoachTheConversationInOrder) {
  const v1::SendMessageResponse first = MustSend("alice", "", "Un");
  const v1::SendMessageResponse second =
      MustSend("alice", first.session_id(), "Deux");
  const v1::SendMessageResponse third =
      MustSend("alice", first.session_id(), "Trois");
  EXPECT_EQ(third.session_id(), first.session_id());
  EXPECT_EQ(third.remaining_credits(), 2);

  const std::vector<CoachRequest> requests = server_.coach().requests();
  ASSERT_THAT(requests, SizeIs(3));
  // A new session: the system prompt, then only the new message.
  EXPECT_FALSE(requests[0].system_prompt.empty());
  ASSERT_THAT(requests[0].conversation, SizeIs(1));
  EXPECT_EQ(requests[0].conversation[0].content, "Un");

  const CoachRequest& last = requests[2];
  EXPECT_FALSE(last.system_prompt.empty());
  ASSERT_THAT(last.conversation, SizeIs(5));
  const std::vector<std::pair<Role, std::string>> expected = {
      {Role::kUser, "Un"},
      {Role::kAssistant, first.assistant_message().content()},
      {Role::kUser, "Deux"},
      {Role::kAssistant, second.assistant_message().content()},
      {Role::kUser, "Trois"},
  };
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(last.conversation[i].role, expected[i].first) << "turn " << i;
    EXPECT_EQ(last.conversation[i].content, expected[i].second) << "turn " << i;
  }
  EXPECT_THAT(MustGet(first.session_id()).messages(), SizeIs(6));
}

TEST_F(ChatServiceTest, UnknownSessionIsNotFound) {
  v1::SendMessageResponse sent;
  grpc::Status status = Send("user123", "session456", "Salut", &sent);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ErrorInfoOf(status).reason, "SESSION_NOT_FOUND");
  EXPECT_EQ(ErrorInfoOf(status).domain, "coach.v1");
}

TEST_F(ChatServiceTest, UnknownSessionIsNotFoundOnEveryRpc) {
  const grpc::StatusCode code = grpc::StatusCode::NOT_FOUND;
  EXPECT_TRUE(HasError(Get(kUnknownSessionId, ""), code, "SESSION_NOT_FOUND"));
  EXPECT_TRUE(
      HasError(Get(kUnknownSessionId, "alice"), code, "SESSION_NOT_FOUND"));
  EXPECT_TRUE(HasError(Update(kUnknownSessionId, "alice", "Titre"), code,
                       "SESSION_NOT_FOUND"));
  EXPECT_TRUE(
      HasError(Delete(kUnknownSessionId, "alice"), code, "SESSION_NOT_FOUND"));
  EXPECT_TRUE(HasError(Send("alice", kUnknownSessionId, "Salut"), code,
                       "SESSION_NOT_FOUND"));
  // Refused before the coach, and at no cost.
  EXPECT_EQ(server_.coach().request_count(), 0);
  EXPECT_EQ(RemainingCredits("alice"), 5);
  EXPECT_EQ(Totals("alice").total_sessions(), 0);
}

// ===========================================================================
// GetHistory
// ===========================================================================

TEST_F(ChatServiceTest, HistoryLimitIsOptionalCappedAndStatsCountEverything) {
  const Limits& limits = server_.config().limits;
  const int sessions = limits.history_max_limit + 1;  // 101
  std::vector<std::string> ids;
  for (int i = 0; i < sessions; ++i) {
    server_.clock().Advance(absl::Seconds(1));  // Distinct updatedAt.
    ids.push_back(MustCreate("alice", absl::StrCat("Session ", i)).id());
  }
  server_.clock().Advance(absl::Seconds(1));
  MustSend("alice", ids[0], "Le plus ancien devient le plus récent");
  const std::string newest = ids[0];

  // Absent: the default.
  v1::GetHistoryResponse history = MustHistory("alice");
  EXPECT_THAT(history.history(), SizeIs(limits.history_default_limit));
  EXPECT_EQ(history.history(0).id(), newest);
  EXPECT_EQ(history.history(0).message_count(), 2);
  EXPECT_EQ(history.stats().total_sessions(), sessions);
  EXPECT_EQ(history.stats().total_messages(), 2);

  // A small limit: that many, newest updatedAt first; stats unchanged.
  history = MustHistory("alice", 3);
  ASSERT_THAT(history.history(), SizeIs(3));
  EXPECT_EQ(history.history(0).id(), newest);
  EXPECT_EQ(history.history(1).id(), ids[sessions - 1]);
  EXPECT_EQ(history.history(2).id(), ids[sessions - 2]);
  EXPECT_EQ(history.history(1).title(), absl::StrCat("Session ", sessions - 1));
  EXPECT_EQ(history.stats().total_sessions(), sessions);
  EXPECT_EQ(history.stats().total_messages(), 2);

  // Above the cap: the cap.
  history = MustHistory("alice", 1000000);
  EXPECT_THAT(history.history(), SizeIs(limits.history_max_limit));
  EXPECT_EQ(history.stats().total_sessions(), sessions);

  // 1 is fine.
  EXPECT_THAT(MustHistory("alice", 1).history(), SizeIs(1));
}

TEST_F(ChatServiceTest, HistoryOfAnUnknownUserIsEmptyWithZeroStats) {
  const v1::GetHistoryResponse history = MustHistory("jamais-vu");
  EXPECT_THAT(history.history(), IsEmpty());
  EXPECT_TRUE(history.has_stats());
  EXPECT_EQ(history.stats().total_sessions(), 0);
  EXPECT_EQ(history.stats().total_messages(), 0);
}

TEST_F(ChatServiceTest, HistoryRefusesANonPositiveLimit) {
  MustCreate("alice");
  v1::GetHistoryResponse history;
  for (int limit : {0, -1, INT32_MIN}) {
    EXPECT_TRUE(IsInvalid(GetHistory("alice", limit, &history), "limit"))
        << "limit " << limit;
  }
}

// ===========================================================================
// Ownership
// ===========================================================================

TEST_F(ChatServiceTest, AnotherUsersSessionIsForbiddenOnGetUpdateDelete) {
  const std::string id = MustSend("victim", "", "Mon secret").session_id();
  const grpc::StatusCode code = grpc::StatusCode::PERMISSION_DENIED;

  v1::Session leaked;
  EXPECT_TRUE(
      HasError(Get(id, "intruder", &leaked), code, "SESSION_FORBIDDEN"));
  EXPECT_THAT(leaked.messages(), IsEmpty());
  EXPECT_TRUE(
      HasError(Update(id, "intruder", "Piraté"), code, "SESSION_FORBIDDEN"));
  EXPECT_TRUE(HasError(Delete(id, "intruder"), code, "SESSION_FORBIDDEN"));

  // Untouched.
  const v1::Session session = MustGet(id, "victim");
  EXPECT_EQ(session.title(), "Mon secret");
  EXPECT_THAT(session.messages(), SizeIs(2));
}

TEST_F(ChatServiceTest, SendIntoAnotherUsersSessionIsForbiddenAndFree) {
  const std::string id = MustSend("victim", "", "Mon secret").session_id();
  const int coach_calls = server_.coach().request_count();

  EXPECT_TRUE(HasError(Send("intruder", id, "Je m'invite"),
                       grpc::StatusCode::PERMISSION_DENIED,
                       "SESSION_FORBIDDEN"));

  // Nothing stored, the coach not asked, nobody charged.
  EXPECT_EQ(server_.coach().request_count(), coach_calls);
  EXPECT_THAT(MustGet(id, "victim").messages(), SizeIs(2));
  EXPECT_EQ(MustList("victim").at(0).message_count(), 2);
  EXPECT_EQ(RemainingCredits("victim"), 4);
  EXPECT_EQ(RemainingCredits("intruder"), 5);
  EXPECT_EQ(Totals("intruder").total_sessions(), 0);
}

// ===========================================================================
// Validation
// ===========================================================================

TEST_F(ChatServiceTest, UserIdIsRequiredNotBlankAndBounded) {
  const int max = server_.config().limits.max_user_id_length;  // 128
  const std::string too_long = Repeat("é", max + 1);
  v1::ListSessionsResponse listed;
  v1::Session session;
  v1::GetHistoryResponse history;
  for (const std::string& bad : {std::string(), std::string("   "),
                                 std::string("\t\xC2\xA0"), too_long}) {
    SCOPED_TRACE(absl::StrCat("userId '", bad, "'"));
    EXPECT_TRUE(IsInvalid(List(bad, &listed), "userId"));
    EXPECT_TRUE(IsInvalid(Create(bad, std::nullopt, &session), "userId"));
    EXPECT_TRUE(IsInvalid(Send(bad, "", "Bonjour"), "userId"));
    EXPECT_TRUE(IsInvalid(GetHistory(bad, std::nullopt, &history), "userId"));
  }
  // Missing and blank get different French messages.
  EXPECT_THAT(List("", &listed).error_message(),
              ::testing::HasSubstr("requis"));
  EXPECT_THAT(List("  ", &listed).error_message(),
              ::testing::HasSubstr("vide"));

  // On Get/Update/Delete userId is optional, but when given it is checked.
  const std::string id = MustCreate("alice").id();
  EXPECT_TRUE(IsInvalid(Get(id, too_long), "userId"));
  EXPECT_TRUE(IsInvalid(Get(id, "   "), "userId"));
  EXPECT_TRUE(IsInvalid(Update(id, too_long, "Titre"), "userId"));
  EXPECT_TRUE(IsInvalid(Delete(id, too_long), "userId"));
  EXPECT_EQ(MustGet(id).title(), "Nouvelle conversation");

  // Exactly the limit, in characters (256 bytes here), is accepted.
  EXPECT_TRUE(IsOk(List(Repeat("é", max), &listed)));
  EXPECT_EQ(server_.coach().request_count(), 0);
}

TEST_F(ChatServiceTest, MessageIsRequiredAndNotBlank) {
  const std::string id = MustCreate("alice").id();
  for (const std::string& bad :
       {std::string(), std::string("   "), std::string("\n\t \r\n"),
        std::string("\xC2\xA0\xE3\x80\x80")}) {  // NBSP, ideographic space
    SCOPED_TRACE(absl::StrCat("message '", bad, "'"));
    EXPECT_TRUE(IsInvalid(Send("alice", "", bad), "message"));
    EXPECT_TRUE(IsInvalid(Send("alice", id, bad), "message"));
  }
  EXPECT_EQ(server_.coach().request_count(), 0);
  EXPECT_EQ(Totals("alice").total_sessions(), 1);
  EXPECT_EQ(Totals("alice").total_messages(), 0);
  EXPECT_EQ(RemainingCredits("alice"), 5);
}

TEST_F(ChatServiceTest, MessageLengthCountsCharactersNotBytes) {
  const int max = server_.config().limits.max_message_length;  // 4000
  // 4000 two-byte characters (8000 bytes) are accepted and stored whole.
  const std::string longest = Repeat("é", max);
  const v1::SendMessageResponse sent = MustSend("alice", "", longest);
  EXPECT_EQ(sent.user_message().content(), longest);
  EXPECT_EQ(MustGet(sent.session_id()).messages(0).content(), longest);
  // Surrounding spaces do not count.
  EXPECT_TRUE(IsOk(Send("alice", sent.session_id(), "  " + longest + "\n")));
  // Four-byte characters too.
  EXPECT_TRUE(IsOk(Send("alice", sent.session_id(), Repeat("😀", max))));

  const int coach_calls = server_.coach().request_count();
  EXPECT_TRUE(IsInvalid(Send("alice", "", Repeat("é", max + 1)), "message"));
  EXPECT_TRUE(IsInvalid(Send("alice", sent.session_id(), Repeat("😀", max + 1)),
                        "message"));
  EXPECT_TRUE(IsInvalid(Send("alice", "", Repeat("a", max + 1)), "message"));
  EXPECT_EQ(server_.coach().request_count(), coach_calls);
  EXPECT_EQ(Totals("alice").total_sessions(), 1);
  EXPECT_EQ(Totals("alice").total_messages(), 6);
  EXPECT_EQ(RemainingCredits("alice"), 2);
}

// A proto3 `string` must be UTF-8: protobuf C++ serializes such a request
// (logging an error) but the server cannot parse it, so gRPC answers before
// coach-server's own check (which would say INVALID_ARGUMENT "message")
// could run. (gRPC 1.51's callback path reports a request it cannot parse
// as UNIMPLEMENTED, the sync path as INTERNAL.) Whatever the code, the send
// must fail and leave no trace. REST clients get 400 from the proxy's JSON
// parser instead.
TEST_F(ChatServiceTest, InvalidUtf8MessageIsRefusedAndStoresNothing) {
  const grpc::Status status = Send("alice", "", "caf\xC3\x28 mal formé");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.error_code(),
              ::testing::AnyOf(grpc::StatusCode::INVALID_ARGUMENT,
                               grpc::StatusCode::INTERNAL,
                               grpc::StatusCode::UNIMPLEMENTED));
  EXPECT_EQ(server_.coach().request_count(), 0);
  EXPECT_EQ(Totals("alice").total_sessions(), 0);
  EXPECT_EQ(RemainingCredits("alice"), 5);
}

TEST_F(ChatServiceTest, SessionIdIsValidatedWhenGiven) {
  const int max = server_.config().limits.max_session_id_length;  // 64
  const std::string too_long(static_cast<size_t>(max) + 1, 'a');
  EXPECT_TRUE(IsInvalid(Get("", "alice"), "sessionId"));
  EXPECT_TRUE(IsInvalid(Get("   ", "alice"), "sessionId"));
  EXPECT_TRUE(IsInvalid(Get(too_long, "alice"), "sessionId"));
  EXPECT_TRUE(IsInvalid(Update("", "alice", "Titre"), "sessionId"));
  EXPECT_TRUE(IsInvalid(Update(too_long, "alice", "Titre"), "sessionId"));
  EXPECT_TRUE(IsInvalid(Delete("", "alice"), "sessionId"));
  EXPECT_TRUE(IsInvalid(Delete(too_long, "alice"), "sessionId"));
  // On SendMessage an empty sessionId means "new session", a blank one not.
  EXPECT_TRUE(IsInvalid(Send("alice", "   ", "Bonjour"), "sessionId"));
  EXPECT_TRUE(IsInvalid(Send("alice", too_long, "Bonjour"), "sessionId"));
  EXPECT_EQ(server_.coach().request_count(), 0);
}

TEST_F(ChatServiceTest, ValidationComesBeforeEveryOtherRule) {
  const Limits& limits = server_.config().limits;
  const std::string long_user_id = Repeat("x", limits.max_user_id_length + 1);
  const std::string long_message = Repeat("é", limits.max_message_length + 1);
  // Before NOT_FOUND.
  EXPECT_TRUE(IsInvalid(Send("alice", kUnknownSessionId, "   "), "message"));
  EXPECT_TRUE(IsInvalid(Update(kUnknownSessionId, "alice", " "), "title"));
  EXPECT_TRUE(IsInvalid(Get(kUnknownSessionId, long_user_id), "userId"));
  EXPECT_TRUE(IsInvalid(Send("", kUnknownSessionId, "Salut"), "userId"));

  // Before PERMISSION_DENIED.
  const std::string theirs = MustSend("victim", "", "À moi").session_id();
  EXPECT_TRUE(IsInvalid(Send("intruder", theirs, ""), "message"));
  EXPECT_TRUE(IsInvalid(Update(theirs, "intruder", ""), "title"));

  // Before NO_CREDITS.
  const std::string mine = SpendAllCredits("broke");
  EXPECT_TRUE(IsInvalid(Send("broke", "", "  "), "message"));
  EXPECT_TRUE(IsInvalid(Send("broke", mine, long_message), "message"));
  EXPECT_TRUE(IsNoCredits(Send("broke", mine, "Encore une")));
}

// ===========================================================================
// Credits
// ===========================================================================

TEST_F(ChatServiceTest, FreeUserHasFiveCreditsThenNoCredits) {
  std::string id;
  for (int expected = 4; expected >= 0; --expected) {
    const v1::SendMessageResponse sent =
        MustSend("alice", id, absl::StrCat("Question ", expected));
    id = sent.session_id();
    ASSERT_TRUE(sent.has_remaining_credits());
    EXPECT_EQ(sent.remaining_credits(), expected);
  }
  const int coach_calls = server_.coach().request_count();
  EXPECT_EQ(coach_calls, 5);

  // Neither a new session nor the existing one.
  EXPECT_TRUE(IsNoCredits(Send("alice", "", "Une sixième")));
  EXPECT_TRUE(IsNoCredits(Send("alice", id, "Une sixième")));

  // Refused before the coach; nothing stored; credits not below 0.
  EXPECT_EQ(server_.coach().request_count(), coach_calls);
  const v1::HistoryStats stats = Totals("alice");
  EXPECT_EQ(stats.total_sessions(), 1);
  EXPECT_EQ(stats.total_messages(), 10);
  EXPECT_THAT(MustGet(id).messages(), SizeIs(10));
  EXPECT_EQ(RemainingCredits("alice"), 0);
  // Other users keep theirs.
  EXPECT_EQ(MustSend("bob", "", "Salut").remaining_credits(), 4);
}

TEST_F(ChatServiceTest, CreditsRefillAtTheStartOfEachUtcMonth) {
  const std::string id = SpendAllCredits("alice");  // Mid-November.

  server_.clock().Set(Utc(2026, 11, 30, 23, 59, 59));
  EXPECT_TRUE(IsNoCredits(Send("alice", id, "Toujours rien ?")));
  EXPECT_EQ(RemainingCredits("alice"), 0);

  server_.clock().Set(Utc(2026, 12, 1, 0, 0, 0));
  EXPECT_EQ(RemainingCredits("alice"), 5);
  const v1::SendMessageResponse sent = MustSend("alice", id, "Nouveau mois");
  ASSERT_TRUE(sent.has_remaining_credits());
  EXPECT_EQ(sent.remaining_credits(), 4);
}

TEST_F(ChatServiceTest, UnusedCreditsAreNotCarriedOver) {
  EXPECT_EQ(MustSend("alice", "", "Une seule").remaining_credits(), 4);

  server_.clock().Set(Utc(2026, 12, 1, 0, 0, 0));
  EXPECT_EQ(RemainingCredits("alice"), 5);  // Not 9.
  EXPECT_EQ(MustSend("alice", "", "Décembre").remaining_credits(), 4);

  // Nor across a skipped month.
  server_.clock().Set(Utc(2027, 2, 10, 12, 0, 0));
  EXPECT_EQ(MustSend("alice", "", "Février").remaining_credits(), 4);
}

TEST_F(ChatServiceTest, BasicUserHasFiftyCredits) {
  SetPlan("abonne", v1::BASIC);
  const v1::SendMessageResponse sent = MustSend("abonne", "", "Bonjour");
  ASSERT_TRUE(sent.has_remaining_credits());
  EXPECT_EQ(sent.remaining_credits(), 49);
}

TEST_F(ChatServiceTest, PremiumSendsAreUnlimitedAndReportNoCredits) {
  SetPlan("vip", v1::PREMIUM);
  std::string id;
  for (int i = 0; i < 7; ++i) {
    const v1::SendMessageResponse sent =
        MustSend("vip", id, absl::StrCat("Message ", i));
    id = sent.session_id();
    EXPECT_FALSE(sent.has_remaining_credits()) << "send " << i;
  }
  EXPECT_EQ(Totals("vip").total_messages(), 14);
}

// ===========================================================================
// A failed reply charges nothing and stores nothing
// ===========================================================================

TEST_F(ChatServiceTest, UnavailableCoachIsAiUnavailableAndFree) {
  server_.coach().FailWith(absl::UnavailableError("down"));
  const grpc::StatusCode unavailable = grpc::StatusCode::UNAVAILABLE;
  EXPECT_TRUE(
      HasError(Send("alice", "", "Bonjour"), unavailable, "AI_UNAVAILABLE"));
  // A timeout is the same to the user.
  server_.coach().FailWith(absl::DeadlineExceededError("slow"));
  EXPECT_TRUE(
      HasError(Send("alice", "", "Bonjour"), unavailable, "AI_UNAVAILABLE"));
  // No session was started, no credit spent.
  EXPECT_THAT(MustList("alice"), IsEmpty());
  EXPECT_EQ(RemainingCredits("alice"), 5);

  // Into an existing session: no message added.
  server_.coach().FailWith(absl::OkStatus());
  const std::string id = MustSend("alice", "", "Premier").session_id();
  server_.coach().FailWith(absl::UnavailableError("down"));
  EXPECT_TRUE(
      HasError(Send("alice", id, "Deuxième"), unavailable, "AI_UNAVAILABLE"));
  EXPECT_THAT(MustGet(id).messages(), SizeIs(2));
  EXPECT_EQ(MustList("alice").at(0).message_count(), 2);
  EXPECT_EQ(RemainingCredits("alice"), 4);

  // Back up: the next send costs exactly one.
  server_.coach().FailWith(absl::OkStatus());
  EXPECT_EQ(MustSend("alice", id, "Deuxième").remaining_credits(), 3);
}

TEST_F(ChatServiceTest, FailedRepliesDoNotHoldCredits) {
  // More failures than credits: if a failed send kept its reservation, the
  // user could not send any more until the reservations expire.
  server_.coach().FailWith(absl::UnavailableError("down"));
  for (int i = 0; i < 6; ++i) EXPECT_FALSE(Send("alice", "", "Bonjour").ok());
  server_.coach().FailWith(absl::OkStatus());
  std::string id;
  for (int expected = 4; expected >= 0; --expected) {
    const v1::SendMessageResponse sent = MustSend("alice", id, "Bonjour");
    id = sent.session_id();
    EXPECT_EQ(sent.remaining_credits(), expected);
  }
}

TEST_F(ChatServiceTest, CoachInternalErrorIsInternalAndLeaksNothing) {
  const std::string id = MustSend("alice", "", "Premier").session_id();
  server_.coach().FailWith(absl::InternalError("provider exploded: key=sk-1"));
  const grpc::Status status = Send("alice", id, "Deuxième");
  EXPECT_TRUE(HasError(status, grpc::StatusCode::INTERNAL, "INTERNAL"));
  EXPECT_THAT(status.error_message(),
              ::testing::Not(::testing::HasSubstr("provider")));
  EXPECT_TRUE(HasError(Send("alice", "", "Nouveau"), grpc::StatusCode::INTERNAL,
                       "INTERNAL"));
  EXPECT_THAT(MustGet(id).messages(), SizeIs(2));
  EXPECT_EQ(Totals("alice").total_sessions(), 1);
  EXPECT_EQ(RemainingCredits("alice"), 4);
}

TEST_F(ChatServiceTest, BlankOrMalformedReplyIsInternalAndStoresNothing) {
  const std::string id = MustSend("alice", "", "Premier").session_id();
  for (const std::string& reply :
       {std::string("   "), std::string(""), std::string("\n\t"),
        std::string("caf\xC3\x28")}) {  // Not UTF-8.
    server_.coach().ReplyWith(reply);
    EXPECT_TRUE(HasError(Send("alice", id, "Deuxième"),
                         grpc::StatusCode::INTERNAL, "INTERNAL"));
    EXPECT_TRUE(HasError(Send("alice", "", "Nouveau"),
                         grpc::StatusCode::INTERNAL, "INTERNAL"));
  }
  EXPECT_THAT(MustGet(id).messages(), SizeIs(2));
  EXPECT_EQ(Totals("alice").total_sessions(), 1);
  EXPECT_EQ(RemainingCredits("alice"), 4);
}

// ===========================================================================
// Concurrency
// ===========================================================================

TEST_F(ChatServiceTest, SixteenConcurrentSendsWithFiveCreditsExactlyFiveWin) {
  constexpr int kSends = 16;
  // The 5 accepted sends must all be inside the coach at once before any
  // reply: credits cannot be "won" one after the other.
  server_.coach().HoldUntilConcurrent(5);
  const auto started = std::chrono::steady_clock::now();
  const auto [statuses, responses] = SendConcurrently("alice", "", kSends);
  // The hold gives up after 20 s: if that is what released the replies,
  // the accepted sends did not overlap.
  EXPECT_LT(std::chrono::steady_clock::now() - started,
            std::chrono::seconds(15));

  int ok = 0;
  int no_credits = 0;
  std::multiset<int> remaining;
  for (int i = 0; i < kSends; ++i) {
    if (statuses[i].ok()) {
      ++ok;
      remaining.insert(responses[i].remaining_credits());
    } else if (IsNoCredits(statuses[i])) {
      ++no_credits;
    } else {
      ADD_FAILURE() << "send " << i << ": " << IsOk(statuses[i]).message();
    }
  }
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(no_credits, 11);
  EXPECT_THAT(remaining, ElementsAre(0, 1, 2, 3, 4));
  // The refused ones never reached the coach.
  EXPECT_EQ(server_.coach().request_count(), 5);
  EXPECT_EQ(RemainingCredits("alice"), 0);
  const v1::HistoryStats stats = Totals("alice");
  EXPECT_EQ(stats.total_sessions(), 5);
  EXPECT_EQ(stats.total_messages(), 10);
}

TEST_F(ChatServiceTest, ConcurrentSendsIntoOneSessionLoseNoUpdate) {
  constexpr int kSends = 16;
  SetPlan("vip", v1::PREMIUM);
  const std::string id = MustCreate("vip", "Grosse discussion").id();
  server_.coach().HoldUntilConcurrent(kSends);  // All in flight at once.
  const auto started = std::chrono::steady_clock::now();
  const auto [statuses, responses] = SendConcurrently("vip", id, kSends);
  EXPECT_LT(std::chrono::steady_clock::now() - started,
            std::chrono::seconds(15));
  for (int i = 0; i < kSends; ++i) {
    EXPECT_TRUE(IsOk(statuses[i])) << "send " << i;
    EXPECT_FALSE(responses[i].has_remaining_credits());
  }

  EXPECT_EQ(MustList("vip").at(0).message_count(), 2 * kSends);
  const v1::Session session = MustGet(id);
  ASSERT_THAT(session.messages(), SizeIs(2 * kSends));
  // Each exchange is stored in one transaction: its two messages adjacent.
  for (int i = 0; i < kSends; ++i) {
    const v1::ChatMessage& user = session.messages(2 * i);
    const v1::ChatMessage& reply = session.messages(2 * i + 1);
    EXPECT_EQ(user.role(), v1::USER);
    EXPECT_EQ(reply.role(), v1::ASSISTANT);
  }
  EXPECT_EQ(Totals("vip").total_messages(), 2 * kSends);
}

// The coach takes time; the session may be deleted meanwhile. The send must
// then fail NOT_FOUND, store nothing (no orphan messages) and charge nothing.
TEST_F(ChatServiceTest, SendIntoASessionDeletedWhileTheCoachRepliesIsNotFound) {
  const std::string id = MustSend("alice", "", "Premier").session_id();
  const int calls_before = server_.coach().request_count();
  // Alice's send waits in the coach until a second call arrives.
  server_.coach().HoldUntilConcurrent(2);
  grpc::Status held;
  std::thread alice(
      [&] { held = Send("alice", id, "Pendant la suppression"); });

  // Bounded wait (no sleep) until Alice's send is inside the coach.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_.coach().request_count() == calls_before &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  const bool alice_in_coach = server_.coach().request_count() > calls_before;
  EXPECT_TRUE(alice_in_coach);
  if (alice_in_coach) {
    EXPECT_TRUE(IsOk(Delete(id, "alice")));
  }
  // Bob's send is the second call: both replies are released.
  EXPECT_TRUE(IsOk(Send("bob", "", "Salut")));
  alice.join();

  EXPECT_TRUE(HasError(held, grpc::StatusCode::NOT_FOUND, "SESSION_NOT_FOUND"));
  auto rows = server_.store().ListRecentMessages(id, 1000);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_THAT(*rows, IsEmpty());
  EXPECT_EQ(Totals("alice").total_messages(), 0);
  EXPECT_EQ(RemainingCredits("alice"), 4);
  EXPECT_EQ(MustSend("alice", "", "Après").remaining_credits(), 3);
}

// An upgrade to PREMIUM while the coach writes: the reply is kept and
// nothing is charged (the held credit was a FREE plan's).
TEST_F(ChatServiceTest, UpgradeWhileTheCoachRepliesKeepsTheReplyFree) {
  const int calls_before = server_.coach().request_count();
  server_.coach().HoldUntilConcurrent(2);
  grpc::Status held;
  std::thread alice(
      [&] { held = Send("alice", "", "Pendant la mise à niveau"); });
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_.coach().request_count() == calls_before &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_GT(server_.coach().request_count(), calls_before);
  SetPlan("alice", v1::PREMIUM);
  EXPECT_TRUE(IsOk(Send("bob", "", "Salut")));  // releases both replies
  alice.join();

  EXPECT_TRUE(IsOk(held));
  EXPECT_EQ(Totals("alice").total_messages(), 2);
}

TEST_F(ChatServiceTest, UserIdWithSurroundingSpacesOrControlCharsIsRefused) {
  for (const std::string user :
       {" alice", "alice ", "ali\tce", "ali\x1b[31mce"}) {
    EXPECT_TRUE(IsInvalid(Send(user, "", "Salut"), "userId")) << user;
  }
  EXPECT_EQ(server_.coach().request_count(), 0);
}

// ===========================================================================
// Ids and text
// ===========================================================================

TEST_F(ChatServiceTest, IdsAreDistinctUuidV4s) {
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    const std::string id = MustCreate("alice").id();
    EXPECT_TRUE(IsUuidV4(id)) << id;
    ids.insert(id);
  }
  for (int i = 0; i < 5; ++i) {
    const v1::SendMessageResponse sent = MustSend("bob", "", "Bonjour");
    for (const std::string& id : {sent.session_id(), sent.user_message().id(),
                                  sent.assistant_message().id()}) {
      EXPECT_TRUE(IsUuidV4(id)) << id;
      ids.insert(id);
    }
  }
  EXPECT_THAT(ids, SizeIs(100 + 5 * 3));
}

TEST_F(ChatServiceTest, UnicodeRoundTripsByteForByte) {
  const std::string title =
      "Rendez-vous à Zürich 💘 東京で会いましょう — ça va ?";
  const std::string message =
      "J'ai rencontré quelqu'un 😍🇫🇷 : « 你好, 세계 » — Ñandú, Ærø, naïve…";
  const std::string reply = "Génial 🎉 ! 素晴らしい。Et après ?";

  const v1::Session created = MustCreate("ümlaut-用户-🙂", title);
  EXPECT_EQ(created.title(), title);
  server_.coach().ReplyWith(reply);
  const v1::SendMessageResponse sent =
      MustSend("ümlaut-用户-🙂", created.id(), message);
  EXPECT_EQ(sent.user_message().content(), message);
  EXPECT_EQ(sent.assistant_message().content(), reply);

  const v1::Session session = MustGet(created.id(), "ümlaut-用户-🙂");
  EXPECT_EQ(session.title(), title);
  ASSERT_THAT(session.messages(), SizeIs(2));
  EXPECT_EQ(session.messages(0).content(), message);
  EXPECT_EQ(session.messages(1).content(), reply);
  EXPECT_EQ(MustList("ümlaut-用户-🙂").at(0).last_message(), reply);

  const std::string renamed = "名前を変えた 🌸 Émilie";
  v1::Session updated;
  ASSERT_TRUE(
      IsOk(Update(created.id(), "ümlaut-用户-🙂", renamed, &updated)));
  EXPECT_EQ(updated.title(), renamed);
  EXPECT_EQ(MustHistory("ümlaut-用户-🙂").history(0).title(), renamed);
  // A new session titled from a short such message keeps it whole.
  const std::string short_message = "Premier rendez-vous 😍🇫🇷 « 你好 » Ærø";
  const std::string auto_id =
      MustSend("ümlaut-用户-🙂", "", short_message).session_id();
  EXPECT_EQ(MustGet(auto_id).title(), short_message);
}

}  // namespace
}  // namespace coach::testing
