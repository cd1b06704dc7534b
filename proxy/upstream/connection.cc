#include "proxy/upstream/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>
#include <climits>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/base/const_init.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/log.h"
#include "proxy/upstream/impl.h"

namespace coach::proxy::upstream_internal {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using ErrorCode = boost::system::error_code;

// HTTP/2 flow control: what the server may send before we acknowledge.
constexpr int32_t kStreamWindow = 4 << 20;
constexpr int32_t kConnectionWindow = 64 << 20;
constexpr size_t kReadChunk = 64 << 10;
// Bytes gathered into one socket write at most.
constexpr size_t kWriteBatch = 256 << 10;
// HTTP/2 error codes (RFC 9113 §7) and GOAWAY's debug data for pings.
constexpr uint32_t kEnhanceYourCalm = 0xb;
constexpr absl::string_view kTooManyPings = "too_many_pings";

absl::Status Unavailable(absl::string_view message) {
  return absl::UnavailableError(message);
}

std::string AuthorityOf(const tcp::endpoint& endpoint) {
  return endpoint.address().is_v6()
             ? absl::StrCat("[", endpoint.address().to_string(),
                            "]:", endpoint.port())
             : absl::StrCat(endpoint.address().to_string(), ":",
                            endpoint.port());
}

absl::string_view View(const uint8_t* bytes, size_t size) {
  return absl::string_view(reinterpret_cast<const char*>(bytes), size);
}

// A TLS failure is an operator's error (a CA, a name, a certificate): said
// in the log, but once per distinct failure and then at most every 30 s,
// not at every reconnection attempt.
void WarnTlsFailure(const std::string& why) {
  static absl::Mutex mu(absl::kConstInit);
  static std::string* last = new std::string;
  static absl::Time last_time = absl::InfinitePast();
  {
    absl::MutexLock lock(&mu);
    const absl::Time now = absl::Now();
    if (*last == why && now - last_time < absl::Seconds(30)) return;
    *last = why;
    last_time = now;
  }
  LogWarning("upstream: %s", why);
}

}  // namespace

Connection::Connection(std::shared_ptr<ConnectionOwner> owner,
                       const Strand& strand, tcp::endpoint endpoint,
                       const ConnectionOptions& options)
    : owner_(std::move(owner)),
      strand_(strand),
      endpoint_(std::move(endpoint)),
      authority_(AuthorityOf(endpoint_)),
      options_(options),
      socket_(strand_),
      connect_timer_(strand_),
      keepalive_timer_(strand_),
      in_(std::make_unique<uint8_t[]>(kReadChunk)) {}

Connection::~Connection() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

void Connection::Start() {
  connect_timer_.expires_after(
      absl::ToChronoNanoseconds(options_.connect_timeout));
  connect_timer_.async_wait([self = shared_from_this()](ErrorCode ec) {
    if (!ec && !self->ready_) {
      self->Close(self->session_ != nullptr
                      ? "no HTTP/2 SETTINGS from the server in time"
                  : self->tls_ != nullptr ? "TLS handshake timed out"
                                          : "connection attempt timed out");
    }
  });
  socket_.async_connect(endpoint_, [self = shared_from_this()](ErrorCode ec) {
    self->OnConnected(ec);
  });
}

void Connection::OnConnected(const ErrorCode& ec) {
  if (closed_) return;
  if (ec) return Close(absl::StrCat("connect: ", ec.message()));
  ErrorCode ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  if (options_.keepalive_time != absl::InfiniteDuration()) {
    // Unacknowledged bytes older than this drop the connection too (a
    // server whose host vanished), as gRPC does with keepalive on.
    const unsigned int ms = static_cast<unsigned int>(std::clamp<int64_t>(
        absl::ToInt64Milliseconds(options_.keepalive_timeout), 1, UINT_MAX));
    setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_USER_TIMEOUT, &ms,
               sizeof(ms));
  }
  if (options_.tls == nullptr) return StartSession();
  tls_context_ = options_.tls->Current();
  tls_ =
      std::make_unique<net::ssl::stream<tcp::socket&>>(socket_, *tls_context_);
  if (!PrepareTlsClient(tls_->native_handle(), options_.tls_name)) {
    return Close(absl::StrCat("TLS: cannot check the server's name \"",
                              options_.tls_name, "\""));
  }
  tls_->async_handshake(
      net::ssl::stream_base::client,
      [self = shared_from_this()](ErrorCode ec) { self->OnHandshake(ec); });
}

