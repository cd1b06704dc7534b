// The AI providers of COACH_AI_PROVIDERS_FILE: a JSON array of
// OpenAI-compatible chat-completions providers, in order of preference:
//   [{"name": "openai", "baseUrl": "https://api.openai.com/v1",
//     "apiKeyEnv": "OPENAI_API_KEY", "model": "gpt-4o-mini",
//     "maxTokens": 1000, "temperature": 0.7, "timeout": "45s"}, ...]
// name, baseUrl, apiKeyEnv and model are required; the key is read from the
// environment variable apiKeyEnv names (never written in the file). Every
// option the file does not set (maxTokens, temperature, timeout, and the
// retries, connect timeout, limits that it cannot) is the OPENAI_* setting's.
// Pure function of its inputs; thread-safe.
#ifndef COACH_SERVER_COACH_PROVIDERS_FILE_H_
#define COACH_SERVER_COACH_PROVIDERS_FILE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/coach/openai_options.h"

namespace coach {

struct ProviderSettings {
  std::string name;
  OpenAiOptions options;
};

// The value of an environment variable; nullopt when it is not set.
using GetEnv =
    absl::FunctionRef<std::optional<std::string>(const std::string& name)>;

// INVALID_ARGUMENT naming the file, the provider (its position and name)
// and the field, for: an unreadable file, not a JSON array of objects, none,
// a missing or empty required field, a name used twice, a base URL that is
// not http(s)://, a key variable unset or empty, an unknown field, a
// maxTokens not > 0, a temperature outside [0, 2], a timeout not a positive
// duration ("30s", or a number of seconds).
absl::StatusOr<std::vector<ProviderSettings>> ParseProvidersFile(
    absl::string_view path, absl::string_view contents,
    const OpenAiOptions& defaults, GetEnv getenv);

// ParseProvidersFile on the file at `path`.
absl::StatusOr<std::vector<ProviderSettings>> LoadProvidersFile(
    const std::string& path, const OpenAiOptions& defaults, GetEnv getenv);

}  // namespace coach

#endif  // COACH_SERVER_COACH_PROVIDERS_FILE_H_
