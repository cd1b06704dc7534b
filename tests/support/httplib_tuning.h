// A cpp-httplib server tuned for load, for the tests' fakes (the local
// OpenAI) and the benchmark's bare baseline. coach-proxy itself serves on
// http::Server (http/server.h); cpp-httplib stays the tests' HTTP client and
// fake peer.
//
// cpp-httplib's defaults suit a small embedded server: Nagle on (each small
// response waits ~40 ms for the client's delayed ACK), keep-alive closed
// after 5 requests, a listen backlog of 5. These are raised here.
#ifndef COACH_TESTS_SUPPORT_HTTPLIB_TUNING_H_
#define COACH_TESTS_SUPPORT_HTTPLIB_TUNING_H_

#include <httplib.h>
#include <sys/socket.h>

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace coach {

struct HttplibTuning {
  // cpp-httplib serves a connection on one worker for its whole life.
  int worker_threads = 512;
  absl::Duration keep_alive_timeout = absl::Seconds(10);
  int keep_alive_max_requests = 100000;
  absl::Duration read_timeout = absl::Seconds(10);
  absl::Duration write_timeout = absl::Seconds(10);
  size_t max_body_bytes = 64 * 1024;
  int listen_backlog = 4096;
};

namespace httplib_tuning_internal {

inline absl::StatusOr<std::pair<std::string, int>> SplitHostPort(
    const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\" is not host:port"));
  }
  std::string host = address.substr(0, colon);
  // "[::]:3000" -> "::"
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, port);
}

// httplib takes timeouts as (seconds, microseconds).
template <typename Setter>
void SetTimeout(absl::Duration d, Setter&& set) {
  const int64_t micros = absl::ToInt64Microseconds(d);
  set(static_cast<time_t>(micros / 1000000),
      static_cast<time_t>(micros % 1000000));
}

}  // namespace httplib_tuning_internal

inline void TuneHttpServer(httplib::Server& server,
                           const HttplibTuning& config) {
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(
      static_cast<size_t>(config.keep_alive_max_requests));
  // Whole seconds only, rounded up: httplib takes no finer unit here.
  server.set_keep_alive_timeout(absl::ToInt64Seconds(
      absl::Ceil(config.keep_alive_timeout, absl::Seconds(1))));
  // cpp-httplib serves a connection on one worker for its whole life: size
  // the pool for concurrent connections, not for cores.
  const size_t threads = static_cast<size_t>(config.worker_threads);
  server.new_task_queue = [threads] {
    return new httplib::ThreadPool(threads);
  };
  httplib_tuning_internal::SetTimeout(
      config.read_timeout,
      [&](time_t s, time_t us) { server.set_read_timeout(s, us); });
  httplib_tuning_internal::SetTimeout(
      config.write_timeout,
      [&](time_t s, time_t us) { server.set_write_timeout(s, us); });
  // Bodies above the cap are refused (413) before they are read.
  server.set_payload_max_length(config.max_body_bytes);
}

inline absl::StatusOr<int> BindHttpServer(httplib::Server& server,
                                          const std::string& listen,
                                          int backlog) {
  auto address = httplib_tuning_internal::SplitHostPort(listen);
  if (!address.ok()) return address.status();
  const auto& [host, requested_port] = *address;

  // httplib offers no handle on its listening socket but this hook, called
  // when it creates the socket; it replaces httplib's default options, so it
  // sets SO_REUSEADDR as they do.
  int listen_fd = -1;
  server.set_socket_options([&listen_fd](int fd) {
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd = fd;
  });
  int port = -1;
  if (requested_port == 0) {
    port = server.bind_to_any_port(host);
  } else if (server.bind_to_port(host, requested_port)) {
    port = requested_port;
  }
  if (port <= 0 || listen_fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  }
  // A second listen() on a listening socket only changes its backlog.
  if (::listen(listen_fd, backlog) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot raise the listen backlog on ", listen));
  }
  return port;
}

}  // namespace coach

#endif  // COACH_TESTS_SUPPORT_HTTPLIB_TUNING_H_
