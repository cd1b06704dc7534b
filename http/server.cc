#include "http/server.h"
#include "http/event_loop.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cerrno>
#include <deque>
#include <limits>
#include <list>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "base/url.h"

namespace coach::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using ErrorCode = boost::system::error_code;

std::chrono::steady_clock::duration ToSteady(absl::Duration d) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(d));
}

// After a refusal, the client may still be sending (a 413's body): read and
// drop this much, for this long, before closing, so that the kernel does not
// answer its data with a reset that destroys our response unread.
constexpr size_t kLingerBytes = 256 * 1024;
constexpr auto kLingerTime = std::chrono::seconds(2);

absl::string_view View(boost::beast::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// A read that ended because the client left, was too slow, or the server
// closed the connection: nothing to answer.
bool Abandoned(ErrorCode ec) {
  return ec == bhttp::error::end_of_stream ||
         ec == bhttp::error::partial_message || ec == beast::error::timeout ||
         ec == net::error::operation_aborted || ec == net::error::eof ||
         ec == net::error::connection_reset ||
         ec == net::ssl::error::stream_truncated;
}

// A connection's byte stream: Beast's TCP stream (its timeouts), and with
// TLS Beast's SSL stream over it (which gathers a response's many small
// buffers into few records). Every read and write of the connection goes
// through here; timeouts, the socket and its options are the TCP
// stream's (lowest()), so every limit works alike with and without TLS. An
// AsyncReadStream and AsyncWriteStream for Beast's and Asio's algorithms.
class ConnectionStream {
 public:
  using executor_type = beast::tcp_stream::executor_type;

  ConnectionStream(tcp::socket socket,
                   const std::shared_ptr<net::ssl::context>& tls) {
    if (tls != nullptr) {
      tls_.emplace(std::move(socket), *tls);
    } else {
      plain_.emplace(std::move(socket));
    }
  }

  bool tls() const { return tls_.has_value(); }
  beast::ssl_stream<beast::tcp_stream>& tls_stream() { return *tls_; }
  beast::tcp_stream& lowest() { return tls_ ? tls_->next_layer() : *plain_; }
  tcp::socket& socket() { return lowest().socket(); }
  executor_type get_executor() { return lowest().get_executor(); }
  template <typename Duration>
  void expires_after(Duration d) {
    lowest().expires_after(d);
  }
  void expires_never() { lowest().expires_never(); }
  void close() { lowest().close(); }

  template <typename MutableBuffers, typename Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_->async_read_some(buffers, std::forward<Handler>(handler));
    }
  }
  template <typename ConstBuffers, typename Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_->async_write_some(buffers, std::forward<Handler>(handler));
    }
  }

 private:
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
};

bool NeedsLength(absl::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

// A Host value RFC 9112 §3.2 accepts: uri-host [":" port], RFC 3986's
// characters for an authority without userinfo (reg-name, IPv4, an IP
// literal in brackets); empty is allowed (a target without authority).
bool ValidHostValue(absl::string_view host) {
  for (const char c : host) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) continue;
    switch (c) {
      case '-':
      case '.':
      case '_':
      case '~':  // unreserved
      case '!':
      case '$':
      case '&':
      case '\'':
      case '(':
      case ')':
      case '*':
      case '+':
      case ',':
      case ';':
      case '=':  // sub-delims
      case '%':  // pct-encoded
      case ':':
      case '[':
      case ']':  // port, IP literals
        continue;
      default: return false;
    }
  }
  return true;
}

// Whom a connection counts against for max_connections_per_client: its
// IPv4 address (4 bytes), or its IPv6 /64 (8 bytes: one subscriber's
// network; each has 2^64 addresses). An IPv4-mapped IPv6 address is its
// IPv4 address.
std::string ClientKey(const net::ip::address& address) {
  if (address.is_v4()) {
    const auto bytes = address.to_v4().to_bytes();
    return std::string(bytes.begin(), bytes.end());
  }
  const net::ip::address_v6 v6 = address.to_v6();
  if (v6.is_v4_mapped()) {
    const auto bytes =
        net::ip::make_address_v4(net::ip::v4_mapped, v6).to_bytes();
    return std::string(bytes.begin(), bytes.end());
  }
  const auto bytes = v6.to_bytes();
  return std::string(bytes.begin(), bytes.begin() + 8);
}

// An answer to HEAD: the Content-Length a GET would have, and no content
// (RFC 9110 §9.3.2).
void OmitContent(bhttp::response<bhttp::string_body>& response) {
  const size_t length = response.body().size();
  response.body().clear();
  response.content_length(length);
}

class ServerImpl;

