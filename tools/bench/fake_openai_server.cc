// fake-openai: a local OpenAI-compatible chat-completions server that answers
// every request after a fixed delay. For benchmarks and local development
// without a key or network:
//   fake-openai --host=127.0.0.1 --port=8089 --delay=2s &
//   OPENAI_API_KEY=fake OPENAI_BASE_URL=http://127.0.0.1:8089/v1 coach-server
#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "proxy/proxy_config.h"
#include "tests/support/httplib_tuning.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Listen host");
ABSL_FLAG(int, port, 8089, "Listen port (0: any; printed on stdout)");
ABSL_FLAG(absl::Duration, delay, absl::Seconds(2), "Delay before each answer");
ABSL_FLAG(int, threads, 2048,
          "Worker threads: the most requests waiting out their delay at once");

ABSL_FLAG(int, stream_pieces, 10,
          "A streamed answer (\"stream\": true) comes in this many pieces, "
          "spread over --delay; the first piece starts with t=<unix "
          "microseconds> <space>, when it was written");

namespace {

std::string Chunk(const nlohmann::json& delta, const nlohmann::json& finish) {
  const nlohmann::json chunk = {
      {"id", "chatcmpl-fake"},
      {"object", "chat.completion.chunk"},
      {"model", "fake"},
      {"choices",
       {{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}}},
  };
  return "data: " + chunk.dump() + "\n\n";
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  const absl::Duration delay = absl::GetFlag(FLAGS_delay);
  const int threads = absl::GetFlag(FLAGS_threads);
  std::atomic<long> served{0};

  // Tuned like coach-proxy (nodelay, keep-alive, backlog), with a worker
  // per request waiting out its delay.
  coach::HttplibTuning tuning;
  tuning.worker_threads = threads;
  tuning.read_timeout = absl::Seconds(60);
  tuning.write_timeout = absl::Seconds(60);
  httplib::Server server;
  coach::TuneHttpServer(server, tuning);
  server.Post("/v1/chat/completions", [&](const httplib::Request& request,
                                          httplib::Response& response) {
    const auto body = nlohmann::json::parse(request.body, nullptr, false);
    if (!body.is_object() || !body.contains("messages")) {
      response.status = 400;
      response.set_content(
          R"({"error":{"message":"bad request","type":"invalid_request_error","code":null,"param":null}})",
          "application/json");
      return;
    }
    if (body.value("stream", false)) {
      const int pieces = std::max(1, absl::GetFlag(FLAGS_stream_pieces));
      response.set_chunked_content_provider(
          "text/event-stream",
          [delay, pieces, &served](size_t, httplib::DataSink& sink) {
            for (int i = 0; i < pieces; ++i) {
              std::string text = "morceau " + std::to_string(i) + ". ";
              if (i == 0) {
                text = "t=" + std::to_string(absl::ToUnixMicros(absl::Now())) +
                       " " + text;
              }
              const std::string chunk = Chunk({{"content", text}}, nullptr);
              if (!sink.write(chunk.data(), chunk.size())) return false;
              absl::SleepFor(delay / pieces);
            }
            const std::string tail =
                Chunk(nlohmann::json::object(), "stop") + "data: " +
                nlohmann::json{{"id", "chatcmpl-fake"},
                               {"object", "chat.completion.chunk"},
                               {"model", "fake"},
                               {"choices", nlohmann::json::array()},
                               {"usage",
                                {{"prompt_tokens", 100},
                                 {"completion_tokens", 20},
                                 {"total_tokens", 120}}}}
                    .dump() +
                "\n\ndata: [DONE]\n\n";
            sink.write(tail.data(), tail.size());
            sink.done();
            ++served;
            return true;
          });
      return;
    }
    absl::SleepFor(delay);
    const nlohmann::json answer = {
        {"id", "chatcmpl-fake"},
        {"object", "chat.completion"},
        {"model", body.value("model", "fake")},
        {"choices",
         {{{"index", 0},
           {"message",
            {{"role", "assistant"},
             {"content",
              "Réponse de test du coach. Qu'aimerais-tu explorer ensuite ?"}}},
           {"finish_reason", "stop"}}}},
        {"usage",
         {{"prompt_tokens", 100},
          {"completion_tokens", 20},
          {"total_tokens", 120}}},
    };
    response.set_content(answer.dump(), "application/json");
    ++served;
  });

  auto bound = coach::BindHttpServer(
      server,
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port)),
      tuning.listen_backlog);
  if (!bound.ok()) {
    std::fprintf(stderr, "fake-openai: %s\n",
                 bound.status().ToString().c_str());
    return 1;
  }
  const int port = *bound;
  const std::string host = absl::GetFlag(FLAGS_host);
  std::printf("fake-openai listening on %s (port %d), delay %s\n", host.c_str(),
              port, absl::FormatDuration(delay).c_str());
  std::fflush(stdout);
  server.listen_after_bind();
  return 0;
}
