// A TCP relay on 127.0.0.1 for tests: forwards each accepted connection to
// a target port, both ways, on a thread of its own, until Freeze(): from
// then on it forwards nothing, closes nothing and connects nothing (new
// connections are accepted by the kernel and left silent), as a route
// whose far end vanished without a word (a host powered off, a NAT entry
// dropped).
//
// Thread-safety: every method may be called from any thread.
#ifndef COACH_TESTS_SUPPORT_TCP_RELAY_H_
#define COACH_TESTS_SUPPORT_TCP_RELAY_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/ports.h"

namespace coach::testing {

class TcpRelay {
 public:
  explicit TcpRelay(int target_port) : target_port_(target_port) {
    int port = 0;
    listen_fd_ = ListenOnLoopback(&port);
    if (listen_fd_ < 0) return;
    port_ = port;
    thread_ = std::thread([this] { Run(); });
  }

  ~TcpRelay() {
    stopping_.store(true);
    if (thread_.joinable()) thread_.join();
    for (auto& [a, b] : pairs_) {
      close(a);
      close(b);
    }
    for (int fd : silent_) close(fd);
    if (listen_fd_ >= 0) close(listen_fd_);
  }
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Connections accepted so far.
  int accepted() const { return accepted_.load(); }

  // Stops forwarding, for good; nothing is closed.
  void Freeze() { frozen_.store(true); }

 private:
  // One thread: accepts, and copies bytes between the two ends of each
  // pair while not frozen.
  void Run() {
    char buffer[16384];
    while (!stopping_.load()) {
      const bool frozen = frozen_.load();
      std::vector<pollfd> fds;
      fds.push_back({listen_fd_, POLLIN, 0});
      if (!frozen) {
        for (auto& [a, b] : pairs_) {
          fds.push_back({a, POLLIN, 0});
          fds.push_back({b, POLLIN, 0});
        }
      }
      if (poll(fds.data(), fds.size(), 10) <= 0) continue;
      if (fds[0].revents & POLLIN) Accept();
      if (frozen_.load()) continue;
      std::vector<bool> ended(pairs_.size(), false);
      for (size_t i = 1; i < fds.size(); ++i) {
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const size_t pair = (i - 1) / 2;
        if (ended[pair]) continue;
        auto& [a, b] = pairs_[pair];
        const int from = fds[i].fd;
        const int to = from == a ? b : a;
        const ssize_t n = recv(from, buffer, sizeof(buffer), 0);
        if (n <= 0) {  // one end left: so does the other
          ended[pair] = true;
          continue;
        }
        ssize_t sent = 0;
        while (sent < n) {
          const ssize_t m = send(to, buffer + sent, n - sent, MSG_NOSIGNAL);
          if (m <= 0) break;
          sent += m;
        }
      }
      for (size_t pair = pairs_.size(); pair-- > 0;) {
        if (!ended[pair]) continue;
        close(pairs_[pair].first);
        close(pairs_[pair].second);
        pairs_.erase(pairs_.begin() + static_cast<long>(pair));
      }
    }
  }

  void Accept() {
    const int client = accept(listen_fd_, nullptr, nullptr);
    if (client < 0) return;
    ++accepted_;
    if (frozen_.load()) {
      silent_.push_back(client);  // accepted, never answered
      return;
    }
    const int server = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(target_port_));
    if (server < 0 || connect(server, reinterpret_cast<sockaddr*>(&address),
                              sizeof(address)) != 0) {
      if (server >= 0) close(server);
      close(client);
      return;
    }
    const int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pairs_.emplace_back(client, server);
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> frozen_{false};
  std::atomic<int> accepted_{0};
  // The relay's thread only (and the destructor, after it has joined).
  std::vector<std::pair<int, int>> pairs_;
  std::vector<int> silent_;
  std::thread thread_;
};

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_TCP_RELAY_H_
