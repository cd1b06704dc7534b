// How coach-server's settings become its coach: the offline coach without
// any key; with COACH_AI_PROVIDERS_FILE, a FallbackCoach over the file's
// providers (in order, each with its circuit breaker); with OPENAI_API_KEY
// alone, that one OpenAI provider, as before the file existed.
#ifndef COACH_SERVER_APP_COACH_SETUP_H_
#define COACH_SERVER_APP_COACH_SETUP_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/app/server_config.h"
#include "server/coach/providers_file.h"
#include "server/core/coach.h"

namespace coach {

// The AI providers the settings name, in order: the file's (validated,
// keys read from the environment), or OPENAI_*'s one when its key is set,
// or none (offline). INVALID_ARGUMENT naming what is wrong in the file.
absl::StatusOr<std::vector<ProviderSettings>> AiProviders(const Config& config);

// The longest a reply can take: every provider's timeout, one after the
// other (a reply may fall over to each in turn); OPENAI_TIMEOUT offline.
absl::Duration LongestReply(const Config& config);

struct CoachSetup {
  std::unique_ptr<Coach> coach;
  // The coach's own metrics (Prometheus text), or null when it has none.
  std::function<std::string()> metrics;
  // For the start-up log line: which coach, no secret.
  std::string description;
};

absl::StatusOr<CoachSetup> MakeCoach(const Config& config);

}  // namespace coach

#endif  // COACH_SERVER_APP_COACH_SETUP_H_
