// OpenAiStream, the reader of a streamed chat completion, fed bytes as the
// network gives them: split anywhere, with every kind of line end.
#include "server/coach/openai_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "server/core/errors.h"
#include "tests/support/fake_openai.h"

namespace coach {
namespace {

using ::coach::testing::StreamChunk;
using ::coach::testing::StreamDone;
using ::coach::testing::StreamedReply;
using ::coach::testing::StreamFinish;
using ::coach::testing::StreamUsage;
using ::testing::ElementsAre;

constexpr size_t kLine = 64 << 10;
constexpr size_t kText = 1 << 20;

struct Outcome {
  std::vector<std::string> pieces;
  absl::Status fed;
  absl::StatusOr<CoachReply> reply;
};

// Feeds `parts` in turn, then finishes.
Outcome Read(const std::vector<std::string>& parts, size_t max_line = kLine) {
  OpenAiStream stream(max_line, kText);
  Outcome out;
  for (const std::string& part : parts) {
    out.fed = stream.Feed(
        part, [&](absl::string_view piece) { out.pieces.emplace_back(piece); });
    if (!out.fed.ok()) break;
  }
  out.reply = stream.Finish("default-model");
  return out;
}

std::string Join(const std::vector<std::string>& events) {
  return absl::StrJoin(events, "");
}

const std::vector<std::string> kPieces = {"Bonjour", " à", " vous, ",
                                          "ça va ? 😊"};

TEST(OpenAiStreamTest, ReadsPiecesUsageAndModelUntilDone) {
  const Outcome out = Read({Join(StreamedReply(kPieces))});
  ASSERT_TRUE(out.reply.ok()) << out.reply.status();
  EXPECT_EQ(out.pieces, kPieces);
  EXPECT_EQ(out.reply->content, "Bonjour à vous, ça va ? 😊");
  EXPECT_EQ(out.reply->model, "gpt-4o-mini-2024-07-18");
  ASSERT_TRUE(out.reply->usage.has_value());
  EXPECT_EQ(out.reply->usage->prompt_tokens, 42);
  EXPECT_EQ(out.reply->usage->completion_tokens, 17);
}

// Every split of the bytes in two, with \n, \r\n and \r line ends: the same
// pieces, the same reply.
TEST(OpenAiStreamTest, AnySplitOfTheBytesReadsTheSame) {
  for (const std::string end : {"\n", "\r\n", "\r"}) {
    std::string body = Join(StreamedReply(kPieces));
    if (end != "\n") body = absl::StrReplaceAll(body, {{"\n", end}});
    for (size_t cut = 0; cut <= body.size(); ++cut) {
      const Outcome out = Read({body.substr(0, cut), body.substr(cut)});
      ASSERT_TRUE(out.reply.ok()) << "cut at " << cut << " with line end "
                                  << end.size() << ": " << out.reply.status();
      ASSERT_EQ(out.pieces, kPieces) << "cut at " << cut;
      ASSERT_EQ(out.reply->content, "Bonjour à vous, ça va ? 😊");
    }
  }
}

TEST(OpenAiStreamTest, ByteByByteReadsTheSame) {
  const std::string body = Join(StreamedReply(kPieces));
  std::vector<std::string> bytes;
  for (char c : body) bytes.emplace_back(1, c);
  const Outcome out = Read(bytes);
  ASSERT_TRUE(out.reply.ok()) << out.reply.status();
  EXPECT_EQ(out.pieces, kPieces);
}

// A piece is given as soon as its event is complete, not at the end.
TEST(OpenAiStreamTest, GivesEachPieceWhenItsEventEnds) {
  OpenAiStream stream(kLine, kText);
  std::vector<std::string> pieces;
  const auto collect = [&](absl::string_view p) { pieces.emplace_back(p); };
  const std::string first = StreamChunk("Un");
  ASSERT_TRUE(stream.Feed(first.substr(0, first.size() - 1), collect).ok());
  EXPECT_TRUE(pieces.empty()) << "given before its blank line";
  ASSERT_TRUE(stream.Feed("\n", collect).ok());
  EXPECT_THAT(pieces, ElementsAre("Un"));
}

TEST(OpenAiStreamTest, CommentsAndOtherFieldsAreIgnored) {
  const Outcome out =
      Read({": keep-alive\n\nevent: message\nid: 1\nretry: 5\n" +
            StreamChunk("Oui") + StreamFinish() + StreamDone()});
  ASSERT_TRUE(out.reply.ok()) << out.reply.status();
  EXPECT_EQ(out.reply->content, "Oui");
  EXPECT_FALSE(out.reply->usage.has_value());
  EXPECT_EQ(out.reply->model, "gpt-4o-mini-2024-07-18");
}

TEST(OpenAiStreamTest, AnErrorObjectMidStreamIsUnavailableWithItsCode) {
  OpenAiStream stream(kLine, kText);
  std::vector<std::string> pieces;
  const auto collect = [&](absl::string_view p) { pieces.emplace_back(p); };
  ASSERT_TRUE(stream.Feed(StreamChunk("Début"), collect).ok());
  const absl::Status fed = stream.Feed(
      "data: " +
          testing::ErrorBody("Overloaded", "server_error", "overloaded") +
          "\n\n" + StreamChunk("jamais"),
      collect);
  EXPECT_TRUE(absl::IsUnavailable(fed)) << fed;
  EXPECT_EQ(stream.error_code(), "overloaded");
  EXPECT_THAT(pieces, ElementsAre("Début"));
  // Sticky: later bytes are not read, and the reply is the error.
  EXPECT_TRUE(absl::IsUnavailable(stream.Feed(StreamDone(), collect)));
  EXPECT_TRUE(absl::IsUnavailable(stream.Finish("m").status()));
}

TEST(OpenAiStreamTest, AStreamCutBeforeDoneIsUnavailable) {
  const Outcome out = Read({StreamChunk("Une") + StreamChunk(" réponse") +
                            StreamFinish() + StreamUsage()});
  EXPECT_TRUE(out.fed.ok());
  EXPECT_THAT(out.pieces, ElementsAre("Une", " réponse"));
  EXPECT_TRUE(absl::IsUnavailable(out.reply.status())) << out.reply.status();
  // Cut in the middle of the [DONE] line: still cut.
  EXPECT_TRUE(absl::IsUnavailable(
      Read({StreamChunk("Une") + "data: [DO"}).reply.status()));
  // [DONE] without its blank line at the very end: said.
  EXPECT_TRUE(Read({StreamChunk("Une") + "data: [DONE]\n"}).reply.ok());
}

TEST(OpenAiStreamTest, ContentFilterIsContentFiltered) {
  const Outcome out = Read(
      {StreamChunk("Je ") + StreamFinish("content_filter") + StreamDone()});
  EXPECT_EQ(ReasonOf(out.reply.status()), ErrorReason::kContentFiltered)
      << out.reply.status();
}

TEST(OpenAiStreamTest, ARefusalIsContentFiltered) {
  const Outcome out = Read(
      {"data: "
       "{\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"Non.\"}}]}\n\n" +
       StreamDone()});
  EXPECT_EQ(ReasonOf(out.reply.status()), ErrorReason::kContentFiltered);
}

TEST(OpenAiStreamTest, LengthStillGivesTheReply) {
  OpenAiStream stream(kLine, kText);
  ASSERT_TRUE(
      stream
          .Feed(StreamChunk("Coupé") + StreamFinish("length") + StreamDone(),
                [](absl::string_view) {})
          .ok());
  EXPECT_TRUE(stream.cut_at_max_tokens());
  EXPECT_EQ(stream.Finish("m")->content, "Coupé");
}

TEST(OpenAiStreamTest, ALineOverTheBoundIsInternalAndNotBuffered) {
  OpenAiStream stream(/*max_line_bytes=*/100, kText);
  const auto ignore = [](absl::string_view) {};
  EXPECT_TRUE(stream.Feed("data: " + std::string(90, 'x'), ignore).ok());
  EXPECT_TRUE(absl::IsInternal(stream.Feed(std::string(10, 'x'), ignore)));
  // Also when no single part is long.
  OpenAiStream slow(/*max_line_bytes=*/100, kText);
  absl::Status fed;
  for (int i = 0; i < 200 && fed.ok(); ++i) fed = slow.Feed("x", ignore);
  EXPECT_TRUE(absl::IsInternal(fed));
}

TEST(OpenAiStreamTest, NonsenseIsInternal) {
  EXPECT_TRUE(absl::IsInternal(Read({"data: pas du json\n\n"}).fed));
  EXPECT_TRUE(absl::IsInternal(Read({"data: {\"id\":1}\n\n"}).fed));
  EXPECT_TRUE(absl::IsInternal(
      Read({StreamFinish() + StreamUsage() + StreamDone()}).reply.status()))
      << "no text at all";
}

}  // namespace
}  // namespace coach