void Connection::OnHandshake(const ErrorCode& ec) {
  if (closed_) return;
  if (ec) {
    // The server's certificate refused (another CA, another name), a server
    // that does not speak TLS, or one that refused our certificate.
    std::string why = ec.message();
    const long verify = SSL_get_verify_result(tls_->native_handle());
    if (verify != X509_V_OK) {
      why = absl::StrCat("certificate verify failed: ",
                         X509_verify_cert_error_string(verify));
    }
    why = absl::StrCat("TLS handshake with ", authority_, " (name ",
                       options_.tls_name, "): ", why);
    WarnTlsFailure(why);
    return Close(why);
  }
  if (absl::Status alpn = CheckAlpn(tls_->native_handle(), "h2"); !alpn.ok()) {
    const std::string why =
        absl::StrCat("TLS with ", authority_, ": ", alpn.message());
    WarnTlsFailure(why);
    return Close(why);
  }
  StartSession();
}

void Connection::StartSession() {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks,
                                                          OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks,
                                                            OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, OnFrameRecv);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks,
                                                           OnFrameNotSent);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks,
                                                         OnStreamClose);
  nghttp2_option* option = nullptr;
  nghttp2_option_new(&option);
  nghttp2_option_set_max_send_header_block_length(
      option, std::max<size_t>(options_.max_header_list_bytes, 16 << 10));
  const int created =
      nghttp2_session_client_new2(&session_, callbacks, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (created != 0) {
    session_ = nullptr;
    return Close("nghttp2 session");
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<uint32_t>(
           std::min<size_t>(options_.max_header_list_bytes, UINT32_MAX))},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings,
                          std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        kConnectionWindow);
  last_read_ = Clock::now();
  Flush();
  Read();
}

template <typename Handler>
void Connection::ReadSome(Handler&& handler) {
  if (tls_ != nullptr) {
    tls_->async_read_some(net::buffer(in_.get(), kReadChunk),
                          std::forward<Handler>(handler));
  } else {
    socket_.async_read_some(net::buffer(in_.get(), kReadChunk),
                            std::forward<Handler>(handler));
  }
}

template <typename Handler>
void Connection::WriteOut(Handler&& handler) {
  if (tls_ != nullptr) {
    net::async_write(*tls_, net::buffer(out_), std::forward<Handler>(handler));
  } else {
    net::async_write(socket_, net::buffer(out_),
                     std::forward<Handler>(handler));
  }
}

void Connection::Read() {
  ReadSome([self = shared_from_this()](ErrorCode ec, size_t n) {
    if (self->closed_) return;
    if (ec) {
      // A TLS server that closes without close_notify: stream_truncated.
      return self->Close(ec == net::error::eof ||
                                 ec == net::ssl::error::stream_truncated
                             ? std::string("closed by the server")
                             : ec.message());
    }
    self->last_read_ = Clock::now();
    const ssize_t used =
        nghttp2_session_mem_recv(self->session_, self->in_.get(), n);
    self->owner_->RunDeferred();
    if (used < 0) {
      return self->Close(
          absl::StrCat("HTTP/2: ", nghttp2_strerror(static_cast<int>(used))));
    }
    self->Flush();
    if (!self->closed_) self->Read();
  });
}

void Connection::ScheduleFlush() {
  if (flush_scheduled_ || closed_) return;
  flush_scheduled_ = true;
  net::post(strand_, [self = shared_from_this()] {
    self->flush_scheduled_ = false;
    self->Flush();
  });
}

