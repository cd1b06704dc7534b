#include "base/text.h"

#include <algorithm>
#include <cstdint>

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"

namespace coach {
namespace {

// Length of the UTF-8 sequence starting at text[i], or 0 if malformed.
size_t SequenceLength(absl::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[i + k]); };
  const auto continuation = [&](size_t k) {
    return i + k < text.size() && (byte(k) & 0xC0) == 0x80;
  };
  const uint8_t b0 = byte(0);
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) return continuation(1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (!continuation(1) || !continuation(2)) return 0;
    if (b0 == 0xE0 && byte(1) < 0xA0) return 0;   // overlong
    if (b0 == 0xED && byte(1) >= 0xA0) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (!continuation(1) || !continuation(2) || !continuation(3)) return 0;
    if (b0 == 0xF0 && byte(1) < 0x90) return 0;   // overlong
    if (b0 == 0xF4 && byte(1) >= 0x90) return 0;  // beyond U+10FFFF
    return 4;
  }
  return 0;
}

// Length of the whitespace sequence at text[i], or 0 if none.
size_t SpaceLength(absl::string_view text, size_t i) {
  static constexpr absl::string_view kUnicodeSpaces[] = {
      "\xC2\xA0",      // U+00A0 no-break space
      "\xE2\x80\xAF",  // U+202F narrow no-break space
      "\xE2\x80\x89",  // U+2009 thin space
      "\xE2\x80\x8B",  // U+200B zero-width space
      "\xE2\x80\xA8",  // U+2028 line separator
      "\xE2\x80\xA9",  // U+2029 paragraph separator
      "\xE3\x80\x80",  // U+3000 ideographic space
      "\xEF\xBB\xBF",  // U+FEFF zero-width no-break space (BOM)
  };
  const char c = text[i];
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
      c == '\v') {
    return 1;
  }
  for (absl::string_view space : kUnicodeSpaces) {
    if (text.substr(i, space.size()) == space) return space.size();
  }
  return 0;
}

// True if some code point of valid UTF-8 `text` satisfies `test`.
bool AnyCodePoint(absl::string_view text,
                  absl::FunctionRef<bool(UChar32)> test) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const int32_t length = static_cast<int32_t>(text.size());
  for (int32_t i = 0; i < length;) {
    UChar32 c;
    U8_NEXT(bytes, i, length, c);
    if (c >= 0 && test(c)) return true;
  }
  return false;
}

}  // namespace

bool IsNfc(absl::string_view text) {
  // ASCII is NFC (no ASCII character decomposes or composes with another):
  // user ids are checked on every request, and most are ASCII.
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return static_cast<uint8_t>(c) < 0x80; })) {
    return true;
  }
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) return false;
  const icu::UnicodeString unicode = icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  const bool normalized = nfc->isNormalized(unicode, status);
  return U_SUCCESS(status) && normalized;
}

bool HasControlCharacter(absl::string_view text, absl::string_view allowed) {
  return AnyCodePoint(text, [&](UChar32 c) {
    return u_charType(c) == U_CONTROL_CHAR &&
           !(c < 0x80 &&
             allowed.find(static_cast<char>(c)) != absl::string_view::npos);
  });
}

bool HasInvisibleCharacter(absl::string_view text) {
  return AnyCodePoint(text, [](UChar32 c) {
    switch (u_charType(c)) {
      case U_CONTROL_CHAR:
      case U_FORMAT_CHAR:
      case U_LINE_SEPARATOR:
      case U_PARAGRAPH_SEPARATOR: return true;
      default: return false;
    }
  });
}

bool IsValidUtf8(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = SequenceLength(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

size_t CountCodePoints(absl::string_view text) {
  size_t count = 0;
  for (char c : text) {
    if ((static_cast<uint8_t>(c) & 0xC0) != 0x80) ++count;
  }
  return count;
}

absl::string_view TrimSpaces(absl::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t n = SpaceLength(text, begin);
    if (n == 0) break;
    begin += n;
  }
  size_t end = text.size();
  while (end > begin) {
    // Step back one code point and test it.
    size_t start = end - 1;
    while (start > begin &&
           (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) {
      --start;
    }
    if (SpaceLength(text, start) != end - start) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

std::string Shorten(absl::string_view text, size_t max_code_points) {
  static constexpr absl::string_view kEllipsis = "…";
  text = TrimSpaces(text);
  std::string out;
  out.reserve(std::min(text.size(), max_code_points * 4));
  size_t code_points = 0;
  bool in_space = false;
  for (size_t i = 0; i < text.size();) {
    if (const size_t space = SpaceLength(text, i); space > 0) {
      in_space = true;
      i += space;
      continue;
    }
    const size_t n = std::max<size_t>(1, SequenceLength(text, i));
    const size_t needed = (in_space ? 1 : 0) + 1;
    if (code_points + needed > max_code_points) {
      // Leave room for the ellipsis within the limit.
      while (code_points >= max_code_points && !out.empty()) {
        size_t start = out.size() - 1;
        while (start > 0 && (static_cast<uint8_t>(out[start]) & 0xC0) == 0x80) {
          --start;
        }
        out.resize(start);
        --code_points;
      }
      const absl::string_view kept = TrimSpaces(out);
      out.resize(kept.size());
      absl::StrAppend(&out, kEllipsis);
      return out;
    }
    if (in_space) {
      out.push_back(' ');
      ++code_points;
      in_space = false;
    }
    absl::StrAppend(&out, text.substr(i, n));
    ++code_points;
    i += n;
  }
  return out;
}

}  // namespace coach
