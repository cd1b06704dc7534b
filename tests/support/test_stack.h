// The whole stack in the test process: a TestServer (real coach-server on a
// loopback port, real SQLite file) behind a real CoachProxy on another
// loopback port, and a real HTTP client (cpp-httplib) talking to it.
#ifndef COACH_TESTS_SUPPORT_TEST_STACK_H_
#define COACH_TESTS_SUPPORT_TEST_STACK_H_

#include <httplib.h>

#include <memory>
#include <string>

#include "proxy/coach_proxy.h"
#include "tests/support/test_server.h"

namespace coach::testing {

inline proxy::ProxyConfig TestProxyConfig(int grpc_port) {
  proxy::ProxyConfig config;
  config.http_listen = "127.0.0.1:0";
  config.grpc_target = "127.0.0.1:" + std::to_string(grpc_port);
  return config;
}

// A keep-alive client to the proxy on `port`, with bounded timeouts. One per
// thread: a client is not shared between threads.
inline std::unique_ptr<httplib::Client> NewProxyClient(int port) {
  auto client = std::make_unique<httplib::Client>("127.0.0.1", port);
  client->set_connection_timeout(5);
  client->set_read_timeout(30);
  client->set_write_timeout(30);
  client->set_keep_alive(true);
  // Without it each POST waits ~40 ms (headers and body are two writes).
  client->set_tcp_nodelay(true);
  return client;
}

class TestStack {
 public:
  // `coach`: as TestServer's (null: its ScriptedCoach).
  explicit TestStack(Config server_config = TestConfig(),
                     Coach* coach = nullptr)
      : server_(std::move(server_config), coach) {
    if (!server_.start_error().ok()) {
      start_error_ = server_.start_error();
      return;
    }
    auto proxy =
        proxy::CoachProxy::Start(TestProxyConfig(server_.server().port()));
    if (!proxy.ok()) {
      start_error_ = proxy.status();
      return;
    }
    proxy_ = *std::move(proxy);
    client_ = NewClient();
  }

  const absl::Status& start_error() const { return start_error_; }
  TestServer& server() { return server_; }
  proxy::CoachProxy& proxy() { return *proxy_; }
  // A keep-alive client to the proxy, with bounded timeouts.
  httplib::Client& http() { return *client_; }
  std::unique_ptr<httplib::Client> NewClient() const {
    return NewProxyClient(proxy_->port());
  }
  int port() const { return proxy_->port(); }

 private:
  TestServer server_;
  absl::Status start_error_;
  std::unique_ptr<proxy::CoachProxy> proxy_;
  std::unique_ptr<httplib::Client> client_;
};

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_TEST_STACK_H_
