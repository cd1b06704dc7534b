// UTF-8 helpers: lengths and cuts count code points, never split one.
#include "base/text.h"

#include <gtest/gtest.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <string>

namespace coach {
namespace {

TEST(TextTest, ValidUtf8) {
  EXPECT_TRUE(IsValidUtf8("Bonjour, ça va ? 👋"));
  EXPECT_FALSE(IsValidUtf8("\xC3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // beyond U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xFF"));
}

TEST(TextTest, NfcComposedAccentsButNotCombiningOnes) {
  EXPECT_TRUE(IsNfc("zoé"));
  EXPECT_TRUE(IsNfc("\u5f20\u4e09"));
  EXPECT_FALSE(IsNfc("zoe\u0301"));
  EXPECT_FALSE(IsNfc("\u212B"));  // the Angstrom sign: NFC is U+00C5
  EXPECT_TRUE(IsNfc(""));
}

// IsNfc answers ASCII without ICU: ICU must agree on every pair of ASCII
// characters (composition looks at a character and the next one).
TEST(TextTest, AsciiIsNfcAsIcuSays) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  ASSERT_TRUE(U_SUCCESS(status));
  for (int a = 0; a < 0x80; ++a) {
    for (int b = 0; b < 0x80; ++b) {
      const std::string text = {static_cast<char>(a), static_cast<char>(b)};
      const bool icu = nfc->isNormalized(
          icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), 2)),
          status);
      ASSERT_TRUE(U_SUCCESS(status));
      ASSERT_EQ(IsNfc(text), icu) << a << " " << b;
    }
  }
}

TEST(TextTest, CountsCodePointsNotBytes) {
  EXPECT_EQ(CountCodePoints("été"), 3u);
  EXPECT_EQ(CountCodePoints("👋👋"), 2u);
}

TEST(TextTest, TrimsAsciiAndUnicodeSpaces) {
  EXPECT_EQ(TrimSpaces(" \t\n salut \r\n"), "salut");
  EXPECT_EQ(TrimSpaces("\xC2\xA0salut\xE2\x80\xAF"), "salut");
  // U+FEFF (a BOM), U+2028 and U+2029 show nothing either.
  EXPECT_EQ(TrimSpaces("\xEF\xBB\xBF"), "");
  EXPECT_EQ(TrimSpaces("\xE2\x80\xA8salut\xE2\x80\xA9"), "salut");
  EXPECT_EQ(TrimSpaces("   "), "");
}

TEST(TextTest, ShortenKeepsShortTextAndCollapsesSpaces) {
  EXPECT_EQ(Shorten("  une\n\nligne   ici ", 60), "une ligne ici");
}

TEST(TextTest, ShortenCutsOnCodePointsWithEllipsis) {
  const std::string cut = Shorten("ééééééééé", 5);
  EXPECT_EQ(cut, "éééé…");
  EXPECT_EQ(CountCodePoints(cut), 5u);
  EXPECT_TRUE(IsValidUtf8(cut));
  const std::string emoji = Shorten("👋👋👋👋👋👋", 3);
  EXPECT_EQ(emoji, "👋👋…");
}

TEST(TextTest, ShortenNeverEndsWithASpaceBeforeTheEllipsis) {
  EXPECT_EQ(Shorten("abc def ghi", 5), "abc…");
}

}  // namespace
}  // namespace coach