void Connection::Flush() {
  if (writing_ || closed_ || session_ == nullptr) return;
  out_.clear();
  while (out_.size() < kWriteBatch) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      owner_->RunDeferred();
      return Close(
          absl::StrCat("HTTP/2: ", nghttp2_strerror(static_cast<int>(n))));
    }
    if (n == 0) break;
    out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  owner_->RunDeferred();
  if (closed_) return;
  if (out_.empty()) {
    if (!nghttp2_session_want_read(session_) &&
        !nghttp2_session_want_write(session_)) {
      return Close("session ended");
    }
    return CloseIfDrained();
  }
  writing_ = true;
  WriteOut([self = shared_from_this()](ErrorCode ec, size_t) {
    self->writing_ = false;
    if (self->closed_) return;
    if (ec) return self->Close(ec.message());
    self->Flush();
  });
}

void Connection::Drain() {
  if (closed_) return;
  going_away_ = true;
  if (!ready_) return Close("server left the target's name");
  CloseIfDrained();
}

void Connection::CloseIfDrained() {
  if (going_away_ && streams_.empty() && !closed_) Close("drained");
}

Call* Connection::CallOf(int32_t stream_id) {
  const auto found = streams_.find(stream_id);
  return found == streams_.end() ? nullptr : found->second;
}

void Connection::Close(absl::string_view why) {
  if (closed_) return;
  closed_ = true;
  ErrorCode ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  connect_timer_.cancel();
  keepalive_timer_.cancel();
  if (ready_ && !owner_->stopping()) {
    // A connection the server asked to go away, or whose address left the
    // name, ends as planned once drained.
    if (going_away_ && streams_.empty()) {
      LogInfo("upstream: connection to %s closed: %s", authority_, why);
    } else {
      LogWarning("upstream: connection to %s closed: %s", authority_, why);
    }
  }
  // Every stream still ours ends; their calls may retry elsewhere. One
  // whose trailers arrived keeps the server's status; one whose HEADERS
  // never left (nghttp2 has no stream for it yet) was never seen by the
  // server: any call may go again at once.
  std::vector<int32_t> open;
  open.reserve(streams_.size());
  for (const auto& [id, call] : streams_) open.push_back(id);
  std::sort(open.begin(), open.end());
  for (int32_t id : open) {
    Call* call = CallOf(id);
    if (call == nullptr) continue;
    const bool never_sent = session_ != nullptr && nghttp2_session_find_stream(
                                                       session_, id) == nullptr;
    EndStream(id,
              call->reader->ended()
                  ? call->reader->Finish(0)
                  : Unavailable(absl::StrCat(
                        "connection to coach-server lost (", why, ")")),
              /*refused=*/never_sent && !call->reader->responded());
  }
  owner_->ConnectionClosed(this);
  owner_->RunDeferred();
}

bool Connection::StartStream(Call& call) {
  if (!ready() || !nghttp2_session_check_request_allowed(session_)) {
    return false;
  }
  const std::string timeout = wire::GrpcTimeout(call.deadline - absl::Now());
  std::vector<nghttp2_nv> headers;
  headers.reserve(10 + call.options.metadata.size());
  const auto add = [&headers](absl::string_view name, absl::string_view value,
                              uint8_t flags = NGHTTP2_NV_FLAG_NO_COPY_NAME) {
    headers.push_back(nghttp2_nv{
        const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
        const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())),
        name.size(), value.size(), flags});
  };
  constexpr uint8_t kStatic =
      NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
  add(":method", "POST", kStatic);
  add(":scheme", tls_ != nullptr ? "https" : "http", kStatic);
  add(":path", call.method);
  add(":authority", authority_);
  add("content-type", "application/grpc", kStatic);
  add("te", "trailers", kStatic);
  add("user-agent", options_.user_agent);
  add("grpc-timeout", timeout);
  if (!call.options.request_id.empty()) {
    add(kRequestIdMetadata, call.options.request_id);
  }
  if (!call.options.authorization.empty()) {
    add(kAuthorizationMetadata, AuthorizationValue(call.options.authorization));
  }
  for (const auto& [key, value] : call.options.metadata) {
    add(key, value, NGHTTP2_NV_FLAG_NONE);
  }
  nghttp2_data_provider body;
  body.source.ptr = nullptr;
  body.read_callback = ReadRequest;
  const int32_t id = nghttp2_submit_request(session_, nullptr, headers.data(),
                                            headers.size(), &body, nullptr);
  if (id < 0) {
    // Stream ids used up, most likely: this connection takes no more.
    going_away_ = true;
    owner_->ConnectionGoingAway(this, /*too_many_pings=*/false);
    return false;
  }
  call.connection = this;
  call.stream_id = id;
  streams_.emplace(id, &call);
  ScheduleFlush();
  return true;
}

