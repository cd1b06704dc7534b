// Request ids, shared by coach-proxy (which assigns them) and coach-server
// (which logs them): one rule, so that the two logs correlate and neither
// can be fed forged fields or control characters.
#ifndef COACH_BASE_REQUEST_ID_H_
#define COACH_BASE_REQUEST_ID_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace coach {

inline constexpr size_t kMaxRequestIdLength = 128;

// True for 1..kMaxRequestIdLength characters of [A-Za-z0-9._:-].
bool IsPlainRequestId(absl::string_view id);

}  // namespace coach

#endif  // COACH_BASE_REQUEST_ID_H_
