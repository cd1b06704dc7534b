// Text helpers for user input, UTF-8 aware: lengths and cuts count code
// points, so that "é" or an emoji is never split in the middle.
#ifndef COACH_BASE_TEXT_H_
#define COACH_BASE_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace coach {

// True if `text` is well-formed UTF-8 (no overlong forms, no surrogates).
bool IsValidUtf8(absl::string_view text);

// Number of code points in valid UTF-8 `text`.
size_t CountCodePoints(absl::string_view text);

// `text` without leading/trailing whitespace (ASCII and the Unicode spaces a
// phone keyboard inserts: NBSP, narrow NBSP, ideographic space...).
absl::string_view TrimSpaces(absl::string_view text);

// True if valid UTF-8 `text` is in Unicode Normalization Form C (what a
// keyboard types: "é" as one code point, not "e" + a combining accent).
bool IsNfc(absl::string_view text);

// True if valid UTF-8 `text` holds a control character (Unicode Cc) other
// than the ASCII ones listed in `allowed` ("\t\n", say).
bool HasControlCharacter(absl::string_view text,
                         absl::string_view allowed = "");

// True if valid UTF-8 `text` holds a character that shows nothing or breaks
// lines: controls (Cc), format characters (Cf: zero-width joiner, word
// joiner, byte-order mark, bidirectional marks) and the line and paragraph
// separators (Zl, Zp). Two identifiers that look alike must not differ by
// one of these.
bool HasInvisibleCharacter(absl::string_view text);

// `text` trimmed, inner runs of whitespace (newlines included) collapsed to
// one space, and cut to at most `max_code_points`, ending with "…" when cut.
std::string Shorten(absl::string_view text, size_t max_code_points);

}  // namespace coach

#endif  // COACH_BASE_TEXT_H_
