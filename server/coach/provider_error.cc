#include "server/coach/provider_error.h"

#include "absl/strings/cord.h"

namespace coach {
namespace {

constexpr char kRequestRefused[] = "coach.ai/request-refused";

}  // namespace

bool RefusesTheRequest(int http_status) {
  return http_status >= 400 && http_status < 500 && http_status != 408 &&
         http_status != 409 && http_status != 429;
}

absl::Status MarkRequestRefused(absl::Status status) {
  status.SetPayload(kRequestRefused, absl::Cord("1"));
  return status;
}

bool IsRequestRefused(const absl::Status& status) {
  return status.GetPayload(kRequestRefused).has_value();
}

}  // namespace coach
