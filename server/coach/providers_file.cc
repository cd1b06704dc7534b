#include "server/coach/providers_file.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace coach {
namespace {

using json = nlohmann::json;

constexpr const char* kFields[] = {"name",   "baseUrl",   "apiKeyEnv",
                                   "model",  "maxTokens", "temperature",
                                   "timeout"};

// A non-empty string field, or an error naming it.
absl::StatusOr<std::string> RequiredText(const json& provider,
                                         const char* field) {
  const auto it = provider.find(field);
  if (it == provider.end() || !it->is_string() ||
      it->get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", field, "\" is required (a non-empty string)"));
  }
  return it->get<std::string>();
}

// "30s", "1m30s" or a number of seconds.
absl::StatusOr<absl::Duration> TimeoutOf(const json& value) {
  absl::Duration timeout;
  if (value.is_number()) {
    timeout = absl::Seconds(value.get<double>());
  } else if (!value.is_string() ||
             !absl::ParseDuration(value.get<std::string>(), &timeout)) {
    return absl::InvalidArgumentError(
        "\"timeout\" must be a duration (\"30s\") or a number of seconds");
  }
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("\"timeout\" must be positive");
  }
  return timeout;
}

// One provider's settings from its object, or what is wrong with it.
absl::StatusOr<ProviderSettings> ParseProvider(const json& provider,
                                               const OpenAiOptions& defaults,
                                               GetEnv getenv) {
  if (!provider.is_object()) {
    return absl::InvalidArgumentError("not a JSON object");
  }
  for (const auto& [field, value] : provider.items()) {
    bool known = false;
    for (const char* name : kFields) known = known || field == name;
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown field \"", field, "\""));
    }
  }
  ProviderSettings settings{.name = "", .options = defaults};
  OpenAiOptions& options = settings.options;
  absl::StatusOr<std::string> name = RequiredText(provider, "name");
  if (!name.ok()) return name.status();
  settings.name = *name;
  for (const auto& [field, target] :
       {std::pair<const char*, std::string*>{"baseUrl", &options.base_url},
        {"model", &options.model}}) {
    absl::StatusOr<std::string> text = RequiredText(provider, field);
    if (!text.ok()) return text.status();
    *target = *text;
  }
  if (!absl::StartsWith(options.base_url, "http://") &&
      !absl::StartsWith(options.base_url, "https://")) {
    return absl::InvalidArgumentError(
        "\"baseUrl\" must start with http:// or https://");
  }
  absl::StatusOr<std::string> key_env = RequiredText(provider, "apiKeyEnv");
  if (!key_env.ok()) return key_env.status();
  // A variable's name, or a key pasted here by mistake: the value is echoed
  // only when it reads as a conventional name (upper case), never a key.
  const auto name_char = [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  };
  if (key_env->empty() ||
      absl::ascii_isdigit(static_cast<unsigned char>((*key_env)[0])) ||
      !absl::c_all_of(*key_env, name_char)) {
    return absl::InvalidArgumentError(
        "\"apiKeyEnv\" must name an environment variable (letters, digits, "
        "_), not hold the key itself");
  }
  const bool echoable =
      key_env->size() <= 64 && absl::c_none_of(*key_env, [](char c) {
        return absl::ascii_islower(static_cast<unsigned char>(c));
      });
  std::optional<std::string> key = getenv(*key_env);
  if (!key.has_value() || key->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"apiKeyEnv\" names ", echoable ? *key_env : "a variable",
                     ", which is not set (or empty)"));
  }
  options.api_key = *std::move(key);
  if (const auto it = provider.find("maxTokens"); it != provider.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() <= 0 ||
        it->get<int64_t>() > 1000000) {
      return absl::InvalidArgumentError(
          "\"maxTokens\" must be a positive integer");
    }
    options.max_tokens = it->get<int>();
  }
  if (const auto it = provider.find("temperature"); it != provider.end()) {
    if (!it->is_number() || it->get<double>() < 0 || it->get<double>() > 2) {
      return absl::InvalidArgumentError(
          "\"temperature\" must be a number from 0 to 2");
    }
    options.temperature = it->get<double>();
  }
  if (const auto it = provider.find("timeout"); it != provider.end()) {
    absl::StatusOr<absl::Duration> timeout = TimeoutOf(*it);
    if (!timeout.ok()) return timeout.status();
    options.timeout = *timeout;
  }
  return settings;
}

}  // namespace

absl::StatusOr<std::vector<ProviderSettings>> ParseProvidersFile(
    absl::string_view path, absl::string_view contents,
    const OpenAiOptions& defaults, GetEnv getenv) {
  const auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("COACH_AI_PROVIDERS_FILE ", path, ": ", what));
  };
  const json document =
      json::parse(contents, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) return error("not valid JSON");
  if (!document.is_array() || document.empty()) {
    return error("must be a non-empty JSON array of providers");
  }
  std::vector<ProviderSettings> providers;
  std::set<std::string> names;
  for (size_t i = 0; i < document.size(); ++i) {
    absl::StatusOr<ProviderSettings> provider =
        ParseProvider(document[i], defaults, getenv);
    const std::string which = absl::StrCat(
        "provider ", i + 1,
        provider.ok() ? absl::StrCat(" (\"", provider->name, "\")") : "");
    if (!provider.ok()) {
      return error(absl::StrCat(which, ": ", provider.status().message()));
    }
    if (!names.insert(provider->name).second) {
      return error(absl::StrCat(which, ": the name is used twice"));
    }
    providers.push_back(*std::move(provider));
  }
  return providers;
}

absl::StatusOr<std::vector<ProviderSettings>> LoadProvidersFile(
    const std::string& path, const OpenAiOptions& defaults, GetEnv getenv) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("COACH_AI_PROVIDERS_FILE ", path, ": cannot be read"));
  }
  const std::string contents((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  return ParseProvidersFile(path, contents, defaults, getenv);
}

}  // namespace coach
