// URLs and connection strings as they may be logged: the password masked.
#ifndef COACH_BASE_URL_MASK_H_
#define COACH_BASE_URL_MASK_H_

#include <string>

#include "absl/strings/string_view.h"

namespace coach {

// `url` with the password of its userinfo replaced by "***":
//   postgresql://coach:s3cret@db:5432/coach -> postgresql://coach:***@db:5432/coach
// and, in a libpq key=value string or a URI's query, every `password=`
// value too. Everything else is kept (the user, the host: what an operator
// needs to see).
std::string MaskUrlPassword(absl::string_view url);

}  // namespace coach

#endif  // COACH_BASE_URL_MASK_H_
