// coach-proxy: the documented REST API (port 3000), transcoded onto
// coach-server's RPCs from their google.api.http annotations.
#include <signal.h>

#include <cstdlib>
#include <optional>

#include "base/log.h"
#include "base/process.h"
#include "base/url.h"
#include "proxy/coach_proxy.h"
#include "proxy/proxy_flags.h"

int main(int argc, char** argv) {
  const sigset_t handled_signals = coach::PrepareProcess();

  auto startup = coach::proxy::LoadProxyConfig(argc, argv);
  // A configuration error, --help or --version.
  if (std::optional<int> exit = coach::ExitBeforeRunning(startup)) return *exit;
  const coach::proxy::ProxyConfig& config = startup->config;
  coach::ApplyLogOptions(config.log);
  auto proxy = coach::proxy::CoachProxy::Start(config);
  if (!proxy.ok()) {
    coach::LogError("coach-proxy: %s", proxy.status().ToString());
    return EXIT_FAILURE;
  }
  coach::LogInfo("coach-proxy listening on %s (port %d) -> coach-server %s",
                 config.http_listen, (*proxy)->port(),
                 coach::WithoutUserinfo(config.grpc_target));

  // SIGHUP: the TLS files re-read (new handshakes use them), one log line,
  // and the proxy goes on (its settings are read at start); SIGTERM or
  // SIGINT stops it.
  int signal_number = 0;
  for (;;) {
    sigwait(&handled_signals, &signal_number);
    if (signal_number != SIGHUP) break;
    coach::LogReload((*proxy)->Reload(),
                     "coach-proxy has nothing to re-read (no TLS file)");
  }
  coach::LogInfo("signal %d: stopping (grace %s)", signal_number,
                 absl::FormatDuration(config.shutdown_grace));
  (*proxy)->Stop();
  coach::LogInfo("coach-proxy stopped");
  return EXIT_SUCCESS;
}