// One client connection. Every member is used on the connection's strand
// only; other threads reach it through Post().
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `tls`: the context of its handshake (held for its life); null: plain.
  Connection(ServerImpl& server, uint64_t id, tcp::socket socket,
             std::shared_ptr<net::ssl::context> tls);
  ~Connection();

  uint64_t id() const { return id_; }

  void Start();
  // Runs `fn` on the connection's strand.
  template <typename Fn>
  void Post(Fn fn) {
    net::post(stream_.get_executor(),
              [self = shared_from_this(), fn = std::move(fn)]() mutable {
                fn(*self);
              });
  }

  // Strand-only. The answers of the current exchange (`seq` names it, so
  // that a late call for an earlier request is ignored).
  void DoReply(uint64_t seq, Response response);
  void DoStartStream(uint64_t seq, int status, std::vector<Header> headers,
                     absl::Duration heartbeat_every, std::string heartbeat);
  void DoSend(uint64_t seq, std::string chunk);
  void DoFinish(uint64_t seq);
  // Strand-only: watches for the client's hang-up if request `seq` is
  // still being handled or streamed.
  void WatchHangupOf(uint64_t seq) {
    if (seq == seq_ &&
        (state_ == State::kHandling || state_ == State::kStreaming)) {
      WatchHangup();
    }
  }
  // Server shutdown: closes the connection unless a request is in progress.
  void DoDrain();
  // The table is full and this connection was idle the longest: closes it
  // if it still has no request in progress, else tells the server.
  void DoEvict();
  // Closes whatever its state.
  void DoClose();

 private:
  enum class State {
    kIdle,         // waiting for the next request
    kReadingHead,  // a request has begun
    kReadingBody,
    kHandling,   // the handler has the request
    kWriting,    // writing a whole response
    kStreaming,  // writing a chunked response
    kLingering,  // refused: draining the client's bytes before closing
    kClosed,
  };

  // TLS: the handshake, within the first head's header timeout.
  void OnHandshake(ErrorCode ec);
  void ReadNext();
  // TLS: a hang-up shows only through the TLS layer (a close_notify is
  // data to the socket): the watch is a real read, whose bytes (a
  // pipelined request) are kept in buffer_.
  void WatchHangupTls();
  void OnTlsWatchRead(uint64_t seq, ErrorCode ec, size_t n);
  // `first`: the connection's first request, whose head is due within the
  // header timeout of the accept (already armed).
  void OnFirstBytes(ErrorCode ec, size_t n, bool first);
  // Reads the rest of a head; `arm`: starts the header timeout now.
  void ReadHead(bool arm);
  void OnHead(ErrorCode ec);
  void ReadBody();
  void OnBody(ErrorCode ec);
  void Dispatch();
  void Refuse(Refusal refusal);
  void WriteResponse(bool close_after);
  void OnWritten(ErrorCode ec, bool close_after);
  void WatchHangup();
  void OnReadable(uint64_t seq, ErrorCode ec);
  void StopWatchingHangup();
  void PumpStream();
  // A HEAD's stream, its head written: ends the request.
  void EndHeadStream();
  // An HTTP/1.0 stream, all of it written: the close ends the body (over
  // TLS, TLS's close_notify).
  void EndUnframedStream();
  void ShutdownTls();
  void ArmHeartbeat();
  void EndOfRequest();  // the answer is written: next request or close
  void Linger();
  // Lets the current exchange go (its OnCancel run first if `cancel`):
  // its later calls do nothing.
  void ReleaseExchange(bool cancel);
  Request PartialRequest() const;
  bool InFlight() const {
    return state_ == State::kHandling || state_ == State::kWriting ||
           state_ == State::kStreaming;
  }

  // First member, so destroyed last: the server learns that this connection
  // is gone only once its socket and timers are, since Shutdown() destroys
  // the io_context they use as soon as no connection is left.
  struct Registration {
    ServerImpl& server;
    const uint64_t id;
    ~Registration();
  };
  Registration registration_;
  ServerImpl& server_;
  const uint64_t id_;
  // Declared before stream_: the SSL stream is destroyed first.
  const std::shared_ptr<net::ssl::context> tls_context_;
  ConnectionStream stream_;
  // TLS: the first head's deadline is armed at the accept, before the
  // handshake (ReadNext then leaves it).
  bool first_deadline_armed_ = false;
  // TLS: a hang-up watch's read is out; a read for the next request waits
  // for it to end (one read at a time on an SSL stream).
  bool tls_watch_reading_ = false;
  bool read_after_watch_ = false;
  bool shutdown_after_watch_ = false;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> response_;
  State state_ = State::kIdle;
  uint64_t seq_ = 0;  // the current request's number
  bool keep_alive_ = true;
  // The current request is HEAD: its answer's head only, never a body
  // (RFC 9110 §9.3.2).
  bool head_only_ = false;
  // The current request is HTTP/1.0: a stream is not chunked (RFC 9112
  // §6.1) but delimited by the connection's close.
  bool http10_ = false;
  bool watching_ = false;
  std::weak_ptr<class ExchangeImpl> exchange_;
  bool counted_busy_ = false;

  // Streaming.
  bhttp::response<bhttp::empty_body> stream_head_;
  std::optional<bhttp::response_serializer<bhttp::empty_body>> serializer_;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool finish_requested_ = false;
  absl::Duration heartbeat_every_ = absl::InfiniteDuration();
  std::string heartbeat_;
  net::steady_timer heartbeat_timer_;
  net::steady_timer linger_timer_;
  // What a lingering close reads and drops; allocated when it starts (a
  // connection that never lingers, a live stream's, does not hold it).
  std::unique_ptr<std::array<char, 4096>> discard_;
  size_t lingered_ = 0;
};

class ExchangeImpl final : public Exchange {
 public:
  ExchangeImpl(std::shared_ptr<Connection> connection, uint64_t seq,
               Request request, const RefusalResponder& refusal)
      : seq_(seq),
        request_(std::move(request)),
        refusal_(refusal),
        connection_(std::move(connection)) {}

  ~ExchangeImpl() override {
    bool answered;
    bool unfinished;
    std::shared_ptr<Connection> connection;
    {
      absl::MutexLock lock(&mu_);
      answered = answered_;
      unfinished = streaming_ && !finished_;
      connection = connection_;
    }
    // Closed: nobody to answer (and the server may be gone).
    if (connection == nullptr) return;
    // `connection` keeps the server (and refusal_, in its options) alive:
    // Shutdown returns only once every connection has ended.
    if (!answered) {
      LogError("http: a handler released a request unanswered");
      Reply(refusal_(Refusal::kHandlerDropped, request_));
    } else if (unfinished) {
      Finish();
    }
  }

  const Request& request() const override { return request_; }

  void Reply(Response response) override {
    absl::MutexLock lock(&mu_);
    if (answered_) return;
    answered_ = true;
    Post([seq = seq_, response = std::move(response)](Connection& c) mutable {
      c.DoReply(seq, std::move(response));
    });
  }

