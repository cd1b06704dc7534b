// coach-server: the Coach AI Hub chat backend over gRPC. Wiring only:
// configuration, storage, coach, server, signals (SIGTERM/SIGINT stop it
// gracefully; SIGHUP re-reads the JWKS file, checks the TLS files, and never
// stops it).
#include <signal.h>

#include <cstdlib>
#include <optional>

#include <memory>
#include <thread>
#include "absl/synchronization/mutex.h"

#include "base/log.h"
#include "base/url.h"
#include "server/app/coach_server.h"
#include "server/app/coach_setup.h"
#include "server/app/metrics_endpoint.h"
#include "server/app/server_flags.h"
#include "server/app/storage_setup.h"
#include "server/core/clock.h"

namespace {

// Blocks SIGINT, SIGTERM and SIGHUP in every thread (gRPC's included, which
// inherit the mask), so that only the signal thread receives them, with
// sigwait. Done first: a SIGHUP (systemctl reload) while the server starts
// waits for that thread instead of taking its default action, which is to
// terminate the process.
sigset_t BlockHandledSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// SIGHUP: one log line, saying what was re-read or why not.
void Reload(coach::CoachServer& server) {
  absl::StatusOr<std::string> reloaded = server.Reload();
  if (!reloaded.ok()) {
    coach::LogError("SIGHUP: %s", reloaded.status().message());
  } else if (reloaded->empty()) {
    coach::LogInfo(
        "SIGHUP: nothing to re-read (no JWKS or TLS file); settings are "
        "read at start only (restart to change them)");
  } else {
    coach::LogInfo(
        "SIGHUP: re-read %s; settings are read at start only "
        "(restart to change them)",
        *reloaded);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex's deadlock
  // detector on: it records every lock in a global graph (GraphCycles shows
  // in profiles), and gRPC's own locks are absl::Mutex. That check belongs
  // in debug builds and tests (which keep it).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const sigset_t handled_signals = BlockHandledSignals();

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
  coach::LogInfo("coach-server listening on %s (port %d), database %s",
                 config.grpc_listen, (*server)->port(),
                 coach::DescribeStore(config));
  std::unique_ptr<coach::http::Server> metrics;
  if (!config.metrics_listen.empty()) {
    coach::CoachServer* const served = server->get();
    auto started =
        coach::StartMetricsEndpoint(config.metrics_listen, [served, &coach] {
          std::string text = served->RenderMetrics();
          if (coach->metrics) text += coach->metrics();
          return text;
        });
    if (!started.ok()) {
      coach::LogError("metrics: %s", started.status().ToString());
      return EXIT_FAILURE;
    }
    metrics = *std::move(started);
    coach::LogInfo("metrics: GET /metrics on %s (port %d)",
                   config.metrics_listen, metrics->port());
  }

  // SIGHUP reloads and the server goes on; SIGTERM or SIGINT stops it.
  std::thread signal_waiter([&] {
    for (;;) {
      int signal = 0;
      sigwait(&handled_signals, &signal);
      if (signal == SIGHUP) {
        Reload(**server);
        continue;
      }
      coach::LogInfo("signal %d: shutting down (grace %s)", signal,
                     absl::FormatDuration(config.shutdown_grace));
      (*server)->Shutdown(config.shutdown_grace);
      return;
    }
  });
  (*server)->Wait();
  signal_waiter.join();
  // Scraped until the end: the last numbers include the shutdown.
  if (metrics != nullptr) metrics->Shutdown(absl::ZeroDuration());
  coach::LogInfo("coach-server stopped");
  return EXIT_SUCCESS;
}
