// coach-proxy's configuration from its flags and environment variables
// (flag > environment > default). Run `coach-proxy --help` for the list.
#ifndef COACH_PROXY_PROXY_FLAGS_H_
#define COACH_PROXY_PROXY_FLAGS_H_

#include "absl/status/statusor.h"
#include "proxy/proxy_config.h"

namespace coach::proxy {

absl::StatusOr<ProxyConfig> LoadProxyConfig(int argc, char** argv);

}  // namespace coach::proxy

#endif  // COACH_PROXY_PROXY_FLAGS_H_