void Connection::ResetStream(int32_t stream_id) {
  if (closed_ || stream_id <= 0) return;
  streams_.erase(stream_id);
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id,
                            NGHTTP2_CANCEL);
  ScheduleFlush();
}

ssize_t Connection::ReadRequest(nghttp2_session*, int32_t stream_id,
                                uint8_t* buf, size_t length,
                                uint32_t* data_flags, nghttp2_data_source*,
                                void* user_data) {
  Call* call = static_cast<Connection*>(user_data)->CallOf(stream_id);
  if (call == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  const size_t n = std::min(length, call->framed.size() - call->request_sent);
  std::memcpy(buf, call->framed.data() + call->request_sent, n);
  call->request_sent += n;
  if (call->request_sent == call->framed.size()) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  }
  return static_cast<ssize_t>(n);
}

void Connection::RefuseStream(int32_t stream_id, absl::Status status) {
  // The call hears nothing more from this stream: its end is `status`.
  Call* call = CallOf(stream_id);
  if (call == nullptr) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id,
                            NGHTTP2_CANCEL);
  EndStream(stream_id, std::move(status), /*refused=*/false);
}

int Connection::OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame,
                               void* user_data) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto* self = static_cast<Connection*>(user_data);
  Call* call = self->CallOf(frame->hd.stream_id);
  if (call == nullptr) return 0;
  call->reader->BeginHeaders((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
  return 0;
}

int Connection::OnHeader(nghttp2_session*, const nghttp2_frame* frame,
                         const uint8_t* name, size_t namelen,
                         const uint8_t* value, size_t valuelen, uint8_t,
                         void* user_data) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto* self = static_cast<Connection*>(user_data);
  Call* call = self->CallOf(frame->hd.stream_id);
  if (call == nullptr) return 0;
  absl::Status read =
      call->reader->OnHeader(View(name, namelen), View(value, valuelen));
  if (!read.ok()) self->RefuseStream(frame->hd.stream_id, std::move(read));
  return 0;
}

int Connection::OnDataChunk(nghttp2_session*, uint8_t, int32_t stream_id,
                            const uint8_t* data, size_t len, void* user_data) {
  auto* self = static_cast<Connection*>(user_data);
  Call* call = self->CallOf(stream_id);
  if (call == nullptr || call->finished) return 0;
  // Messages are delivered now: nothing of ours runs again inside this
  // callback (a stream's callback may cancel its call; Deliver then stops).
  absl::Status read = call->reader->OnData(
      View(data, len),
      [call](std::string& message) { return call->Deliver(message); });
  if (!read.ok()) self->RefuseStream(stream_id, std::move(read));
  return 0;
}

