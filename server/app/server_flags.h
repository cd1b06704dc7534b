// coach-server's settings: one table (server_flags.cc) from which its flags,
// environment variables, checks and --help derive (see base/settings.h).
// Defaults live in the config structs only. Run `coach-server --help`.
#ifndef COACH_SERVER_APP_SERVER_FLAGS_H_
#define COACH_SERVER_APP_SERVER_FLAGS_H_

#include "absl/status/statusor.h"
#include "base/settings.h"
#include "server/app/server_config.h"

namespace coach {

// Reads argv and the environment into a checked Config, or, on --help or
// --version, the text to print before exiting 0. INVALID_ARGUMENT naming the
// flag or variable at fault otherwise.
absl::StatusOr<Startup<Config>> LoadServerConfig(int argc, char** argv);

}  // namespace coach

#endif  // COACH_SERVER_APP_SERVER_FLAGS_H_