  void StartStream(int status, std::vector<Header> headers,
                   absl::Duration heartbeat_every,
                   std::string heartbeat) override {
    absl::MutexLock lock(&mu_);
    if (answered_) return;
    answered_ = true;
    streaming_ = true;
    Post([seq = seq_, status, headers = std::move(headers), heartbeat_every,
          heartbeat = std::move(heartbeat)](Connection& c) mutable {
      c.DoStartStream(seq, status, std::move(headers), heartbeat_every,
                      std::move(heartbeat));
    });
  }

  void Send(std::string chunk) override {
    if (chunk.empty()) return;  // an empty chunk would end the stream
    absl::MutexLock lock(&mu_);
    if (!streaming_ || finished_) return;
    Post([seq = seq_, chunk = std::move(chunk)](Connection& c) mutable {
      c.DoSend(seq, std::move(chunk));
    });
  }

  void Finish() override {
    absl::MutexLock lock(&mu_);
    if (!streaming_ || finished_) return;
    finished_ = true;
    Post([seq = seq_](Connection& c) { c.DoFinish(seq); });
  }

  void OnCancel(absl::AnyInvocable<void()> on_cancel) override {
    {
      absl::MutexLock lock(&mu_);
      if (!cancelled_) {
        on_cancel_ = std::move(on_cancel);
        // Someone acts on a hang-up: watch for one.
        Post([seq = seq_](Connection& c) { c.WatchHangupOf(seq); });
        return;
      }
    }
    on_cancel();
  }

  // The connection's side: the client is gone or the server stops.
  void Cancel() {
    absl::AnyInvocable<void()> callback;
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) return;
      cancelled_ = true;
      callback = std::move(on_cancel_);
    }
    if (callback) callback();
  }

  // Its answer is written or its connection closed: later calls do
  // nothing, and the exchange no longer holds the connection (nor, through
  // it, the server). Strand-only (the connection's).
  void Detach() {
    std::shared_ptr<Connection> connection;
    absl::MutexLock lock(&mu_);
    connection = std::move(connection_);
  }

 private:
  // Runs `fn` on the connection's strand, unless detached.
  template <typename Fn>
  void Post(Fn fn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (connection_ != nullptr) connection_->Post(std::move(fn));
  }

  const uint64_t seq_;
  const Request request_;
  // The server's; used only while connection_ is held (see the destructor).
  const RefusalResponder& refusal_;
  absl::Mutex mu_;
  std::shared_ptr<Connection> connection_ ABSL_GUARDED_BY(mu_);
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
  bool streaming_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::AnyInvocable<void()> on_cancel_ ABSL_GUARDED_BY(mu_);
};

