// CoachServer: coach-server's gRPC server, wired and listening. Owns the
// domain (Chat, Accounts) and the RPC services; borrows the store, the coach
// and the clock, so that tests can run it in-process on a loopback port with
// a test clock, and main.cc with the real ones.
//
// Serves coach.v1.ChatService, coach.v1.UserService, gRPC server reflection
// and grpc.health.v1.Health (SERVING for "" and both services from Start
// until Shutdown). A thread of its own deletes expired idempotency keys;
// another gives the allocator's free memory back to the OS.
//
// Owns its metrics registry (base/metrics.h): the RPC metrics
// (server/rpc/rpc_metrics.h) and the sends' (server/core/core_metrics.h).
// A registry per server rather than a process-wide one: tests run several
// servers in one process, each with its own numbers, and nothing outside
// the server records. RenderMetrics() is what GET /metrics serves.
#ifndef COACH_SERVER_APP_COACH_SERVER_H_
#define COACH_SERVER_APP_COACH_SERVER_H_

#include <grpcpp/server.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "base/metrics.h"
#include "base/thread_pool.h"
#include "server/app/server_config.h"
#include "server/auth/jwt_verifier.h"
#include "server/core/accounts.h"
#include "server/core/chat.h"
#include "server/core/clock.h"
#include "server/core/coach.h"
#include "server/core/core_metrics.h"
#include "server/core/user_data.h"
#include "server/rpc/authenticator.h"
#include "server/rpc/chat_service.h"
#include "server/rpc/rpc_metrics.h"
#include "server/rpc/user_service.h"
#include "storage/store.h"

namespace coach {

class CoachServer {
 public:
  // Listens on config.grpc_listen (port 0: any free port; see port()).
  static absl::StatusOr<std::unique_ptr<CoachServer>> Start(
      const Config& config, Store& store, Coach& coach, const Clock& clock);
  ~CoachServer();

  // The port actually bound.
  int port() const { return port_; }

  // The server's metrics in the Prometheus text format 0.0.4. Any thread.
  // Then the allocator's figures, process-wide (base/allocator.h).
  std::string RenderMetrics() const;

  // Re-reads, now, what can change without a restart: the JWKS file when
  // COACH_AUTH=jwt uses one (JwtVerifier::ReloadJwks); and checks the TLS
  // files (gRPC's watcher serves them within COACH_GRPC_TLS_CHECK_INTERVAL:
  // gRPC 1.51 offers no way to make it read now). OK with what was
  // re-read, for a log line ("the JWKS file <path> (3 keys)"), or "" when
  // there is nothing to re-read; else the error, the keys read before
  // staying in use. coach-server calls it on SIGHUP. Any thread, while
  // calls are served.
  absl::StatusOr<std::string> Reload();

  // Reports NOT_SERVING, stops accepting calls, and lets in-flight calls
  // finish for up to `grace` before cancelling them. Idempotent.
  void Shutdown(absl::Duration grace);
  // Blocks until the server has shut down.
  void Wait();

 private:
  CoachServer(const Config& config, Store& store, Coach& coach,
              const Clock& clock, std::unique_ptr<JwtVerifier> verifier);
  // Start's steps. With COACH_GRPC_TLS_*: checks the files (CheckTlsFiles'
  // error for one that cannot serve) and logs what TLS is on.
  static absl::Status CheckGrpcTls(const Config& config);
  // Builds and starts the gRPC server on config_.grpc_listen (services,
  // interceptors, channel arguments); UNAVAILABLE if it cannot listen.
  absl::Status Listen();
  // Starts housekeepers_.
  void StartHousekeeping();
  // A thread that runs `work` every `interval` until stopping_.
  std::thread Every(absl::Duration interval, absl::AnyInvocable<void()> work);

  const Config config_;
  Coach& coach_;
  metrics::Registry registry_;
  CoreMetrics core_metrics_;
  RpcMetrics rpc_metrics_;
  Chat chat_;
  Accounts accounts_;
  UserData user_data_;
  // Null with COACH_AUTH=none.
  const std::unique_ptr<JwtVerifier> verifier_;
  const Authenticator authenticator_;
  // With PostgreSQL, the threads that run the calls' database work
  // (server/rpc/callback.h), as many as the connection pool has
  // connections; null with SQLite, whose work runs inline. Outlives
  // server_, whose Shutdown waits for the calls it runs.
  const std::unique_ptr<ThreadPool> store_threads_;
  ChatServiceImpl chat_service_;
  UserServiceImpl user_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  // Notified by Shutdown: the housekeeping threads stop.
  absl::Notification stopping_;
  // Every idempotency_purge_interval, expired idempotency keys deleted;
  // with a retention period, the conversations past it, every
  // retention_purge_interval; with a memory_release_interval, the
  // allocator's free pages given back to the OS. Until stopping_.
  std::vector<std::thread> housekeepers_;
};

}  // namespace coach

#endif  // COACH_SERVER_APP_COACH_SERVER_H_
