// coach-server: the Coach AI Hub chat backend over gRPC. Wiring only:
// configuration, storage, coach, server, signals (SIGTERM/SIGINT stop it
// gracefully; SIGHUP re-reads the JWKS file, checks the TLS files, and never
// stops it).
#include <signal.h>

#include <cstdlib>
#include <optional>

#include <memory>
#include <thread>

#include "base/log.h"
#include "base/process.h"
#include "base/url.h"
#include "server/app/coach_server.h"
#include "server/app/coach_setup.h"
#include "server/app/metrics_endpoint.h"
#include "server/app/server_flags.h"
#include "server/app/storage_setup.h"
#include "server/core/clock.h"

namespace {

// One line on how callers are known: a warning when they are not.
void LogAuthentication(const coach::Config& config) {
  if (config.auth == coach::AuthMode::kJwt) {
    coach::LogInfo("authentication: jwt (HS256 %s, RS256/ES256 %s)",
                   config.jwt.hs256_secret.empty() ? "off" : "on",
                   config.jwt.jwks_file.empty() ? "off" : config.jwt.jwks_file);
  } else {
    coach::LogWarning(
        "authentication: none (COACH_AUTH=none): any caller can act as any "
        "user by naming its userId; set COACH_AUTH=jwt before exposing this "
        "service");
  }
}

// GET /metrics on COACH_METRICS_LISTEN: the server's series, then the
// coach's. Null when the setting is empty; an error if it cannot listen.
absl::StatusOr<std::unique_ptr<coach::http::Server>> StartMetrics(
    const coach::Config& config, coach::CoachServer& server,
    const coach::CoachSetup& coach) {
  if (config.metrics_listen.empty()) return nullptr;
  auto started =
      coach::StartMetricsEndpoint(config.metrics_listen, [&server, &coach] {
        std::string text = server.RenderMetrics();
        if (coach.metrics) text += coach.metrics();
        return text;
      });
  if (!started.ok()) return started.status();
  coach::LogInfo("metrics: GET /metrics on %s (port %d)", config.metrics_listen,
                 (*started)->port());
  return started;
}

// Until SIGTERM or SIGINT, which shut the server down (its grace period);
// SIGHUP reloads and the server goes on. On a thread of its own.
void WaitForSignals(const sigset_t& handled_signals,
                    const coach::Config& config, coach::CoachServer& server) {
  for (;;) {
    int signal = 0;
    sigwait(&handled_signals, &signal);
    if (signal == SIGHUP) {
      coach::LogReload(server.Reload(),
                       "nothing to re-read (no JWKS or TLS file)");
      continue;
    }
    coach::LogInfo("signal %d: shutting down (grace %s)", signal,
                   absl::FormatDuration(config.shutdown_grace));
    server.Shutdown(config.shutdown_grace);
    return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const sigset_t handled_signals = coach::PrepareProcess();

  absl::StatusOr<coach::Startup<coach::Config>> startup =
      coach::LoadServerConfig(argc, argv);
  // A configuration error, --help or --version.
  if (std::optional<int> exit = coach::ExitBeforeRunning(startup)) return *exit;
  const coach::Config& config = startup->config;
  coach::ApplyLogOptions(config.log);

  auto store = coach::OpenStore(config);
  if (!store.ok()) {
    coach::LogError("storage: %s: %s", coach::DescribeStore(config),
                    store.status().ToString());
    return EXIT_FAILURE;
  }
  absl::StatusOr<coach::CoachSetup> coach = coach::MakeCoach(config);
  if (!coach.ok()) {
    coach::LogError("coach: %s", coach.status().ToString());
    return EXIT_FAILURE;
  }
  coach::LogInfo("coach: %s", coach->description);

  coach::RealClock clock;
  auto server =
      coach::CoachServer::Start(config, **store, *coach->coach, clock);
  if (!server.ok()) {
    coach::LogError("server: %s", server.status().ToString());
    return EXIT_FAILURE;
  }
  LogAuthentication(config);
  coach::LogInfo("coach-server listening on %s (port %d), database %s",
                 config.grpc_listen, (*server)->port(),
                 coach::DescribeStore(config));
  auto metrics = StartMetrics(config, **server, *coach);
  if (!metrics.ok()) {
    coach::LogError("metrics: %s", metrics.status().ToString());
    return EXIT_FAILURE;
  }

  std::thread signal_waiter(
      [&] { WaitForSignals(handled_signals, config, **server); });
  (*server)->Wait();
  signal_waiter.join();
  // Scraped until the end: the last numbers include the shutdown.
  if (*metrics != nullptr) (*metrics)->Shutdown(absl::ZeroDuration());
  coach::LogInfo("coach-server stopped");
  return EXIT_SUCCESS;
}
