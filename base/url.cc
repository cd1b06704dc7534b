#include "base/url.h"

#include "absl/strings/str_cat.h"

namespace coach {

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

}  // namespace coach
