// Flags that fall back to environment variables. Each setting of our
// binaries is an absl flag with a default; an environment variable can set
// it, and the command line overrides both:  flag > environment > default.
#ifndef COACH_BASE_ENV_FLAGS_H_
#define COACH_BASE_ENV_FLAGS_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace coach {

struct EnvFlag {
  absl::string_view flag;  // "db_path"
  absl::string_view env;   // "COACH_DB_PATH"
};

// Applies the environment variables of `bindings` that are set, then parses
// the command line (which exits on --help or a bad flag). INVALID_ARGUMENT
// naming the variable if one does not parse. (absl's parse error quotes the
// value; only non-string flags can fail to parse, and secrets are strings.)
absl::Status ParseFlagsAndEnvironment(int argc, char** argv,
                                      const std::vector<EnvFlag>& bindings);

}  // namespace coach

#endif  // COACH_BASE_ENV_FLAGS_H_