class ServerImpl final : public Server {
 public:
  ServerImpl(ServerOptions options, Handler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        own_loop_(options_.loop == nullptr
                      ? std::make_unique<EventLoop>(options_.io_threads)
                      : nullptr),
        ioc_(options_.loop != nullptr ? *options_.loop : own_loop_->context()),
        acceptor_(net::make_strand(ioc_)),
        max_per_client_(options_.max_connections_per_client > 0
                            ? options_.max_connections_per_client
                            : std::max(1, options_.max_connections / 10)) {}

  ~ServerImpl() override { Shutdown(absl::ZeroDuration()); }

  absl::Status Listen() {
    const size_t colon = options_.listen.rfind(':');
    int port = 0;
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(options_.listen.substr(colon + 1), &port) ||
        port < 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad listen address \"", options_.listen, "\" (want host:port)"));
    }
    std::string host = options_.listen.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    ErrorCode ec;
    tcp::resolver resolver(ioc_);
    auto endpoints = resolver.resolve(host, std::to_string(port),
                                      tcp::resolver::passive, ec);
    if (ec || endpoints.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot resolve listen address \"", options_.listen,
                       "\": ", ec.message()));
    }
    const tcp::endpoint endpoint = endpoints.begin()->endpoint();
    acceptor_.open(endpoint.protocol(), ec);
    // SO_REUSEADDR: rebinding while old connections are in TIME_WAIT. It
    // does not let two listeners share the port on Linux.
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(options_.backlog, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on ", options_.listen, ": ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    return absl::OkStatus();
  }

  void Run() {
    accepting_ = true;
    net::post(acceptor_.get_executor(), [this] { DoAccept(); });
  }

  int port() const override { return port_; }

  int open_connections() const override { return connections_.load(); }

  void Shutdown(absl::Duration grace) override {
    {
      absl::MutexLock lock(&mu_);
      if (shut_down_) return;
      shut_down_ = true;
    }
    draining_.store(true);
    net::post(acceptor_.get_executor(), [this] {
      ErrorCode ignored;
      acceptor_.close(ignored);
    });
    // The accept loop's last handler uses this object: on a loop that
    // outlives the server, it must have run before Shutdown returns.
    if (accepting_ &&
        !accept_ended_.WaitForNotificationWithTimeout(absl::Seconds(10))) {
      LogError("http: the accept loop did not end");
    }
    ForEachConnection([](Connection& c) { c.DoDrain(); });
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](int* busy) { return *busy == 0; }, &busy_),
                           grace);
    }
    ForEachConnection([](Connection& c) { c.DoClose(); });
    // A closed connection ends once its pending operations have seen the
    // close (its exchange, if a handler keeps one, no longer holds it).
    // Nothing else holds one for long; should something, returning would
    // leave it using this object: wait, and say so.
    {
      absl::MutexLock lock(&mu_);
      const absl::Condition ended(
          +[](std::unordered_map<uint64_t, Entry>* m) { return m->empty(); },
          &connections_by_id_);
      while (!mu_.AwaitWithTimeout(ended, absl::Seconds(10))) {
        LogError("http: %d connections still held after shutdown",
                 static_cast<int>(connections_by_id_.size()));
      }
    }
    if (own_loop_ != nullptr) own_loop_->Stop();
  }

  // For connections.
  const ServerOptions& options() const { return options_; }
  bool draining() const { return draining_.load(); }
  void Handle(std::shared_ptr<Exchange> exchange) {
    handler_(std::move(exchange));
  }
  void SetBusy(bool busy) {
    absl::MutexLock lock(&mu_);
    busy_ += busy ? 1 : -1;
  }
  void Forget(uint64_t id) {
    absl::MutexLock lock(&mu_);
    const auto found = connections_by_id_.find(id);
    if (found == connections_by_id_.end()) return;
    Entry& entry = found->second;
    if (entry.idle) idle_.erase(entry.idle_at);
    if (entry.evicting) --evicting_;
    if (const auto client = per_client_.find(entry.client);
        client != per_client_.end() && --client->second <= 0) {
      per_client_.erase(client);
    }
    connections_by_id_.erase(found);
    connections_.fetch_sub(1);
  }
  // A connection waits for a request (`idle`: its first, or the next on a
  // keep-alive connection) with none in progress, or stops waiting. Idle
  // connections may be evicted for new ones, the longest idle first.
  void SetIdle(uint64_t id, bool idle) {
    absl::MutexLock lock(&mu_);
    const auto found = connections_by_id_.find(id);
    if (found == connections_by_id_.end()) return;
    Entry& entry = found->second;
    if (idle && !entry.idle && !entry.evicting) {
      entry.idle = true;
      entry.idle_at = idle_.insert(idle_.end(), id);
    } else if (!idle && entry.idle) {
      idle_.erase(entry.idle_at);
      entry.idle = false;
    }
  }
  // An eviction found its connection busy after all (a request had begun):
  // the connection stays, and its place is no longer counted as freed.
  void EvictionFailed(uint64_t id) {
    absl::MutexLock lock(&mu_);
    const auto found = connections_by_id_.find(id);
    if (found == connections_by_id_.end() || !found->second.evicting) return;
    found->second.evicting = false;
    --evicting_;
  }

 private:
  void DoAccept() {
    acceptor_.async_accept(
        net::make_strand(ioc_), [this](ErrorCode ec, tcp::socket socket) {
          if (ec == net::error::operation_aborted || !acceptor_.is_open()) {
            accept_ended_.Notify();
            return;
          }
          if (ec) {
            // Out of descriptors, most likely: refuse until some close.
            LogWarning("http: accept failed: %s", ec.message());
          } else {
            Admit(std::move(socket));
          }
          DoAccept();
        });
  }

  // A new connection: within the client's share, then within the table,
  // making room by evicting the connection idle the longest if need be.
  void Admit(tcp::socket socket) {
    ErrorCode ec;
    const tcp::endpoint remote = socket.remote_endpoint(ec);
    if (ec) return;  // already gone; the socket closes here
    std::string client = ClientKey(remote.address());
    SetSocketOptions(socket);
    // The files as they are now (looked at once per check interval).
    std::shared_ptr<net::ssl::context> tls =
        options_.tls != nullptr ? options_.tls->Current() : nullptr;
    // Destroyed after the lock is released: the last reference to a victim
    // ends it, and its end takes the lock (Forget).
    std::shared_ptr<Connection> victim;
    std::shared_ptr<Connection> connection;
    std::optional<Shed> shed;
    {
      absl::MutexLock lock(&mu_);
      const auto share = per_client_.find(client);
      if (share != per_client_.end() && share->second >= max_per_client_) {
        shed = Shed::kClientLimit;
      } else if (connections_.load() - evicting_ >= options_.max_connections) {
        victim = TakeLongestIdle();
        if (victim == nullptr) shed = Shed::kTableFull;
      }
      if (!shed.has_value()) {
        const uint64_t id = next_id_++;
        connection = std::make_shared<Connection>(*this, id, std::move(socket),
                                                  std::move(tls));
        Entry& entry = connections_by_id_[id];
        entry.connection = connection;
        entry.client = client;
        ++per_client_[std::move(client)];
        connections_.fetch_add(1);
      }
    }
    if (shed.has_value()) {
      ErrorCode ignored;
      socket.close(ignored);
      if (options_.on_shed) options_.on_shed(*shed);
      return;
    }
    if (victim != nullptr) {
      victim->Post([](Connection& c) { c.DoEvict(); });
      if (options_.on_shed) options_.on_shed(Shed::kIdleEvicted);
    }
    connection->Start();
  }

  void SetSocketOptions(tcp::socket& socket) {
    ErrorCode ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    // Written bytes the client does not take (its window stays shut) or
    // does not acknowledge for this long: the kernel aborts the
    // connection, which ends whatever waits on it. Without it, an answer
    // written whole into the send buffer would sit there until the
    // keep-alive timeout, and after close() for as long as the client
    // keeps acknowledging zero-window probes.
    const int64_t ms =
        std::clamp<int64_t>(absl::ToInt64Milliseconds(options_.write_timeout),
                            1, std::numeric_limits<unsigned int>::max());
    const unsigned int user_timeout = static_cast<unsigned int>(ms);
    setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_USER_TIMEOUT,
               &user_timeout, sizeof(user_timeout));
  }

  // The connection idle the longest, marked as being evicted; null if none.
  std::shared_ptr<Connection> TakeLongestIdle()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (!idle_.empty()) {
      const uint64_t id = idle_.front();
      idle_.pop_front();
      Entry& entry = connections_by_id_.at(id);
      entry.idle = false;
      if (std::shared_ptr<Connection> c = entry.connection.lock()) {
        entry.evicting = true;
        ++evicting_;
        return c;
      }
    }
    return nullptr;
  }

  template <typename Fn>
  void ForEachConnection(Fn fn) {
    std::vector<std::shared_ptr<Connection>> live;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [id, entry] : connections_by_id_) {
        if (auto c = entry.connection.lock()) live.push_back(std::move(c));
      }
    }
    for (auto& c : live) c->Post(fn);
  }

  // What the server knows of one open connection.
  struct Entry {
    std::weak_ptr<Connection> connection;
    std::string client;  // ClientKey
    // In idle_ (then idle_at is its place there).
    bool idle = false;
    std::list<uint64_t>::iterator idle_at;
    // Chosen to make room; its place counts as free until it ends.
    bool evicting = false;
  };

  const ServerOptions options_;
  const Handler handler_;
  // The loop, when the server runs its own (ServerOptions::loop unset).
  std::unique_ptr<EventLoop> own_loop_;
  net::io_context& ioc_;
  tcp::acceptor acceptor_;
  bool accepting_ = false;  // Run() was called
  absl::Notification accept_ended_;
  int port_ = 0;
  std::atomic<bool> draining_{false};
  // Open connections (changed under mu_).
  std::atomic<int> connections_{0};
  const int max_per_client_;

  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::unordered_map<uint64_t, Entry> connections_by_id_ ABSL_GUARDED_BY(mu_);
  // Idle connections, the longest idle first.
  std::list<uint64_t> idle_ ABSL_GUARDED_BY(mu_);
  // Open connections per ClientKey (none: absent).
  std::unordered_map<std::string, int> per_client_ ABSL_GUARDED_BY(mu_);
  // Connections chosen for eviction that have not ended yet.
  int evicting_ ABSL_GUARDED_BY(mu_) = 0;
};