int Connection::OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame,
                            void* user_data) {
  auto* self = static_cast<Connection*>(user_data);
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      Call* call = self->CallOf(frame->hd.stream_id);
      if (call == nullptr) return 0;
      absl::Status read = call->reader->EndHeaders();
      if (!read.ok()) self->RefuseStream(frame->hd.stream_id, std::move(read));
      return 0;
    }
    case NGHTTP2_SETTINGS:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0 && !self->ready_) {
        self->ready_ = true;
        self->connect_timer_.cancel();
        if (self->options_.keepalive_time != absl::InfiniteDuration()) {
          self->ArmKeepalive(
              self->last_read_ +
              absl::ToChronoNanoseconds(self->options_.keepalive_time));
        }
        self->owner_->Defer([self = self->shared_from_this()] {
          if (!self->closed_) self->owner_->ConnectionReady(self.get());
        });
      }
      return 0;
    case NGHTTP2_RST_STREAM: {
      // Ends the attempt now, its code known for what it is (nghttp2 closes
      // the stream with the same code, NO_ERROR included, as if it had
      // ended normally).
      Call* call = self->CallOf(frame->hd.stream_id);
      if (call == nullptr) return 0;
      const uint32_t code = frame->rst_stream.error_code;
      self->EndStream(
          frame->hd.stream_id, call->reader->Finish(code, /*reset=*/true),
          code == NGHTTP2_REFUSED_STREAM && !call->reader->responded());
      return 0;
    }
    case NGHTTP2_PING:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0 &&
          self->ping_outstanding_) {
        self->ping_outstanding_ = false;
        self->ArmKeepalive(
            self->last_read_ +
            absl::ToChronoNanoseconds(self->options_.keepalive_time));
      }
      return 0;
    case NGHTTP2_GOAWAY:
      if (!self->going_away_) {
        self->going_away_ = true;
        const bool too_many_pings =
            frame->goaway.error_code == kEnhanceYourCalm &&
            View(frame->goaway.opaque_data, frame->goaway.opaque_data_len) ==
                kTooManyPings;
        self->owner_->Defer([self = self->shared_from_this(), too_many_pings] {
          self->owner_->ConnectionGoingAway(self.get(), too_many_pings);
          self->CloseIfDrained();
        });
      }
      return 0;
    default: return 0;
  }
}

int Connection::OnFrameNotSent(nghttp2_session*, const nghttp2_frame* frame,
                               int, void* user_data) {
  // A request's HEADERS that could not go (the connection is going away):
  // the server never saw the call.
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto* self = static_cast<Connection*>(user_data);
  if (self->CallOf(frame->hd.stream_id) == nullptr) return 0;
  self->EndStream(frame->hd.stream_id,
                  Unavailable("request not sent: connection going away"),
                  /*refused=*/true);
  return 0;
}

int Connection::OnStreamClose(nghttp2_session*, int32_t stream_id,
                              uint32_t error_code, void* user_data) {
  auto* self = static_cast<Connection*>(user_data);
  Call* call = self->CallOf(stream_id);
  if (call == nullptr) return 0;
  const bool refused =
      error_code == NGHTTP2_REFUSED_STREAM && !call->reader->responded();
  self->EndStream(stream_id, call->reader->Finish(error_code), refused);
  return 0;
}

void Connection::EndStream(int32_t stream_id, absl::Status status,
                           bool refused) {
  Call* call = CallOf(stream_id);
  if (call == nullptr) return;
  streams_.erase(stream_id);
  owner_->Defer([owner = owner_, call = call->shared_from_this(),
                 status = std::move(status), refused]() mutable {
    call->connection = nullptr;
    call->stream_id = 0;
    owner->AttemptEnded(*call, std::move(status), refused);
  });
  if (!closed_) {
    owner_->Defer([self = shared_from_this()] { self->CloseIfDrained(); });
  }
}

void Connection::ArmKeepalive(Clock::time_point when) {
  if (closed_) return;
  keepalive_timer_.expires_at(when);
  keepalive_timer_.async_wait([self = shared_from_this()](ErrorCode ec) {
    if (ec) return;  // re-armed, or closed
    self->OnKeepaliveTimer();
  });
}

void Connection::OnKeepaliveTimer() {
  if (closed_) return;
  const Clock::time_point now = Clock::now();
  if (ping_outstanding_) {
    return Close(
        absl::StrCat("no answer to a keepalive PING within ",
                     absl::FormatDuration(options_.keepalive_timeout)));
  }
  const Clock::time_point due =
      last_read_ + absl::ToChronoNanoseconds(options_.keepalive_time);
  if (now < due) return ArmKeepalive(due);
  // Nothing heard for keepalive_time: is the server still there?
  if (nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr) != 0) return;
  ping_outstanding_ = true;
  ArmKeepalive(now + absl::ToChronoNanoseconds(options_.keepalive_timeout));
  Flush();
}

}  // namespace coach::proxy::upstream_internal
