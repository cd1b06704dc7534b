#include "base/url.h"

#include "absl/strings/ascii.h"

#include "absl/strings/str_cat.h"

namespace coach {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool PercentDecode(absl::string_view in, bool plus_is_space, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return true;
}

bool ParseQuery(absl::string_view query,
                std::vector<std::pair<std::string, std::string>>& out) {
  out.clear();
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const absl::string_view pair = query.substr(0, amp);
    query = amp == absl::string_view::npos ? absl::string_view()
                                           : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string key, value;
    if (!PercentDecode(pair.substr(0, eq), true, key)) return false;
    if (eq != absl::string_view::npos &&
        !PercentDecode(pair.substr(eq + 1), true, value)) {
      return false;
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return true;
}

std::string WithoutUserinfo(absl::string_view url) {
  const size_t scheme_end = url.find("://");
  const size_t authority_start =
      scheme_end == absl::string_view::npos ? 0 : scheme_end + 3;
  const absl::string_view authority =
      url.substr(authority_start,
                 url.find_first_of("/?#", authority_start) - authority_start);
  // The last '@' ends the userinfo: a password may hold an unescaped '@'.
  const size_t at = authority.rfind('@');
  if (at == absl::string_view::npos) return std::string(url);
  return absl::StrCat(url.substr(0, authority_start), "***",
                      url.substr(authority_start + at));
}

namespace {

// Replaces the value after every "password=" (case-insensitive) up to the
// next separator: '&' in a URI's query, whitespace in key=value form (a
// quoted value up to its closing quote).
std::string MaskPasswordParameters(std::string text) {
  static const std::string kKey = "password=";
  std::string lower = absl::AsciiStrToLower(text);
  size_t from = 0;
  while ((from = lower.find(kKey, from)) != std::string::npos) {
    const size_t start = from + kKey.size();
    size_t end = start;
    if (end < text.size() && text[end] == '\'') {
      end = text.find('\'', end + 1);
      end = end == std::string::npos ? text.size() : end + 1;
    } else {
      while (end < text.size() && text[end] != '&' &&
             !absl::ascii_isspace(static_cast<unsigned char>(text[end]))) {
        ++end;
      }
    }
    text.replace(start, end - start, "***");
    lower.replace(start, end - start, "***");
    from = start + 3;
  }
  return text;
}

}  // namespace

std::string MaskUrlPassword(absl::string_view url) {
  std::string masked(url);
  const size_t scheme_end = masked.find("://");
  if (scheme_end != std::string::npos) {
    const size_t authority = scheme_end + 3;
    const size_t authority_end = masked.find_first_of("/?#", authority);
    const size_t at =
        masked.rfind('@', authority_end == std::string::npos ? std::string::npos
                                                             : authority_end);
    if (at != std::string::npos && at > authority) {
      const size_t colon = masked.find(':', authority);
      if (colon != std::string::npos && colon < at) {
        masked.replace(colon + 1, at - colon - 1, "***");
      }
    }
  }
  return MaskPasswordParameters(std::move(masked));
}

}  // namespace coach
