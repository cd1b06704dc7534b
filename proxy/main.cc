// coach-proxy: the documented REST API (port 3000), transcoded onto
// coach-server's RPCs from their google.api.http annotations.
#include <signal.h>
#include <sys/resource.h>

#include <cstdlib>
#include <optional>

#include "absl/synchronization/mutex.h"

#include "base/log.h"
#include "base/url.h"
#include "proxy/coach_proxy.h"
#include "proxy/proxy_flags.h"

int main(int argc, char** argv) {
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex's deadlock
  // detector on: it records every lock in a global graph (GraphCycles shows
  // in profiles), and gRPC's own locks are absl::Mutex. That check belongs
  // in debug builds and tests (which keep it).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Only the main thread takes SIGINT/SIGTERM/SIGHUP (threads inherit the
  // mask). Blocked first, so that a SIGHUP (systemctl reload) never takes
  // its default action, which is to terminate the process.
  sigset_t handled_signals;
  sigemptyset(&handled_signals);
  sigaddset(&handled_signals, SIGINT);
  sigaddset(&handled_signals, SIGTERM);
  sigaddset(&handled_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &handled_signals, nullptr);
  // A client that disconnects mid-response must not kill the process.
  signal(SIGPIPE, SIG_IGN);
  // Each connection is a descriptor and holds nothing else: allow as many as
  // the system lets this process have (the soft limit is often 1,024).
  if (rlimit files; getrlimit(RLIMIT_NOFILE, &files) == 0 &&
                    files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

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
    absl::StatusOr<std::string> reloaded = (*proxy)->Reload();
    if (!reloaded.ok()) {
      coach::LogError("SIGHUP: %s", reloaded.status().message());
    } else if (reloaded->empty()) {
      coach::LogInfo(
          "SIGHUP: coach-proxy has nothing to re-read (no TLS "
          "file); settings are read at start only (restart to "
          "change them)");
    } else {
      coach::LogInfo(
          "SIGHUP: re-read %s; settings are read at start only "
          "(restart to change them)",
          *reloaded);
    }
  }
  coach::LogInfo("signal %d: stopping (grace %s)", signal_number,
                 absl::FormatDuration(config.shutdown_grace));
  (*proxy)->Stop();
  coach::LogInfo("coach-proxy stopped");
  return EXIT_SUCCESS;
}
