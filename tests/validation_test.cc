// Input validation, the first rule of every call: each validator's edges, the
// field it names (coach::FieldOf) and its French message.
#include "server/core/validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <optional>
#include <string>

#include "server/core/errors.h"

namespace coach {
namespace {

using ::testing::HasSubstr;

// `n` copies of `unit` (a code point, possibly multi-byte).
std::string Repeat(const std::string& unit, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += unit;
  return out;
}

// Asserts `status` is an INVALID_ARGUMENT naming `field`, in French, with the
// reason clients switch on.
void ExpectInvalid(const absl::Status& status, const std::string& field) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(FieldOf(status), field);
  EXPECT_EQ(ReasonOf(status), ErrorReason::kInvalidArgument);
  // French, naming the field by its JSON name with French quotes.
  EXPECT_THAT(std::string(status.message()), HasSubstr("« " + field + " »"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("champ"));
}

class ValidationTest : public ::testing::Test {
 protected:
  Limits limits_;
};

// --- userId ---------------------------------------------------------------

TEST_F(ValidationTest, UserIdAcceptsOrdinaryIds) {
  EXPECT_TRUE(ValidateUserId("user123", limits_).ok());
  EXPECT_TRUE(ValidateUserId("héloïse", limits_).ok());
}

TEST_F(ValidationTest, UserIdEmptyIsRequired) {
  const absl::Status status = ValidateUserId("", limits_);
  ExpectInvalid(status, "userId");
  EXPECT_THAT(std::string(status.message()), HasSubstr("requis"));
}

TEST_F(ValidationTest, UserIdBlankIsRefused) {
  ExpectInvalid(ValidateUserId("   ", limits_), "userId");
  ExpectInvalid(ValidateUserId("\t\n", limits_), "userId");
  // A no-break space, as a phone keyboard inserts, is blank too.
  ExpectInvalid(ValidateUserId("\xC2\xA0", limits_), "userId");
}

TEST_F(ValidationTest, UserIdLengthCountsCodePointsNotBytes) {
  const int max = limits_.max_user_id_length;
  EXPECT_TRUE(ValidateUserId(Repeat("a", max), limits_).ok());
  ExpectInvalid(ValidateUserId(Repeat("a", max + 1), limits_), "userId");
  // "é" is 2 bytes: max of them is 2*max bytes but max characters, accepted.
  EXPECT_TRUE(ValidateUserId(Repeat("é", max), limits_).ok());
  EXPECT_TRUE(ValidateUserId(Repeat("👋", max), limits_).ok());
  ExpectInvalid(ValidateUserId(Repeat("é", max + 1), limits_), "userId");
  const absl::Status too_long = ValidateUserId(Repeat("👋", max + 1), limits_);
  ExpectInvalid(too_long, "userId");
  EXPECT_THAT(std::string(too_long.message()), HasSubstr(std::to_string(max)));
}

TEST_F(ValidationTest, UserIdInvalidUtf8IsRefused) {
  ExpectInvalid(ValidateUserId("user\xFF", limits_), "userId");
  ExpectInvalid(ValidateUserId("\xC3", limits_), "userId");      // truncated
  ExpectInvalid(ValidateUserId("\xC0\xAF", limits_), "userId");  // overlong
}

// Look-alike ids must not be distinct users with fresh credits each.
TEST_F(ValidationTest, UserIdWithInvisibleCharactersIsRefused) {
  for (const std::string& id :
       {std::string("alice\u200d"), std::string("ali\u2060ce"),
        std::string("\ufeffalice"), std::string("alice\u200e"),
        std::string("ali\u2028ce"), std::string("ali\u2029ce"),
        std::string("ali\u0085ce"), std::string("alice\x7f")}) {
    ExpectInvalid(ValidateUserId(id, limits_), "userId");
  }
}

TEST_F(ValidationTest, UserIdMustBeNfc) {
  // "é" composed is fine; "e" + U+0301 (the same on screen) is refused.
  EXPECT_TRUE(ValidateUserId("zoé", limits_).ok());
  ExpectInvalid(ValidateUserId("alic"
                               "e\u0301",
                               limits_),
                "userId");
  EXPECT_TRUE(ValidateUserId("\u5f20\u4e09", limits_).ok());  // 张三
}

TEST_F(ValidationTest, MessageAndTitleRefuseControlCharactersButLineBreaks) {
  EXPECT_TRUE(ValidateMessage("Ligne 1\nLigne 2\r\n\tfin", limits_).ok());
  // Emoji sequences are joined by U+200D: prose keeps format characters.
  EXPECT_TRUE(
      ValidateMessage("Famille \U0001F468\u200d\U0001F469", limits_).ok());
  for (const std::string& bad :
       {std::string("avant\0après", 12), std::string("a\x1b[31mrouge"),
        std::string("a\x07"
                    "b"),
        std::string("a\u0085b")}) {
    ExpectInvalid(ValidateMessage(bad, limits_).status(), "message");
    ExpectInvalid(ValidateTitle(bad, limits_).status(), "title");
  }
}

TEST_F(ValidationTest, OptionalUserIdAllowsEmptyButNotBlankOrBad) {
  EXPECT_TRUE(ValidateOptionalUserId("", limits_).ok());
  EXPECT_TRUE(ValidateOptionalUserId("user123", limits_).ok());
  ExpectInvalid(ValidateOptionalUserId("  ", limits_), "userId");
  ExpectInvalid(ValidateOptionalUserId("\xFF", limits_), "userId");
  ExpectInvalid(ValidateOptionalUserId(
                    Repeat("a", limits_.max_user_id_length + 1), limits_),
                "userId");
}

// --- message ----------------------------------------------------------------

TEST_F(ValidationTest, MessageExactlyMaxIsAcceptedMaxPlusOneIsNot) {
  const int max = limits_.max_message_length;
  auto at_max = ValidateMessage(Repeat("é", max), limits_);
  ASSERT_TRUE(at_max.ok()) << at_max.status();
  EXPECT_EQ(*at_max, Repeat("é", max));
  ExpectInvalid(ValidateMessage(Repeat("é", max + 1), limits_).status(),
                "message");
  ExpectInvalid(ValidateMessage(Repeat("a", max + 1), limits_).status(),
                "message");
}

TEST_F(ValidationTest, MessageLengthIsMeasuredAfterTrimming) {
  // Surrounding spaces are not part of the message.
  const std::string padded =
      "  " + Repeat("a", limits_.max_message_length) + "\n";
  auto result = ValidateMessage(padded, limits_);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->size(), static_cast<size_t>(limits_.max_message_length));
}

TEST_F(ValidationTest, MessageIsReturnedTrimmed) {
  auto result = ValidateMessage("  \n Bonjour, ça va ?\t ", limits_);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, "Bonjour, ça va ?");
  // Inner whitespace is the user's: kept.
  auto inner = ValidateMessage(" a \n b ", limits_);
  ASSERT_TRUE(inner.ok());
  EXPECT_EQ(*inner, "a \n b");
}