Connection::Connection(ServerImpl& server, uint64_t id, tcp::socket socket,
                       std::shared_ptr<net::ssl::context> tls)
    : registration_{server, id},
      server_(server),
      id_(id),
      tls_context_(std::move(tls)),
      stream_(std::move(socket), tls_context_),
      heartbeat_timer_(stream_.get_executor()),
      linger_timer_(stream_.get_executor()) {}

Connection::~Connection() {
  if (counted_busy_) server_.SetBusy(false);
}

Connection::Registration::~Registration() { server.Forget(id); }

void Connection::Start() {
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
    if (!self->stream_.tls()) return self->ReadNext();
    // Idle (evictable, closed by a drain) during its handshake, and owing
    // the handshake and its first head within the header timeout.
    self->server_.SetIdle(self->id_, true);
    self->stream_.expires_after(
        ToSteady(self->server_.options().header_timeout));
    self->first_deadline_armed_ = true;
    self->stream_.tls_stream().async_handshake(
        net::ssl::stream_base::server,
        [self](ErrorCode ec) { self->OnHandshake(ec); });
  });
}

void Connection::OnHandshake(ErrorCode ec) {
  if (state_ == State::kClosed) return;
  // Not TLS, a certificate the client refused, too slow: nothing to answer.
  if (ec) return DoClose();
  ReadNext();
}

void Connection::ReadNext() {
  if (state_ == State::kClosed) return;
  if (tls_watch_reading_) {
    // The hang-up watch's read ends first (at once: it was cancelled, or
    // the client sent something); its bytes are then in buffer_.
    read_after_watch_ = true;
    return;
  }
  state_ = State::kIdle;
  ++seq_;
  watching_ = false;  // a watch of the previous request is stale (seq)
  if (counted_busy_) {
    counted_busy_ = false;
    server_.SetBusy(false);
  }
  if (server_.draining()) return DoClose();
  const ServerOptions& options = server_.options();
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(
      std::min<size_t>(options.max_header_bytes, UINT32_MAX)));
  parser_->body_limit(options.max_body_bytes);
  if (buffer_.size() > 0) return ReadHead(/*arm=*/true);  // pipelined
  // A new connection owes its first head within the header timeout of its
  // accept (as nginx's client_header_timeout): one that sends nothing
  // holds its place that long, not the keep-alive timeout.
  const bool first = seq_ == 1;
  if (!(first && first_deadline_armed_)) {
    stream_.expires_after(
        ToSteady(first ? options.header_timeout : options.idle_timeout));
  }
  server_.SetIdle(id_, true);
  stream_.async_read_some(
      buffer_.prepare(4096),
      [self = shared_from_this(), first](ErrorCode ec, size_t n) {
        self->OnFirstBytes(ec, n, first);
      });
}

void Connection::OnFirstBytes(ErrorCode ec, size_t n, bool first) {
  if (state_ == State::kClosed) return;
  server_.SetIdle(id_, false);
  // Timeout, the client closed or the kernel cut it, shutdown.
  if (ec) return DoClose();
  buffer_.commit(n);
  ReadHead(/*arm=*/!first);
}

void Connection::ReadHead(bool arm) {
  state_ = State::kReadingHead;
  if (arm) stream_.expires_after(ToSteady(server_.options().header_timeout));
  bhttp::async_read_header(
      stream_, buffer_, *parser_,
      [self = shared_from_this()](ErrorCode ec, size_t) { self->OnHead(ec); });
}

void Connection::OnHead(ErrorCode ec) {
  if (state_ == State::kClosed) return;
  if (ec == bhttp::error::header_limit)
    return Refuse(Refusal::kHeadersTooLarge);
  if (ec == bhttp::error::body_limit) return Refuse(Refusal::kBodyTooLarge);
  if (Abandoned(ec)) return DoClose();
  if (ec) return Refuse(Refusal::kMalformed);
  const auto& request = parser_->get();
  const ServerOptions& options = server_.options();
  if (request.target().size() > options.max_url_bytes) {
    return Refuse(Refusal::kUriTooLong);
  }
  if (std::distance(request.begin(), request.end()) >
      options.max_header_count) {
    return Refuse(Refusal::kHeadersTooLarge);
  }
  // RFC 9112 §3.2: an HTTP/1.1 request without Host, any request with two,
  // or a Host that is no authority: 400.
  if (const size_t hosts = request.count(bhttp::field::host);
      hosts > 1 || (hosts == 0 && request.version() >= 11) ||
      (hosts == 1 && !ValidHostValue(View(request[bhttp::field::host])))) {
    return Refuse(Refusal::kBadHost);
  }
  // Any Transfer-Encoding, whatever its spelling or value: bodies come
  // with a length or not at all.
  if (request.count(bhttp::field::transfer_encoding) > 0 ||
      (!parser_->content_length() &&
       NeedsLength(View(request.method_string())))) {
    return Refuse(Refusal::kLengthRequired);
  }
  if (parser_->is_done()) return Dispatch();
  if (beast::iequals(request[bhttp::field::expect], "100-continue")) {
    // The client waits for this before sending its body (curl: for bodies
    // over 1 KiB, else it waits a second).
    static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    stream_.expires_after(ToSteady(options.write_timeout));
    net::async_write(stream_, net::buffer(kContinue, sizeof(kContinue) - 1),
                     [self = shared_from_this()](ErrorCode ec, size_t) {
                       if (self->state_ == State::kClosed) return;
                       if (ec) return self->DoClose();
                       self->ReadBody();
                     });
    return;
  }
  ReadBody();
}

