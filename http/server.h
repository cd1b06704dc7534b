// http::Server: an event-driven HTTP/1.1 server (Boost.Beast on Asio), the
// HTTP layer of coach-proxy and of coach-server's metrics endpoint.
//
// Why event-driven: a connection costs a socket and a small buffer, never a
// thread. A client that is idle, drips its headers or waits for a slow
// answer (an AI reply, a stream) holds no worker, so one client cannot
// starve the others (see docs/adr/0024-http-front-on-beast.md).
//
// What it enforces before a handler sees anything (each a ServerOptions
// field, each refusal answered through ServerOptions::refusal so that the
// caller shapes the body):
// - the request head (request line + headers) within max_header_bytes and
//   max_header_count (431), its target within max_url_bytes (414), received
//   within header_timeout (else the connection is closed): a new
//   connection's first head within header_timeout of its accept (a client
//   that connects and sends nothing is closed then, not after
//   idle_timeout), a later one within header_timeout of its first byte;
// - exactly one Host header, of valid characters, on an HTTP/1.1 request
//   (RFC 9112 §3.2), at most one on HTTP/1.0: else 400 (kBadHost);
// - a body only with a single Content-Length (no Transfer-Encoding in any
//   spelling: 411; conflicting lengths: 400), at most max_body_bytes (413,
//   answered from the header, the body is never read), received within
//   body_timeout (a head or body that comes too slowly closes the
//   connection); POST, PUT and PATCH without Content-Length: 411;
// - at most max_connections_per_client connections per client address (an
//   IPv4 address, an IPv6 /64): more are closed at accept;
// - at most max_connections open connections: when the table is full, a
//   new connection takes the place of the connection idle the longest (one
//   with no request in progress: silent since it connected, or between two
//   keep-alive requests), which is closed; none idle: the new connection
//   is closed at accept. A request in progress is never closed for a new
//   connection;
// - a write that makes no progress (a client that does not read) for
//   write_timeout cuts the connection, even once the answer is all in the
//   kernel's send buffer (TCP_USER_TIMEOUT): an unread answer holds no
//   memory past it, whether or not pipelined requests follow.
//
// HTTPS (ServerOptions::tls): each connection's TLS stream sits on the
// same TCP stream, so every limit above holds alike; the handshake is due
// within the first head's header_timeout (from the accept). A client's
// hang-up is watched through TLS (a read: a close_notify or the end of the
// stream is a hang-up; bytes are a pipelined request, kept for its turn).
//
// Threading: `io_threads` event-loop threads run every connection; the
// handler runs on them and must not block (start asynchronous work and
// answer later, from any thread, through the Exchange).
#ifndef COACH_HTTP_SERVER_H_
#define COACH_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/tls.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace coach::http {

struct Header {
  std::string name;
  std::string value;
};

// One request as received. Immutable once handed to the handler.
struct Request {
  std::string method;           // as sent ("GET")
  std::string target;           // as sent ("/api/x?y=1"), percent-encoded
  std::string path;             // target before '?', percent-decoded
  std::string query;            // target after '?', still encoded ("" if none)
  std::vector<Header> headers;  // in order, as sent
  std::string body;
  bool keep_alive = true;

  // The first header named `name` (case-insensitive); empty if none.
  absl::string_view header(absl::string_view name) const;
  bool has_header(absl::string_view name) const;
};

struct Response {
  int status = 200;
  // Content-Length and Connection are set by the server.
  std::vector<Header> headers;
  std::string body;
};

// Why the server refused a request before any handler saw it.
enum class Refusal {
  kMalformed,        // 400: not HTTP/1.x, bad header, conflicting lengths
  kLengthRequired,   // 411: a body without Content-Length, or chunked
  kBodyTooLarge,     // 413: Content-Length over max_body_bytes
  kUriTooLong,       // 414: a target over max_url_bytes
  kHeadersTooLarge,  // 431: over max_header_bytes or max_header_count
  kBadHost,          // 400: HTTP/1.1 without Host, two Hosts, a bad Host
  kHandlerDropped,   // 500: a handler released an exchange unanswered
};
int StatusOf(Refusal refusal);

// What a refusal's answer is built from. `request` holds what was parsed
// (method, target, headers; maybe nothing for a malformed head).
using RefusalResponder =
    std::function<Response(Refusal refusal, const Request& request)>;

// Why a connection was closed to keep within the connection limits.
enum class Shed {
  kIdleEvicted,  // idle the longest, closed for a new connection (table full)
  kClientLimit,  // a new connection over max_connections_per_client
  kTableFull,    // a new connection, the table full and none idle
};

