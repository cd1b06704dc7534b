// coach-proxy's settings: one table (proxy_flags.cc) from which its flags,
// environment variables, checks and --help derive (see base/settings.h).
// Defaults live in ProxyConfig only. Run `coach-proxy --help`.
#ifndef COACH_PROXY_PROXY_FLAGS_H_
#define COACH_PROXY_PROXY_FLAGS_H_

#include "absl/status/statusor.h"
#include "base/settings.h"
#include "proxy/proxy_config.h"

namespace coach::proxy {

// Reads argv and the environment into a checked ProxyConfig, or, on --help
// or --version, the text to print before exiting 0. INVALID_ARGUMENT naming
// the flag or variable at fault otherwise.
absl::StatusOr<Startup<ProxyConfig>> LoadProxyConfig(int argc, char** argv);

// The rules that involve two settings or more (LoadProxyConfig applies
// them; so does CoachProxy::Start): CORS credentials only with an explicit
// origin list and named headers. INVALID_ARGUMENT naming the settings.
absl::Status CrossCheckProxyConfig(const ProxyConfig& config);

}  // namespace coach::proxy

#endif  // COACH_PROXY_PROXY_FLAGS_H_