TEST_F(ValidationTest, MessageEmptyBlankOrNotUtf8IsRefused) {
  const absl::Status empty = ValidateMessage("", limits_).status();
  ExpectInvalid(empty, "message");
  EXPECT_THAT(std::string(empty.message()), HasSubstr("requis"));
  const absl::Status blank = ValidateMessage(" \n\t ", limits_).status();
  ExpectInvalid(blank, "message");
  EXPECT_THAT(std::string(blank.message()), HasSubstr("vide"));
  ExpectInvalid(ValidateMessage("salut \xED\xA0\x80", limits_).status(),
                "message");
}

TEST_F(ValidationTest, MessageHonoursAConfiguredLimit) {
  limits_.max_message_length = 3;
  EXPECT_TRUE(ValidateMessage("abc", limits_).ok());
  ExpectInvalid(ValidateMessage("abcd", limits_).status(), "message");
}

// --- title ------------------------------------------------------------------

TEST_F(ValidationTest, TitleEdges) {
  const int max = limits_.max_title_length;
  auto at_max = ValidateTitle(Repeat("ç", max), limits_);
  ASSERT_TRUE(at_max.ok()) << at_max.status();
  ExpectInvalid(ValidateTitle(Repeat("ç", max + 1), limits_).status(), "title");
  ExpectInvalid(ValidateTitle("", limits_).status(), "title");
  ExpectInvalid(ValidateTitle("   ", limits_).status(), "title");
  ExpectInvalid(ValidateTitle("\xFF", limits_).status(), "title");
  auto trimmed = ValidateTitle("  Mon titre  ", limits_);
  ASSERT_TRUE(trimmed.ok());
  EXPECT_EQ(*trimmed, "Mon titre");
}

// --- sessionId --------------------------------------------------------------

TEST_F(ValidationTest, SessionIdEdges) {
  const int max = limits_.max_session_id_length;
  EXPECT_TRUE(ValidateSessionId(Repeat("f", max), limits_).ok());
  ExpectInvalid(ValidateSessionId(Repeat("f", max + 1), limits_), "sessionId");
  ExpectInvalid(ValidateSessionId("", limits_), "sessionId");
  ExpectInvalid(ValidateSessionId("  ", limits_), "sessionId");
  ExpectInvalid(ValidateSessionId("\xFF", limits_), "sessionId");
}

// --- history limit ----------------------------------------------------------

TEST_F(ValidationTest, HistoryLimitAbsentIsTheDefault) {
  auto limit = ValidateHistoryLimit(std::nullopt, limits_);
  ASSERT_TRUE(limit.ok());
  EXPECT_EQ(*limit, limits_.history_default_limit);
}

TEST_F(ValidationTest, HistoryLimitZeroOrNegativeIsRefused) {
  for (int bad : {0, -1, std::numeric_limits<int>::min()}) {
    const absl::Status status = ValidateHistoryLimit(bad, limits_).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(FieldOf(status), "limit");
    EXPECT_EQ(ReasonOf(status), ErrorReason::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), HasSubstr("« limit »"));
  }
}

TEST_F(ValidationTest, HistoryLimitIsKeptWithinRangeAndCappedAbove) {
  EXPECT_EQ(*ValidateHistoryLimit(1, limits_), 1);
  EXPECT_EQ(*ValidateHistoryLimit(limits_.history_max_limit, limits_),
            limits_.history_max_limit);
  EXPECT_EQ(*ValidateHistoryLimit(limits_.history_max_limit + 1, limits_),
            limits_.history_max_limit);
  EXPECT_EQ(*ValidateHistoryLimit(std::numeric_limits<int>::max(), limits_),
            limits_.history_max_limit);
}

}  // namespace
}  // namespace coach
