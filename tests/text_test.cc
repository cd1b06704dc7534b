// UTF-8 helpers: lengths and cuts count code points, never split one.
#include "base/text.h"

#include <gtest/gtest.h>

namespace coach {
namespace {

TEST(TextTest, ValidUtf8) {
  EXPECT_TRUE(IsValidUtf8("Bonjour, ça va ? 👋"));
  EXPECT_FALSE(IsValidUtf8("\xC3"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));  // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // beyond U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xFF"));
}

TEST(TextTest, CountsCodePointsNotBytes) {
  EXPECT_EQ(CountCodePoints("été"), 3u);
  EXPECT_EQ(CountCodePoints("👋👋"), 2u);
}

TEST(TextTest, TrimsAsciiAndUnicodeSpaces) {
  EXPECT_EQ(TrimSpaces(" \t\n salut \r\n"), "salut");
  EXPECT_EQ(TrimSpaces("\xC2\xA0salut\xE2\x80\xAF"), "salut");
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
