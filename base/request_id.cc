#include "base/request_id.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace coach {

bool IsPlainRequestId(absl::string_view id) {
  return !id.empty() && id.size() <= kMaxRequestIdLength &&
         std::all_of(id.begin(), id.end(), [](char c) {
           return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                  c == '-' || c == '_' || c == '.' || c == ':';
         });
}

std::string NewRequestId() {
  static const uint64_t prefix = [] {
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device();
  }();
  static std::atomic<uint64_t> counter{0};
  return absl::StrCat(
      absl::Hex(prefix, absl::kZeroPad16), "-",
      absl::Hex(counter.fetch_add(1, std::memory_order_relaxed)));
}

}  // namespace coach
