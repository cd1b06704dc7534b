#include "server/app/coach_setup.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/url.h"
#include "server/coach/fallback_coach.h"
#include "server/coach/offline_coach.h"
#include "server/coach/openai_coach.h"

namespace coach {
namespace {

std::optional<std::string> GetProcessEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

}  // namespace

absl::StatusOr<std::vector<ProviderSettings>> AiProviders(
    const Config& config) {
  if (!config.ai_providers_file.empty()) {
    return LoadProvidersFile(config.ai_providers_file, config.openai,
                             GetProcessEnv);
  }
  if (config.openai.api_key.empty()) return std::vector<ProviderSettings>();
  return std::vector<ProviderSettings>{
      ProviderSettings{.name = "openai", .options = config.openai}};
}

absl::Duration LongestReply(const Config& config) {
  absl::StatusOr<std::vector<ProviderSettings>> providers = AiProviders(config);
  if (!providers.ok()) return config.openai.timeout;
  if (providers->empty()) {
    // The offline coach, paced: as long as its longest streamed reply.
    return std::max(config.openai.timeout,
                    OfflineCoach::LongestReply(config.offline_stream_delay));
  }
  absl::Duration longest;
  for (const ProviderSettings& provider : *providers) {
    longest += provider.options.timeout;
  }
  return longest;
}

absl::StatusOr<CoachSetup> MakeCoach(const Config& config) {
  absl::StatusOr<std::vector<ProviderSettings>> providers = AiProviders(config);
  if (!providers.ok()) return providers.status();
  if (providers->empty()) {
    return CoachSetup{
        .coach = std::make_unique<OfflineCoach>(config.offline_stream_delay),
        .metrics = nullptr,
        .description = "offline (OPENAI_API_KEY is not set)"};
  }
  const auto describe = [](const ProviderSettings& provider) {
    return absl::StrCat(provider.name, ": ", provider.options.model, " at ",
                        WithoutUserinfo(provider.options.base_url),
                        " (timeout ",
                        absl::FormatDuration(provider.options.timeout), ", ",
                        provider.options.max_retries, " retries)");
  };
  if (config.ai_providers_file.empty()) {
    absl::StatusOr<std::unique_ptr<OpenAiCoach>> openai =
        OpenAiCoach::Create(providers->front().options);
    if (!openai.ok()) return openai.status();
    return CoachSetup{
        .coach = *std::move(openai),
        .metrics = nullptr,
        .description = absl::StrCat("OpenAI ", describe(providers->front()))};
  }
  std::vector<FallbackCoach::Provider> members;
  std::vector<std::string> described;
  for (const ProviderSettings& provider : *providers) {
    absl::StatusOr<std::unique_ptr<OpenAiCoach>> openai =
        OpenAiCoach::Create(provider.options);
    if (!openai.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "AI provider ", provider.name, ": ", openai.status().message()));
    }
    members.push_back(FallbackCoach::Provider{.name = provider.name,
                                              .coach = *std::move(openai)});
    described.push_back(describe(provider));
  }
  auto fallback =
      std::make_unique<FallbackCoach>(std::move(members), config.ai_breaker);
  FallbackCoach* const metrics = fallback.get();
  return CoachSetup{.coach = std::move(fallback),
                    .metrics = [metrics] { return metrics->RenderMetrics(); },
                    .description = absl::StrCat(
                        "providers in order (breaker: ",
                        config.ai_breaker.failures, " failures, cooldown ",
                        absl::FormatDuration(config.ai_breaker.cooldown),
                        "): ", absl::StrJoin(described, "; "))};
}

}  // namespace coach
