// URLs: percent-decoding and query strings (the HTTP front's targets,
// gRPC's grpc-message), and what may be printed of a URL that may carry
// credentials. Pure functions: safe from any thread.
#ifndef COACH_BASE_URL_H_
#define COACH_BASE_URL_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace coach {

// Decodes %XX escapes (and '+' as a space when `plus_is_space`) into `out`;
// false on a truncated or non-hex escape.
bool PercentDecode(absl::string_view in, bool plus_is_space, std::string& out);

// "a=1&b=x%20y" -> {{"a","1"},{"b","x y"}}; false on a bad escape.
bool ParseQuery(absl::string_view query,
                std::vector<std::pair<std::string, std::string>>& out);

// `url` with its userinfo ("user:password@" in "scheme://user:password@host/")
// replaced by "***@", for a log line or an error message: a base URL or a
// proxy given in the environment may carry credentials. The rest is kept
// as is (the host and path say where a process sends). A URL without "://"
// is taken as an authority first ("user:pw@proxy:3128", which curl accepts).
// Text that is not a URL comes back unchanged unless it holds an '@' before
// its first '/', '?' or '#' (then masked too: better too much than a leak).
std::string WithoutUserinfo(absl::string_view url);

// `url` with the password of its userinfo replaced by "***":
//   postgresql://coach:s3cret@db:5432/coach ->
//   postgresql://coach:***@db:5432/coach
// and, in a libpq key=value string or a URI's query, every `password=`
// value too. Everything else is kept (the user, the host: what an operator
// needs to see).
std::string MaskUrlPassword(absl::string_view url);

}  // namespace coach

#endif  // COACH_BASE_URL_H_
