#include "base/ids.h"

#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_format.h"

namespace coach {

std::string NewRandomId() {
  std::array<uint8_t, 16> b;
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) {
    std::fprintf(stderr, "FATAL: OpenSSL RAND_bytes failed\n");
    std::abort();
  }
  b[6] = (b[6] & 0x0F) | 0x40;  // version 4
  b[8] = (b[8] & 0x3F) | 0x80;  // RFC 4122 variant
  return absl::StrFormat(
      "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
      b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
      b[12], b[13], b[14], b[15]);
}

}  // namespace coach
