// coach-server's configuration from its flags and environment variables
// (see env_flags.h). Run `coach-server --help` for the list.
#ifndef COACH_SERVER_APP_SERVER_FLAGS_H_
#define COACH_SERVER_APP_SERVER_FLAGS_H_

#include "absl/status/statusor.h"
#include "server/app/server_config.h"

namespace coach {

// Parses argv and the environment into a Config, and checks it.
absl::StatusOr<Config> LoadServerConfig(int argc, char** argv);

// Checks limits are positive and consistent; INVALID_ARGUMENT otherwise.
absl::Status CheckConfig(const Config& config);

}  // namespace coach

#endif  // COACH_SERVER_APP_SERVER_FLAGS_H_
