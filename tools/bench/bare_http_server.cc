// bare-http: the ceiling for coach-proxy. A cpp-httplib server configured
// exactly like coach-proxy (nodelay, keep-alive, worker pool) that answers
// every GET with fixed bytes: what our proxy would cost if transcoding, the
// gRPC hop and SQLite were free.
#include <httplib.h>
#include <signal.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "tests/support/httplib_tuning.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Listen host");
ABSL_FLAG(int, port, 0, "Listen port (0: any; printed on stdout)");
ABSL_FLAG(
    std::string, body,
    R"({"stats":{"totalChats":0,"totalMessages":0,"plan":"FREE","status":"ACTIVE","remainingCredits":5}})",
    "The bytes every GET answers");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  // cpp-httplib tuned for load (nodelay, keep-alive, backlog).
  coach::HttplibTuning config;
  const std::string listen =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  httplib::Server server;
  coach::TuneHttpServer(server, config);
  const std::string body = absl::GetFlag(FLAGS_body);
  server.Get(".*",
             [&body](const httplib::Request&, httplib::Response& response) {
               response.set_content(body, "application/json; charset=utf-8");
             });
  auto port = coach::BindHttpServer(server, listen, config.listen_backlog);
  if (!port.ok()) {
    std::fprintf(stderr, "bare-http: %s\n", port.status().ToString().c_str());
    return 1;
  }
  std::printf("bare-http listening on %s (port %d)\n", listen.c_str(), *port);
  std::fflush(stdout);
  server.listen_after_bind();
  return 0;
}