void Connection::ReadBody() {
  state_ = State::kReadingBody;
  stream_.expires_after(ToSteady(server_.options().body_timeout));
  bhttp::async_read(
      stream_, buffer_, *parser_,
      [self = shared_from_this()](ErrorCode ec, size_t) { self->OnBody(ec); });
}

void Connection::OnBody(ErrorCode ec) {
  if (state_ == State::kClosed) return;
  if (ec == bhttp::error::body_limit) return Refuse(Refusal::kBodyTooLarge);
  if (Abandoned(ec)) return DoClose();
  if (ec) return Refuse(Refusal::kMalformed);
  Dispatch();
}

Request Connection::PartialRequest() const {
  Request request;
  if (!parser_.has_value() || !parser_->is_header_done()) return request;
  const auto& message = parser_->get();
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  for (const auto& field : message) {
    request.headers.push_back(
        {std::string(field.name_string()), std::string(field.value())});
  }
  return request;
}

void Connection::Dispatch() {
  auto& message = parser_->get();
  Request request;
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  absl::string_view target = View(message.target());
  // The absolute form ("http://host/path?q", RFC 9112 §3.2.2, which a
  // server must accept): its path and query are the target.
  for (absl::string_view scheme : {"http://", "https://"}) {
    if (absl::StartsWithIgnoreCase(target, scheme)) {
      const size_t path = target.find_first_of("/?", scheme.size());
      target = path == absl::string_view::npos ? absl::string_view("/")
                                               : target.substr(path);
      if (absl::StartsWith(target, "?")) {
        request.target = absl::StrCat("/", target);
        target = request.target;
      } else {
        request.target = std::string(target);
      }
      break;
    }
  }
  const size_t question = target.find('?');
  if (!PercentDecode(target.substr(0, question), false, request.path)) {
    return Refuse(Refusal::kMalformed);
  }
  if (question != absl::string_view::npos) {
    request.query = std::string(target.substr(question + 1));
  }
  request.headers.reserve(std::distance(message.begin(), message.end()));
  for (const auto& field : message) {
    request.headers.push_back(
        {std::string(field.name_string()), std::string(field.value())});
  }
  request.keep_alive = message.keep_alive();
  keep_alive_ = request.keep_alive;
  head_only_ = message.method() == bhttp::verb::head;
  http10_ = message.version() < 11;
  request.body = std::move(message.body());

  state_ = State::kHandling;
  counted_busy_ = true;
  server_.SetBusy(true);
  stream_.expires_never();
  auto exchange = std::make_shared<ExchangeImpl>(
      shared_from_this(), seq_, std::move(request), server_.options().refusal);
  exchange_ = exchange;
  // Not watched for a hang-up until its handler asks (OnCancel).
  server_.Handle(std::move(exchange));
}

void Connection::Refuse(Refusal refusal) {
  Response response = server_.options().refusal(refusal, PartialRequest());
  response_ = {};
  response_.version(11);
  response_.result(static_cast<unsigned>(response.status));
  for (Header& header : response.headers) {
    response_.insert(header.name, std::move(header.value));
  }
  response_.body() = std::move(response.body);
  response_.keep_alive(false);
  response_.prepare_payload();
  if (parser_.has_value() && parser_->is_header_done() &&
      parser_->get().method() == bhttp::verb::head) {
    OmitContent(response_);
  }
  state_ = State::kWriting;
  WriteResponse(/*close_after=*/true);
}

void Connection::DoReply(uint64_t seq, Response response) {
  if (seq != seq_ || state_ != State::kHandling) return;
  StopWatchingHangup();
  response_ = {};
  response_.version(11);
  response_.result(static_cast<unsigned>(response.status));
  for (Header& header : response.headers) {
    response_.insert(header.name, std::move(header.value));
  }
  response_.body() = std::move(response.body);
  const bool keep = keep_alive_ && !server_.draining();
  response_.keep_alive(keep);
  response_.prepare_payload();
  if (head_only_) OmitContent(response_);
  state_ = State::kWriting;
  WriteResponse(!keep);
}

void Connection::WriteResponse(bool close_after) {
  stream_.expires_after(ToSteady(server_.options().write_timeout));
  bhttp::async_write(
      stream_, response_,
      [self = shared_from_this(), close_after](ErrorCode ec, size_t) {
        self->OnWritten(ec, close_after);
      });
}

void Connection::OnWritten(ErrorCode ec, bool close_after) {
  if (state_ == State::kClosed) return;
  if (ec) return DoClose();
  response_ = {};  // frees the body
  if (close_after) return Linger();
  EndOfRequest();
}

void Connection::EndOfRequest() {
  ReleaseExchange(/*cancel=*/false);
  ReadNext();
}