struct ServerOptions {
  std::string listen = "127.0.0.1:0";  // host:port; port 0: any free one
  int backlog = 4096;
  // The event loop to serve on, run by its owner (who stops it after
  // Shutdown()), so that other work shares its threads; null: the server
  // runs its own with `io_threads` threads.
  boost::asio::io_context* loop = nullptr;
  int io_threads = 1;
  int max_connections = 20000;
  // Connections of one client address (IPv4 address, IPv6 /64) at once;
  // 0: max_connections / 10 (at least 1).
  int max_connections_per_client = 0;
  size_t max_url_bytes = 8 * 1024;
  size_t max_header_bytes = 16 * 1024;
  int max_header_count = 100;
  size_t max_body_bytes = 64 * 1024;
  absl::Duration header_timeout = absl::Seconds(10);
  absl::Duration body_timeout = absl::Seconds(10);
  // A keep-alive connection waiting for its next request.
  absl::Duration idle_timeout = absl::Seconds(60);
  // One write (a response, or one chunk of a stream) to a client; also the
  // longest the kernel keeps written bytes that the client does not take
  // (TCP_USER_TIMEOUT): the connection is cut then.
  absl::Duration write_timeout = absl::Seconds(10);
  // A stream whose client reads slower than it is written is cut once this
  // much is waiting in the server.
  size_t max_stream_backlog_bytes = 1024 * 1024;
  // Answers refusals; required.
  RefusalResponder refusal;
  // HTTPS: each new connection's TLS handshake uses the source's current
  // context (role kServer); null: plain HTTP. The handshake counts in the
  // first request's header_timeout (from the accept), and a connection in
  // its handshake is idle for eviction, so that silent TLS clients hold
  // places no better than silent plain ones.
  std::shared_ptr<TlsContextSource> tls;
  // Told of each connection shed (for metrics); optional. Runs on an
  // event-loop thread: must not block.
  std::function<void(Shed shed)> on_shed;
};

// One request and its answer. Thread-safe: the handler may keep it and
// answer from any thread. Exactly one answer counts: Reply(), or
// StartStream() then Send()s and Finish(); later calls are ignored. An
// exchange released unanswered is answered with Refusal::kHandlerDropped.
// Once its answer is written or its connection closed (the client gone, the
// server stopped), every call does nothing and the exchange holds neither
// the connection nor the server: a handler may keep it, even past the
// Server's destruction.
class Exchange {
 public:
  virtual ~Exchange() = default;

  virtual const Request& request() const = 0;

  virtual void Reply(Response response) = 0;

  // A chunked response: the head now, then each Send() as one chunk,
  // written in order and flushed at once. While no chunk is sent for
  // `heartbeat_every`, `heartbeat` is sent (a no-op for the client, e.g. an
  // SSE comment) so that intermediaries keep the connection.
  virtual void StartStream(int status, std::vector<Header> headers,
                           absl::Duration heartbeat_every,
                           std::string heartbeat) = 0;
  virtual void Send(std::string chunk) = 0;
  virtual void Finish() = 0;

  // `on_cancel` runs once, on an event-loop thread, if the client goes away
  // (closes its connection) or the server stops before the answer was
  // written; at once if that already happened. At most one callback.
  // Registering one also makes the server watch the connection for the
  // client's hang-up until the answer is written; an exchange without one is
  // not watched (a watch costs system calls on every request): its client's
  // departure shows when the answer is written.
  virtual void OnCancel(absl::AnyInvocable<void()> on_cancel) = 0;
};

using Handler = std::function<void(std::shared_ptr<Exchange> exchange)>;

class Server {
 public:
  // Binds options.listen (a clear error if taken) and starts serving.
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options,
                                                       Handler handler);
  virtual ~Server() = default;  // Shutdown(absl::ZeroDuration())

  virtual int port() const = 0;

  // Stops accepting and closes connections that have no request in
  // progress (idle, or still sending their head); lets requests in
  // progress finish for up to `grace`, then closes what remains (their
  // OnCancel callbacks run). Returns once every connection has ended (and
  // the server's own threads, if it runs its own loop); exchanges that
  // handlers still hold do not delay it (see Exchange). Safe to
  // call more than once, from any thread but the server's own.
  virtual void Shutdown(absl::Duration grace) = 0;

  // Open connections (for metrics and tests).
  virtual int open_connections() const = 0;
};

}  // namespace coach::http

#endif  // COACH_HTTP_SERVER_H_
