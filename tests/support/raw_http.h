// A raw TCP client for the tests that must speak malformed or partial HTTP
// (framing, header floods, clients that drip or hang up), which a real HTTP
// client refuses to send. Every read is bounded by a receive timeout.
#ifndef COACH_TESTS_SUPPORT_RAW_HTTP_H_
#define COACH_TESTS_SUPPORT_RAW_HTTP_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>

namespace coach::testing {

class RawConnection {
 public:
  // Connects to 127.0.0.1:`port`; reads wait at most `read_timeout_s`.
  // `source`: the client's address (e.g. "127.0.0.2": every 127.0.0.0/8
  // address is loopback on Linux), for a server that tells clients apart by
  // address; empty: the kernel's choice (127.0.0.1). `receive_buffer`: the
  // socket's SO_RCVBUF in bytes, set before connecting (a client that
  // does not read then shuts its window soon); 0: the default.
  explicit RawConnection(int port, int read_timeout_s = 10,
                         const std::string& source = "", int receive_buffer = 0)
      : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    if (fd_ < 0) return;
    timeval timeout{.tv_sec = read_timeout_s, .tv_usec = 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    int yes = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    if (receive_buffer > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer,
                 sizeof(receive_buffer));
    }
    if (!source.empty()) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      if (inet_pton(AF_INET, source.c_str(), &local.sin_addr) != 1 ||
          bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
        return;
      }
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port));
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address),
                         sizeof(address)) == 0;
  }
  ~RawConnection() { Close(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return connected_; }

  // False once the peer has closed or reset the connection.
  bool Send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n =
          send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // Everything until the peer closes (or the timeout).
  std::string ReadAll() {
    std::string answer;
    char buffer[4096];
    ssize_t n;
    while ((n = recv(fd_, buffer, sizeof(buffer), 0)) > 0) {
      answer.append(buffer, static_cast<size_t>(n));
    }
    return answer;
  }

  // Reads until `marker` has arrived (or the peer closes, or the timeout);
  // returns what was read.
  std::string ReadUntil(const std::string& marker) {
    char buffer[4096];
    while (pending_.find(marker) == std::string::npos) {
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      pending_.append(buffer, static_cast<size_t>(n));
    }
    std::string out;
    out.swap(pending_);
    return out;
  }

  // One whole response (head, then Content-Length bytes of body); what
  // arrived if the peer closed or the timeout passed first.
  std::string ReadResponse() {
    std::string head = ReadUntil("\r\n\r\n");
    const size_t end = head.find("\r\n\r\n");
    if (end == std::string::npos) return head;
    pending_ = head.substr(end + 4);
    head.resize(end + 4);
    size_t length = 0;
    const size_t at = head.find("Content-Length: ");
    if (at != std::string::npos) length = std::stoul(head.substr(at + 16));
    char buffer[4096];
    while (pending_.size() < length) {
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      pending_.append(buffer, static_cast<size_t>(n));
    }
    head += pending_.substr(0, length);
    pending_.erase(0, length);
    return head;
  }

  // True if the peer has closed the connection (reads end of stream,
  // within the timeout).
  bool PeerClosed() {
    char buffer[4096];
    ssize_t n;
    while ((n = recv(fd_, buffer, sizeof(buffer), 0)) > 0) {
    }
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

  // TCP keep-alive probes after `seconds` without a packet from the peer,
  // then every `seconds`: a peer whose kernel dropped the connection
  // without a word (an abort for a timeout sends no reset) answers the
  // next probe with a reset, which HungUpWithin sees.
  void ProbeEvery(int seconds) {
    int yes = 1;
    setsockopt(fd_, SOL_SOCKET, SO_KEEPALIVE, &yes, sizeof(yes));
    setsockopt(fd_, IPPROTO_TCP, TCP_KEEPIDLE, &seconds, sizeof(seconds));
    setsockopt(fd_, IPPROTO_TCP, TCP_KEEPINTVL, &seconds, sizeof(seconds));
    int count = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  }

  // True if the peer closes or resets the connection within `timeout`,
  // without reading what it sent: for a client that never reads.
  bool HungUpWithin(std::chrono::milliseconds timeout) {
    pollfd watched{.fd = fd_, .events = POLLRDHUP, .revents = 0};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      const int n = poll(&watched, 1, static_cast<int>(left.count()));
      if (n > 0) {
        return (watched.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
      }
      if (n < 0 && errno != EINTR) return false;
    }
  }

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  bool connected_ = false;
  std::string pending_;
};

// One exchange on a fresh connection: sends `bytes`, returns everything
// read until the peer closes.
inline std::string RawExchange(int port, const std::string& bytes) {
  RawConnection connection(port);
  if (!connection.connected() || !connection.Send(bytes)) return "";
  return connection.ReadAll();
}

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_RAW_HTTP_H_
