// Loopback ports for tests: one that refuses connections, one free to use.
#ifndef COACH_TESTS_SUPPORT_PORTS_H_
#define COACH_TESTS_SUPPORT_PORTS_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace coach::testing {

// A 127.0.0.1 port bound but never listening: connections to it are
// refused, and nothing else can take it while this object lives.
class RefusingLoopbackPort {
 public:
  RefusingLoopbackPort() : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    if (fd_ < 0) return;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof(address);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) ==
            0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      port_ = ntohs(address.sin_port);
    }
  }
  ~RefusingLoopbackPort() { Release(); }
  RefusingLoopbackPort(const RefusingLoopbackPort&) = delete;
  RefusingLoopbackPort& operator=(const RefusingLoopbackPort&) = delete;

  // 0 if no port could be bound.
  int port() const { return port_; }
  void Release() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  int port_ = 0;
};

// A 127.0.0.1 port free right now, for a child process to listen on. (Another
// process could take it before the child does; the kernel rarely reuses a
// just-released ephemeral port.)
inline int FreeLoopbackPort() {
  RefusingLoopbackPort port;
  return port.port();
}

// A TCP socket listening on 127.0.0.1, on a port the kernel picks: its file
// descriptor (the caller closes it) and `*port`; -1 on failure.
inline int ListenOnLoopback(int* port, int backlog = 64) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(fd, backlog) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(address.sin_port);
  return fd;
}

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_PORTS_H_
