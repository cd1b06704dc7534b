// no-rpc-stats: the ceiling for GET /api/user/stats with its work kept. A
// cpp-httplib server configured exactly like coach-proxy that does the
// request's real work itself — the domain's GetUserStats on the same SQLite
// file, the same proto conversion, the same protobuf JSON mapping — with no
// RPC hop at all. Between bare-http (no work) and our stack (work + a gRPC
// round trip to coach-server), it shows what the hop costs and what any
// design that keeps the work can reach on this machine.
#include <httplib.h>
#include <signal.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coach/v1/user.pb.h"
#include "proxy/proxy_config.h"
#include "proxy/transcoder.h"
#include "server/app/server_config.h"
#include "server/core/accounts.h"
#include "server/core/clock.h"
#include "server/rpc/proto_convert.h"
#include "storage/sqlite_store.h"
#include "tests/support/httplib_tuning.h"
#include "tools/bench/bench_store.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Listen host");
ABSL_FLAG(int, port, 0, "Listen port (0: any; printed on stdout)");
ABSL_FLAG(std::string, db_path, "coach.db", "SQLite file (coach-server's)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // As in coach-server and coach-proxy (see their main.cc).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  signal(SIGPIPE, SIG_IGN);

  const coach::Config config;
  auto store =
      coach::bench::OpenStore("no-rpc-stats", absl::GetFlag(FLAGS_db_path),
                              config, config.sqlite_reader_connections);
  if (store == nullptr) return 1;
  coach::RealClock clock;
  coach::Accounts accounts(config, *store, clock);

  coach::HttplibTuning proxy_config;
  const std::string listen =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  httplib::Server server;
  coach::TuneHttpServer(server, proxy_config);
  server.Get("/api/user/stats", [&](const httplib::Request& request,
                                    httplib::Response& response) {
    auto stats = accounts.GetUserStats(request.get_param_value("userId"));
    if (!stats.ok()) {
      response.status = 500;
      return;
    }
    coach::v1::GetUserStatsResponse message;
    coach::ToProto(*stats, message.mutable_stats());
    auto json = coach::proxy::ResponseToJson(message);
    if (!json.ok()) {
      response.status = 500;
      return;
    }
    response.set_content(*json, "application/json; charset=utf-8");
  });
  auto port =
      coach::BindHttpServer(server, listen, proxy_config.listen_backlog);
  if (!port.ok()) {
    std::fprintf(stderr, "no-rpc-stats: %s\n",
                 port.status().ToString().c_str());
    return 1;
  }
  std::printf("no-rpc-stats listening on %s (port %d)\n", listen.c_str(),
              *port);
  std::fflush(stdout);
  server.listen_after_bind();
  return 0;
}
