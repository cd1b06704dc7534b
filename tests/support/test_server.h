// A real coach-server in the test process: SQLite file in a temporary
// directory, gRPC on a free loopback port, real stubs over a real channel.
// Only the clock and the coach are the test's.
#ifndef COACH_TESTS_SUPPORT_TEST_SERVER_H_
#define COACH_TESTS_SUPPORT_TEST_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "coach/v1/chat.grpc.pb.h"
#include "coach/v1/user.grpc.pb.h"
#include "server/app/coach_server.h"
#include "server/app/server_config.h"
#include "storage/sqlite_store.h"
#include "tests/support/scripted_coach.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_clock.h"

namespace coach::testing {

inline constexpr char kTestAdminToken[] = "test-admin-token";

// The config tests start from: defaults, loopback, any port, admin enabled.
inline Config TestConfig() {
  Config config;
  config.grpc_listen = "127.0.0.1:0";
  config.admin_token = kTestAdminToken;
  // Per-user limits out of the way of tests not about them (many sends and
  // sessions for one user within a frozen minute); limits_test lowers them.
  config.user_limits.send_rate_per_minute = 100000;
  config.user_limits.max_concurrent_sends_per_user = 1000;
  config.user_limits.session_create_rate_per_minute = 100000;
  return config;
}

class TestServer {
 public:
  // `coach`: the coach to serve with (it must outlive the server); null for
  // the ScriptedCoach that coach() returns.
  explicit TestServer(Config config = TestConfig(), Coach* coach = nullptr)
      : clock_(MidNovember2026()) {
    config.db_path = dir_.File("coach.db");
    config_ = config;
    auto store = SqliteStore::Open(
        SqliteOptions{.path = config_.db_path,
                      .busy_timeout_ms = config_.sqlite_busy_timeout_ms,
                      .reader_connections = config_.sqlite_reader_connections});
    if (!store.ok()) {
      start_error_ = store.status();
      return;
    }
    store_ = *std::move(store);
    auto server = CoachServer::Start(
        config_, *store_, coach != nullptr ? *coach : coach_, clock_);
    if (!server.ok()) {
      start_error_ = server.status();
      return;
    }
    server_ = *std::move(server);
    channel_ =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                            grpc::InsecureChannelCredentials());
    chat_ = v1::ChatService::NewStub(channel_);
    users_ = v1::UserService::NewStub(channel_);
  }

  // OK if the store opened and the server listens.
  const absl::Status& start_error() const { return start_error_; }

  v1::ChatService::Stub& chat() { return *chat_; }
  v1::UserService::Stub& users() { return *users_; }
  const std::shared_ptr<grpc::Channel>& channel() { return channel_; }
  TestClock& clock() { return clock_; }
  ScriptedCoach& coach() { return coach_; }
  Store& store() { return *store_; }
  CoachServer& server() { return *server_; }
  const Config& config() const { return config_; }
  const std::string& db_path() const { return config_.db_path; }

  // One SendMessage over the channel, with Context()'s deadline.
  grpc::Status Send(const std::string& user_id, const std::string& session_id,
                    const std::string& message,
                    v1::SendMessageResponse* out = nullptr);

 private:
  TempDir dir_;
  Config config_;
  TestClock clock_;
  ScriptedCoach coach_;
  absl::Status start_error_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<CoachServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ChatService::Stub> chat_;
  std::unique_ptr<v1::UserService::Stub> users_;
};

// A client context with a deadline, so that a broken server fails the test
// instead of hanging it.
inline std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(30));
  return context;
}

inline std::unique_ptr<grpc::ClientContext> AdminContext(
    const std::string& token = kTestAdminToken) {
  auto context = Context();
  context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

struct ErrorDetail {
  std::string reason;
  std::string domain;
  std::string field;
  // The google.rpc.RetryInfo's retry_delay, when there is one.
  std::optional<absl::Duration> retry_delay;
};

// The google.rpc.ErrorInfo (and RetryInfo) of a failed call (empty reason if
// absent).
ErrorDetail ErrorInfoOf(const grpc::Status& status);

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_TEST_SERVER_H_
