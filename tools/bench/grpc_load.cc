// grpc-load: a closed-loop gRPC load generator for coach-server. N client
// threads each issue one call at a time for a duration, over one channel,
// and the tool prints throughput and latency percentiles.
//   grpc-load --target=127.0.0.1:50051 --rpc=stats --concurrency=8
//   --duration=5s
// RPCs: stats (UserService.GetUserStats), send (ChatService.SendMessage as a
// fresh user each time, so that credits never run out), history, health.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coach/v1/chat.grpc.pb.h"
#include "coach/v1/user.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "coach-server address");
ABSL_FLAG(std::string, rpc, "stats",
          "stats | send | history | health (an empty unary call)");
ABSL_FLAG(int, concurrency, 8, "Calls in flight (one per client thread)");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "How long to run");
ABSL_FLAG(std::string, user, "bench-reader", "userId for stats and history");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(30), "Deadline per call");
ABSL_FLAG(
    int, calls_per_client, 0,
    "Stop each client after this many calls (0: run for --duration). "
    "--calls_per_client=1 --concurrency=N puts N calls in flight at once.");

namespace {

struct ThreadResult {
  std::vector<double> latencies_ms;
  long errors = 0;
};

double Percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t index =
      std::min(sorted.size() - 1, static_cast<size_t>(p * sorted.size()));
  return sorted[index];
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string rpc = absl::GetFlag(FLAGS_rpc);
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const absl::Duration deadline = absl::GetFlag(FLAGS_deadline);
  const std::string user = absl::GetFlag(FLAGS_user);
  const int calls_per_client = absl::GetFlag(FLAGS_calls_per_client);

  grpc::ChannelArguments args;
  auto channel = grpc::CreateCustomChannel(
      absl::GetFlag(FLAGS_target), grpc::InsecureChannelCredentials(), args);
  auto chat = coach::v1::ChatService::NewStub(channel);
  auto users = coach::v1::UserService::NewStub(channel);
  auto health = grpc::health::v1::Health::NewStub(channel);

  std::vector<ThreadResult> results(concurrency);
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      ThreadResult& result = results[t];
      for (long i = 0;
           calls_per_client > 0 ? i < calls_per_client : absl::Now() < end;
           ++i) {
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
        const absl::Time sent = absl::Now();
        grpc::Status status;
        if (rpc == "send") {
          coach::v1::SendMessageRequest request;
          request.set_user_id(
              absl::StrCat("load-", t, "-", i, "-", absl::ToUnixNanos(sent)));
          request.set_message("Comment gagner en confiance ?");
          coach::v1::SendMessageResponse response;
          status = chat->SendMessage(&context, request, &response);
        } else if (rpc == "history") {
          coach::v1::GetHistoryRequest request;
          request.set_user_id(user);
          request.set_limit(10);
          coach::v1::GetHistoryResponse response;
          status = chat->GetHistory(&context, request, &response);
        } else if (rpc == "health") {
          grpc::health::v1::HealthCheckRequest request;
          grpc::health::v1::HealthCheckResponse response;
          status = health->Check(&context, request, &response);
        } else {
          coach::v1::GetUserStatsRequest request;
          request.set_user_id(user);
          coach::v1::GetUserStatsResponse response;
          status = users->GetUserStats(&context, request, &response);
        }
        if (status.ok()) {
          result.latencies_ms.push_back(
              absl::ToDoubleMilliseconds(absl::Now() - sent));
        } else {
          ++result.errors;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);

  std::vector<double> all;
  long errors = 0;
  for (ThreadResult& r : results) {
    all.insert(all.end(), r.latencies_ms.begin(), r.latencies_ms.end());
    errors += r.errors;
  }
  std::sort(all.begin(), all.end());
  std::printf(
      "rpc=%s concurrency=%d ok=%zu errors=%ld req/s=%.0f p50_ms=%.2f "
      "p99_ms=%.2f max_ms=%.2f\n",
      rpc.c_str(), concurrency, all.size(), errors, all.size() / seconds,
      Percentile(all, 0.50), Percentile(all, 0.99),
      all.empty() ? 0 : all.back());
  return errors == 0 ? 0 : 1;
}
