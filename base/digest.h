// Digests of bytes, through OpenSSL (already linked for random ids): never a
// hand-written hash. For fingerprints (is this the same request?), not for
// secrets.
#ifndef COACH_BASE_DIGEST_H_
#define COACH_BASE_DIGEST_H_

#include <string>

#include "absl/strings/string_view.h"

namespace coach {

// SHA-256 of `bytes`, as 64 lowercase hex digits. Thread-safe. Aborts if
// OpenSSL fails, which only a broken system does (as NewRandomId).
std::string Sha256Hex(absl::string_view bytes);

}  // namespace coach

#endif  // COACH_BASE_DIGEST_H_