void Connection::Linger() {
  state_ = State::kLingering;
  if (counted_busy_) {
    counted_busy_ = false;
    server_.SetBusy(false);
  }
  ErrorCode ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_never();
  linger_timer_.expires_after(kLingerTime);
  linger_timer_.async_wait([self = shared_from_this()](ErrorCode ec) {
    if (!ec) self->DoClose();
  });
  struct Drain {
    std::shared_ptr<Connection> self;
    void operator()(ErrorCode ec, size_t n) {
      Connection& c = *self;
      if (c.state_ != State::kLingering) return;
      c.lingered_ += n;
      if (ec || c.lingered_ >= kLingerBytes) return c.DoClose();
      c.stream_.socket().async_read_some(net::buffer(*c.discard_),
                                         Drain{std::move(self)});
    }
  };
  if (discard_ == nullptr)
    discard_ = std::make_unique<std::array<char, 4096>>();
  stream_.socket().async_read_some(net::buffer(*discard_),
                                   Drain{shared_from_this()});
}

void Connection::WatchHangup() {
  // Pipelined bytes already read: the client is there; nothing to watch.
  if (buffer_.size() > 0 || watching_) return;
  if (stream_.tls()) return WatchHangupTls();
  watching_ = true;
  stream_.socket().async_wait(tcp::socket::wait_read,
                              [self = shared_from_this(), seq = seq_](
                                  ErrorCode ec) { self->OnReadable(seq, ec); });
}

void Connection::OnReadable(uint64_t seq, ErrorCode ec) {
  if (seq == seq_) watching_ = false;
  if (ec == net::error::operation_aborted || seq != seq_ || !InFlight()) {
    return;
  }
  char byte;
  const ssize_t n = ::recv(stream_.socket().native_handle(), &byte, 1,
                           MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return;  // the next request, pipelined: the client is there
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return WatchHangup();
  }
  // End of stream or a reset: the client has gone.
  DoClose();
}

void Connection::WatchHangupTls() {
  if (tls_watch_reading_) return;
  watching_ = true;
  tls_watch_reading_ = true;
  // No deadline on this read (the client owes nothing while it waits);
  // a write's own deadline is set when the write starts.
  stream_.expires_never();
  stream_.async_read_some(
      buffer_.prepare(4096),
      [self = shared_from_this(), seq = seq_](ErrorCode ec, size_t n) {
        self->OnTlsWatchRead(seq, ec, n);
      });
}

void Connection::OnTlsWatchRead(uint64_t seq, ErrorCode ec, size_t n) {
  tls_watch_reading_ = false;
  if (seq == seq_) watching_ = false;
  if (state_ == State::kClosed) return;
  if (shutdown_after_watch_) {
    shutdown_after_watch_ = false;
    return ShutdownTls();
  }
  if (!ec) buffer_.commit(n);  // the next request, pipelined: kept
  if (read_after_watch_) {
    read_after_watch_ = false;
    if (ec && ec != net::error::operation_aborted) return DoClose();
    return ReadNext();
  }
  if (ec == net::error::operation_aborted || seq != seq_ || !InFlight()) {
    return;
  }
  // The client closed (close_notify, end of stream) or the connection
  // broke: gone. Bytes instead: the client is there; not watched further.
  if (ec) DoClose();
}

void Connection::StopWatchingHangup() {
  if (!watching_) return;
  watching_ = false;
  // Only the watch is pending when this runs (no read or write).
  ErrorCode ignored;
  stream_.socket().cancel(ignored);
}

void Connection::DoStartStream(uint64_t seq, int status,
                               std::vector<Header> headers,
                               absl::Duration heartbeat_every,
                               std::string heartbeat) {
  if (seq != seq_ || state_ != State::kHandling) return;
  state_ = State::kStreaming;
  // A stream lives for seconds or minutes: the read buffer (4 KiB once a
  // request was read into it) goes back now unless it holds a pipelined
  // request, or TLS's hang-up watch is reading into it (its read is
  // pending on that memory); the next read makes a new one.
  if (buffer_.size() == 0 && !tls_watch_reading_) buffer_.shrink_to_fit();
  stream_head_ = {};
  stream_head_.version(11);
  stream_head_.result(static_cast<unsigned>(status));
  for (Header& header : headers) {
    stream_head_.insert(header.name, std::move(header.value));
  }
  // HTTP/1.0: the body ends with the connection.
  stream_head_.keep_alive(keep_alive_ && !http10_ && !server_.draining());
  stream_head_.chunked(!http10_);
  heartbeat_every_ = heartbeat_every;
  heartbeat_ = std::move(heartbeat);
  queue_.clear();
  queued_bytes_ = 0;
  finish_requested_ = false;
  serializer_.emplace(stream_head_);
  writing_ = true;
  stream_.expires_after(ToSteady(server_.options().write_timeout));
  bhttp::async_write_header(stream_, *serializer_,
                            [self = shared_from_this()](ErrorCode ec, size_t) {
                              if (self->state_ != State::kStreaming) return;
                              if (ec) return self->DoClose();
                              self->writing_ = false;
                              if (self->head_only_)
                                return self->EndHeadStream();
                              self->PumpStream();
                            });
}

void Connection::EndUnframedStream() {
  // No last chunk: the close ends the body.
  StopWatchingHangup();
  serializer_.reset();
  state_ = State::kWriting;
  if (!stream_.tls()) return Linger();
  // Over TLS the end must be TLS's own (close_notify): a bare TCP close
  // reads as a cut (OpenSSL 3: "unexpected eof") and could be forged. One
  // read at a time on a TLS stream: after the hang-up watch's, if one is out.
  if (tls_watch_reading_) {
    shutdown_after_watch_ = true;
    return;
  }
  ShutdownTls();
}

void Connection::ShutdownTls() {
  stream_.expires_after(ToSteady(server_.options().write_timeout));
  stream_.tls_stream().async_shutdown(
      [self = shared_from_this()](ErrorCode) { self->DoClose(); });
}

void Connection::EndHeadStream() {
  // A HEAD's stream ends with its head: what the handler would still send
  // is not wanted, so it is told as for a client gone (OnCancel).
  state_ = State::kWriting;
  StopWatchingHangup();
  serializer_.reset();
  queue_.clear();
  queued_bytes_ = 0;
  ReleaseExchange(/*cancel=*/true);
  if (state_ != State::kWriting) return;  // closed meanwhile
  if (!stream_head_.keep_alive()) return Linger();
  EndOfRequest();
}

