// Request ids, shared by coach-proxy (which assigns them) and coach-server
// (which logs them): one rule, so that the two logs correlate and neither
// can be fed forged fields or control characters.
#ifndef COACH_BASE_REQUEST_ID_H_
#define COACH_BASE_REQUEST_ID_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace coach {

inline constexpr size_t kMaxRequestIdLength = 128;

// True for 1..kMaxRequestIdLength characters of [A-Za-z0-9._:-].
bool IsPlainRequestId(absl::string_view id);

// A fresh request id: "<16 hex digits>-<hex counter>", a random prefix drawn
// once per process then a counter, so ids never repeat within a process and
// processes do not collide. Not a secret and not unguessable (use
// NewRandomId() for that): it costs an atomic increment, not a call into
// the system's random generator, on every request. Thread-safe.
std::string NewRequestId();

}  // namespace coach

#endif  // COACH_BASE_REQUEST_ID_H_