void Connection::DoSend(uint64_t seq, std::string chunk) {
  if (seq != seq_ || state_ != State::kStreaming || finish_requested_) return;
  queued_bytes_ += chunk.size();
  if (queued_bytes_ > server_.options().max_stream_backlog_bytes) {
    LogWarning("http: a stream's client reads too slowly; closing it");
    return DoClose();
  }
  queue_.push_back(std::move(chunk));
  PumpStream();
}

void Connection::DoFinish(uint64_t seq) {
  if (seq != seq_ || state_ != State::kStreaming) return;
  finish_requested_ = true;
  PumpStream();
}

void Connection::PumpStream() {
  if (writing_ || state_ != State::kStreaming) return;
  heartbeat_timer_.cancel();
  stream_.expires_after(ToSteady(server_.options().write_timeout));
  if (!queue_.empty()) {
    writing_ = true;
    auto written = [self = shared_from_this()](ErrorCode ec, size_t) {
      if (self->state_ != State::kStreaming) return;
      if (ec) return self->DoClose();
      self->queued_bytes_ -= self->queue_.front().size();
      self->queue_.pop_front();
      self->writing_ = false;
      self->PumpStream();
    };
    if (http10_) {
      net::async_write(stream_, net::buffer(queue_.front()),
                       std::move(written));
    } else {
      net::async_write(stream_, bhttp::make_chunk(net::buffer(queue_.front())),
                       std::move(written));
    }
    return;
  }
  if (finish_requested_ && http10_) return EndUnframedStream();
  if (finish_requested_) {
    writing_ = true;
    net::async_write(stream_, bhttp::make_chunk_last(),
                     [self = shared_from_this()](ErrorCode ec, size_t) {
                       if (self->state_ != State::kStreaming) return;
                       if (ec) return self->DoClose();
                       self->writing_ = false;
                       self->StopWatchingHangup();
                       self->serializer_.reset();
                       if (!self->stream_head_.keep_alive()) {
                         self->state_ = State::kWriting;
                         return self->Linger();
                       }
                       self->EndOfRequest();
                     });
    return;
  }
  stream_.expires_never();
  ArmHeartbeat();
}

void Connection::ArmHeartbeat() {
  if (heartbeat_every_ == absl::InfiniteDuration() || heartbeat_.empty()) {
    return;
  }
  heartbeat_timer_.expires_after(ToSteady(heartbeat_every_));
  heartbeat_timer_.async_wait(
      [self = shared_from_this(), seq = seq_](ErrorCode ec) {
        if (ec || seq != self->seq_ || self->state_ != State::kStreaming ||
            self->writing_ || self->finish_requested_) {
          return;
        }
        self->queue_.push_back(self->heartbeat_);
        self->queued_bytes_ += self->heartbeat_.size();
        self->PumpStream();
      });
}

void Connection::DoEvict() {
  if (state_ == State::kIdle) {
    // The last bytes of a keep-alive client may cross this close, as with
    // any idle close; HTTP clients retry a request on a reused connection
    // that closes before answering.
    return DoClose();
  }
  // Closed already (it ends, which frees its place), or a request began
  // since it was chosen: it stays.
  if (state_ != State::kClosed) server_.EvictionFailed(id_);
}

void Connection::DoDrain() {
  if (state_ == State::kIdle || state_ == State::kReadingHead ||
      state_ == State::kReadingBody) {
    DoClose();
  }
}

void Connection::ReleaseExchange(bool cancel) {
  std::shared_ptr<ExchangeImpl> exchange = exchange_.lock();
  exchange_.reset();
  if (exchange == nullptr) return;  // its handler let it go already
  if (cancel) exchange->Cancel();
  // The exchange no longer holds this connection, so that a handler may
  // keep it (past the server's Shutdown too) without keeping the
  // connection. (Callers hold the connection: this is never its last owner.)
  exchange->Detach();
}

void Connection::DoClose() {
  if (state_ == State::kClosed) return;
  if (state_ == State::kIdle) server_.SetIdle(id_, false);
  const bool in_flight = InFlight();
  state_ = State::kClosed;
  watching_ = false;
  heartbeat_timer_.cancel();
  linger_timer_.cancel();
  ErrorCode ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
  // A chunk write still out reads queue_.front() until its handler runs.
  queue_.erase(queue_.begin() + (writing_ && !queue_.empty() ? 1 : 0),
               queue_.end());
  if (counted_busy_) {
    counted_busy_ = false;
    server_.SetBusy(false);
  }
  ReleaseExchange(/*cancel=*/in_flight);
}

}  // namespace

int StatusOf(Refusal refusal) {
  switch (refusal) {
    case Refusal::kMalformed: return 400;
    case Refusal::kLengthRequired: return 411;
    case Refusal::kBodyTooLarge: return 413;
    case Refusal::kUriTooLong: return 414;
    case Refusal::kHeadersTooLarge: return 431;
    case Refusal::kBadHost: return 400;
    case Refusal::kHandlerDropped: return 500;
  }
  return 500;
}

absl::string_view Request::header(absl::string_view name) const {
  for (const Header& h : headers) {
    if (absl::EqualsIgnoreCase(h.name, name)) return h.value;
  }
  return {};
}

bool Request::has_header(absl::string_view name) const {
  for (const Header& h : headers) {
    if (absl::EqualsIgnoreCase(h.name, name)) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options,
                                                      Handler handler) {
  if (!options.refusal) {
    return absl::InvalidArgumentError("http::Server needs a refusal responder");
  }
  auto server =
      std::make_unique<ServerImpl>(std::move(options), std::move(handler));
  if (absl::Status listening = server->Listen(); !listening.ok()) {
    return listening;
  }
  server->Run();
  return server;
}

}  // namespace coach::http
