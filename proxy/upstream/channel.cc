#include "proxy/upstream.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include "absl/strings/string_view.h"
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "http/server.h"

namespace coach::proxy {
namespace upstream_internal {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using ErrorCode = boost::system::error_code;
using Strand = net::strand<net::io_context::executor_type>;

namespace {

// Reconnection: the first retry after a failed attempt comes this soon,
// then each wait grows by this factor (with this much jitter either way),
// up to UpstreamOptions::reconnect_max_backoff (gRPC's connection backoff).
constexpr absl::Duration kInitialReconnectBackoff = absl::Milliseconds(100);
constexpr double kReconnectMultiplier = 1.6;
constexpr double kReconnectJitter = 0.2;
// Retries of a read that ended UNAVAILABLE (gRPC's retryPolicy, A6).
constexpr int kMaxAttempts = 3;
constexpr absl::Duration kRetryInitialBackoff = absl::Milliseconds(50);
constexpr absl::Duration kRetryMaxBackoff = absl::Milliseconds(500);
constexpr double kRetryMultiplier = 2;
// A call the server never saw is tried again at most this often.
constexpr int kMaxTransparentRetries = 3;
// Retry throttling (gRPC's retryThrottling): each failure costs a token,
// each success gives back kTokenRatio; no retries at or below half. 100,
// not gRPC's usual 10: the few calls in flight on a server that dies must
// not switch retries off for the reads that follow them.
constexpr double kMaxTokens = 100;
constexpr double kTokenRatio = 0.1;
// HTTP/2 flow control: what the server may send before we acknowledge.
constexpr int32_t kStreamWindow = 4 << 20;
constexpr int32_t kConnectionWindow = 64 << 20;
// The largest header block accepted from a server.
constexpr uint32_t kMaxHeaderListBytes = 64 << 10;
constexpr size_t kReadChunk = 64 << 10;
// Bytes gathered into one socket write at most.
constexpr size_t kWriteBatch = 256 << 10;
// gRPC's message prefix: compressed flag, then a 32-bit big-endian length.
constexpr size_t kPrefixBytes = 5;

grpc::Status Unavailable(std::string message) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, std::move(message));
}

// gRPC's mapping of an HTTP status that came without grpc-status.
grpc::StatusCode CodeOfHttpStatus(int status) {
  switch (status) {
    case 400: return grpc::StatusCode::INTERNAL;
    case 401: return grpc::StatusCode::UNAUTHENTICATED;
    case 403: return grpc::StatusCode::PERMISSION_DENIED;
    case 404: return grpc::StatusCode::UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504: return grpc::StatusCode::UNAVAILABLE;
    default: return grpc::StatusCode::UNKNOWN;
  }
}

// gRPC's mapping of a stream reset that came without grpc-status.
grpc::StatusCode CodeOfReset(uint32_t error_code) {
  switch (error_code) {
    case NGHTTP2_REFUSED_STREAM: return grpc::StatusCode::UNAVAILABLE;
    case NGHTTP2_CANCEL: return grpc::StatusCode::CANCELLED;
    case NGHTTP2_ENHANCE_YOUR_CALM: return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case NGHTTP2_INADEQUATE_SECURITY: return grpc::StatusCode::PERMISSION_DENIED;
    default: return grpc::StatusCode::INTERNAL;
  }
}

// grpc-timeout: at most 8 digits, in the finest unit that fits.
std::string GrpcTimeout(absl::Duration left) {
  const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(left));
  if (ms < 100'000'000) return absl::StrCat(ms, "m");
  return absl::StrCat(std::min<int64_t>(99'999'999, ms / 1000), "S");
}

bool Printable(absl::string_view value) {
  return std::all_of(value.begin(), value.end(),
                     [](char c) { return c >= 0x20 && c < 0x7F; });
}

// One address the target names: a literal one, or a name to resolve.
struct TargetAddress {
  std::string host;
  std::string port;
};

// "dns:///h:p", "dns:h:p", "h:p", "ipv4:a:p,b:p", "ipv6:[a]:p,[b]:p".
std::vector<TargetAddress> ParseTarget(absl::string_view target) {
  std::vector<TargetAddress> out;
  absl::string_view rest = target;
  if (absl::ConsumePrefix(&rest, "dns:")) {
    // dns:[//authority/]host:port
    if (absl::ConsumePrefix(&rest, "//")) {
      const size_t slash = rest.find('/');
      rest = slash == absl::string_view::npos ? absl::string_view()
                                             : rest.substr(slash + 1);
    }
  } else if (!absl::ConsumePrefix(&rest, "ipv4:")) {
    absl::ConsumePrefix(&rest, "ipv6:");
  }
  for (absl::string_view one : absl::StrSplit(rest, ',', absl::SkipEmpty())) {
    one = absl::StripAsciiWhitespace(one);
    TargetAddress address;
    size_t colon = one.rfind(':');
    if (!one.empty() && one.front() == '[') {  // [v6]:port
      const size_t close = one.find(']');
      if (close == absl::string_view::npos) continue;
      address.host = std::string(one.substr(1, close - 1));
      colon = one.find(':', close);
    } else if (colon != absl::string_view::npos) {
      address.host = std::string(one.substr(0, colon));
    }
    if (colon == absl::string_view::npos) {
      address.host = std::string(one);
      address.port = "443";  // gRPC's default port
    } else {
      address.port = std::string(one.substr(colon + 1));
    }
    if (!address.host.empty()) out.push_back(std::move(address));
  }
  return out;
}

class Connection;

}  // namespace

// One call, through its attempts. Lives on its shard's strand once posted
// there; Cancel() may come from any thread.
struct UpstreamCallImpl final
    : public UpstreamCall,
      public std::enable_shared_from_this<UpstreamCallImpl> {
  void Cancel() override;

  std::shared_ptr<Shard> shard;
  std::string method;
  bool read = false;  // retried when UNAVAILABLE
  bool streaming = false;
  CallOptions options;
  std::string framed;  // the request, with gRPC's prefix
  absl::Time deadline;
  Upstream::UnaryDone unary_done;
  Upstream::StreamMessage on_message;
  Upstream::StreamDone stream_done;

  // Strand-only from here.
  bool finished = false;
  int attempts = 0;
  int transparent_retries = 0;
  std::multimap<absl::Time, UpstreamCallImpl*>::iterator deadline_entry;
  bool has_deadline_entry = false;
  std::unique_ptr<net::steady_timer> retry_timer;
  // The attempt in progress.
  Connection* connection = nullptr;
  int32_t stream_id = 0;
  size_t request_sent = 0;
  int http_status = 0;
  bool grpc_content_type = false;
  bool compressed = false;  // grpc-encoding other than identity
  std::optional<int> grpc_status;
  std::string grpc_message;
  std::string grpc_details;
  std::string buffer;  // response bytes not yet cut into messages
  size_t buffer_start = 0;
  int messages = 0;
  std::string response;  // unary: the one message

  void ResetAttempt() {
    connection = nullptr;
    stream_id = 0;
    request_sent = 0;
    http_status = 0;
    grpc_content_type = false;
    compressed = false;
    grpc_status.reset();
    grpc_message.clear();
    grpc_details.clear();
    buffer.clear();
    buffer_start = 0;
    response.clear();
    if (options.server_metadata != nullptr) {
      options.server_metadata->values.clear();
    }
  }
};

// One event-loop shard: its strand, one Subchannel per server address, the
// calls in progress. Every member is used on the strand only.
class Shard : public std::enable_shared_from_this<Shard> {
 public:
  Shard(net::io_context& loop, const UpstreamOptions& options);

  Strand& strand() { return strand_; }
  const UpstreamOptions& options() const { return options_; }
  // A method of UpstreamOptions::read_methods (retried when UNAVAILABLE).
  bool IsRead(const std::string& method) const {
    return read_methods_.contains(method);
  }
  bool ready() const { return ready_count_.load(std::memory_order_relaxed) > 0; }
  bool stopping() const { return shut_down_; }

  void Begin();  // resolves the target and connects
  void Start(std::shared_ptr<UpstreamCallImpl> call);
  void Finish(UpstreamCallImpl& call, grpc::Status status);
  // The attempt on a stream ended: retried or finished.
  void AttemptEnded(UpstreamCallImpl& call, grpc::Status status,
                    bool refused);
  void Shutdown();

  // Connections report here.
  void ConnectionReady(Connection* connection);
  void ConnectionGoingAway(Connection* connection);
  void ConnectionClosed(Connection* connection);

  // Work that must not run inside nghttp2's callbacks (user callbacks,
  // new streams): queued, then run by the connection once nghttp2 returns.
  void Defer(absl::AnyInvocable<void()> work) {
    deferred_.push_back(std::move(work));
  }
  void RunDeferred() {
    while (!deferred_.empty()) {
      std::vector<absl::AnyInvocable<void()>> work;
      work.swap(deferred_);
      for (auto& fn : work) fn();
    }
  }

 private:
  struct Subchannel {
    tcp::endpoint endpoint;
    size_t name = 0;  // index of the TargetAddress it came from
    std::shared_ptr<Connection> connection;  // current, maybe connecting
    bool ready = false;
    bool failed = false;  // failed since it was last ready
    absl::Duration backoff = kInitialReconnectBackoff;
    std::unique_ptr<net::steady_timer> reconnect_timer;
  };

  void Dispatch(std::shared_ptr<UpstreamCallImpl> call);
  // Every server failed since last ready: calls fail at once.
  bool Failing() const;
  void FailWaiting();
  void DispatchWaiting();
  void Resolve(size_t name);
  void AddEndpoints(size_t name, const tcp::resolver::results_type& found);
  void Connect(Subchannel& subchannel);
  void ScheduleReconnect(Subchannel& subchannel);
  Subchannel* SubchannelOf(Connection* connection);
  void TrackDeadline(UpstreamCallImpl& call);
  void ArmDeadlineTimer();
  void OnDeadlineTimer();
  absl::Duration Jittered(absl::Duration d, double jitter);

  Strand strand_;
  const UpstreamOptions options_;
  const absl::flat_hash_set<std::string> read_methods_;
  const std::vector<TargetAddress> names_;
  std::vector<bool> resolving_;  // per name
  std::vector<bool> resolved_;   // per name: at least once
  std::unique_ptr<tcp::resolver> resolver_;
  std::deque<Subchannel> subchannels_;  // stable addresses
  std::vector<std::shared_ptr<Connection>> draining_;
  size_t next_ = 0;  // round robin
  std::atomic<int> ready_count_{0};
  std::deque<std::shared_ptr<UpstreamCallImpl>> waiting_;
  absl::flat_hash_map<UpstreamCallImpl*, std::shared_ptr<UpstreamCallImpl>>
      live_;
  std::multimap<absl::Time, UpstreamCallImpl*> deadlines_;
  net::steady_timer deadline_timer_;
  absl::Time deadline_armed_ = absl::InfiniteFuture();
  double tokens_ = kMaxTokens;
  std::vector<absl::AnyInvocable<void()>> deferred_;
  std::mt19937 random_{std::random_device{}()};
  bool shut_down_ = false;
};

namespace {

// One HTTP/2 connection to one server, carrying gRPC calls as streams.
// Strand-only; kept alive by its pending operations and its subchannel.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Shard> shard, tcp::endpoint endpoint)
      : shard_(std::move(shard)),
        endpoint_(std::move(endpoint)),
        authority_(endpoint_.address().is_v6()
                       ? absl::StrCat("[", endpoint_.address().to_string(),
                                      "]:", endpoint_.port())
                       : absl::StrCat(endpoint_.address().to_string(), ":",
                                      endpoint_.port())),
        socket_(shard_->strand()),
        connect_timer_(shard_->strand()) {}

  ~Connection() {
    if (session_ != nullptr) nghttp2_session_del(session_);
  }

  const tcp::endpoint& endpoint() const { return endpoint_; }
  bool ready() const { return ready_ && !going_away_ && !closed_; }
  bool closed() const { return closed_; }

  void Start() {
    connect_timer_.expires_after(absl::ToChronoNanoseconds(
        shard_->options().connect_timeout));
    connect_timer_.async_wait([self = shared_from_this()](ErrorCode ec) {
      if (!ec && !self->ready_) self->Close("connection attempt timed out");
    });
    socket_.async_connect(endpoint_, [self = shared_from_this()](ErrorCode ec) {
      self->OnConnected(ec);
    });
  }

  // Starts `call`'s attempt on a new stream; false if this connection takes
  // no more streams (the call is untouched).
  bool StartStream(UpstreamCallImpl& call);

  // Ends the stream of a call that ended on its own (deadline, cancel).
  void ResetStream(int32_t stream_id) {
    if (closed_ || stream_id <= 0) return;
    nghttp2_session_set_stream_user_data(session_, stream_id, nullptr);
    streams_.erase(stream_id);
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id,
                              NGHTTP2_CANCEL);
    ScheduleFlush();
  }

  // Closes the socket; every stream ends UNAVAILABLE (`why`).
  void Close(absl::string_view why);

 private:
  void OnConnected(ErrorCode ec);
  void Read();
  void ScheduleFlush() {
    if (flush_scheduled_ || closed_) return;
    flush_scheduled_ = true;
    net::post(shard_->strand(), [self = shared_from_this()] {
      self->flush_scheduled_ = false;
      self->Flush();
    });
  }
  void Flush();
  // A connection told to go away closes once its last stream ended.
  void CloseIfDrained() {
    if (going_away_ && streams_.empty() && !closed_) Close("drained");
  }
  UpstreamCallImpl* CallOf(int32_t stream_id) {
    return static_cast<UpstreamCallImpl*>(
        nghttp2_session_get_stream_user_data(session_, stream_id));
  }
  // The attempt on `stream_id` ended: hands it back to the shard.
  void EndStream(int32_t stream_id, grpc::Status status, bool refused);
  grpc::Status StatusAtClose(UpstreamCallImpl& call, uint32_t error_code);
  void OnMessageBytes(UpstreamCallImpl& call, int32_t stream_id,
                      const uint8_t* data, size_t size);

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame,
                      const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t flags,
                      void* user_data);
  static int OnDataChunk(nghttp2_session* session, uint8_t flags,
                         int32_t stream_id, const uint8_t* data, size_t len,
                         void* user_data);
  static int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame,
                         void* user_data);
  static int OnFrameNotSent(nghttp2_session* session,
                            const nghttp2_frame* frame, int lib_error_code,
                            void* user_data);
  static int OnStreamClose(nghttp2_session* session, int32_t stream_id,
                           uint32_t error_code, void* user_data);
  static ssize_t ReadRequest(nghttp2_session* session, int32_t stream_id,
                             uint8_t* buf, size_t length, uint32_t* data_flags,
                             nghttp2_data_source* source, void* user_data);

  std::shared_ptr<Shard> shard_;
  const tcp::endpoint endpoint_;
  const std::string authority_;
  tcp::socket socket_;
  net::steady_timer connect_timer_;
  nghttp2_session* session_ = nullptr;
  bool ready_ = false;       // the server's SETTINGS arrived
  bool going_away_ = false;  // GOAWAY received: no new streams
  bool closed_ = false;
  bool writing_ = false;
  bool flush_scheduled_ = false;
  absl::flat_hash_set<int32_t> streams_;  // open streams with a call
  std::string out_;
  std::unique_ptr<uint8_t[]> in_ = std::make_unique<uint8_t[]>(kReadChunk);
};

void Connection::OnConnected(ErrorCode ec) {
  if (closed_) return;
  if (ec) return Close(absl::StrCat("connect: ", ec.message()));
  ErrorCode ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
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
  nghttp2_option_set_max_send_header_block_length(option, kMaxHeaderListBytes);
  const int created =
      nghttp2_session_client_new2(&session_, callbacks, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (created != 0) return Close("nghttp2 session");
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderListBytes},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings,
                          std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        kConnectionWindow);
  Flush();
  Read();
}

void Connection::Read() {
  socket_.async_read_some(
      net::buffer(in_.get(), kReadChunk),
      [self = shared_from_this()](ErrorCode ec, size_t n) {
        if (self->closed_) return;
        if (ec) {
          return self->Close(ec == net::error::eof
                                 ? std::string("closed by the server")
                                 : ec.message());
        }
        const ssize_t used =
            nghttp2_session_mem_recv(self->session_, self->in_.get(), n);
        self->shard_->RunDeferred();
        if (used < 0) {
          return self->Close(absl::StrCat(
              "HTTP/2: ", nghttp2_strerror(static_cast<int>(used))));
        }
        self->Flush();
        if (!self->closed_) self->Read();
      });
}

void Connection::Flush() {
  if (writing_ || closed_) return;
  out_.clear();
  while (out_.size() < kWriteBatch) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      shard_->RunDeferred();
      return Close(absl::StrCat("HTTP/2: ",
                                nghttp2_strerror(static_cast<int>(n))));
    }
    if (n == 0) break;
    out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  shard_->RunDeferred();
  if (closed_) return;
  if (out_.empty()) {
    if (!nghttp2_session_want_read(session_) &&
        !nghttp2_session_want_write(session_)) {
      return Close("session ended");
    }
    return CloseIfDrained();
  }
  writing_ = true;
  net::async_write(socket_, net::buffer(out_),
                   [self = shared_from_this()](ErrorCode ec, size_t) {
                     self->writing_ = false;
                     if (self->closed_) return;
                     if (ec) return self->Close(ec.message());
                     self->Flush();
                   });
}

void Connection::Close(absl::string_view why) {
  if (closed_) return;
  closed_ = true;
  ErrorCode ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  connect_timer_.cancel();
  if (ready_ && !shard_->stopping()) {
    LogWarning("upstream: connection to %s closed: %s", authority_, why);
  }
  // Every stream still open ends; their calls may retry elsewhere.
  std::vector<int32_t> open(streams_.begin(), streams_.end());
  std::sort(open.begin(), open.end());
  for (int32_t id : open) {
    EndStream(id,
              Unavailable(absl::StrCat("connection to coach-server lost (",
                                       why, ")")),
              /*refused=*/false);
  }
  shard_->ConnectionClosed(this);
  shard_->RunDeferred();
}

bool Connection::StartStream(UpstreamCallImpl& call) {
  if (!ready() || !nghttp2_session_check_request_allowed(session_)) {
    return false;
  }
  const absl::Duration left = call.deadline - absl::Now();
  const std::string timeout = GrpcTimeout(left);
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
  add(":scheme", "http", kStatic);
  add(":path", call.method);
  add(":authority", authority_);
  add("content-type", "application/grpc", kStatic);
  add("te", "trailers", kStatic);
  add("user-agent", shard_->options().user_agent);
  add("grpc-timeout", timeout);
  if (!call.options.request_id.empty()) {
    add(kRequestIdMetadata, call.options.request_id);
  }
  if (!call.options.authorization.empty()) {
    add(kAuthorizationMetadata, Printable(call.options.authorization)
                                    ? absl::string_view(call.options.authorization)
                                    : absl::string_view("Bearer -"));
  }
  for (const auto& [key, value] : call.options.metadata) {
    add(key, value, NGHTTP2_NV_FLAG_NONE);
  }
  nghttp2_data_provider body;
  body.source.ptr = nullptr;
  body.read_callback = ReadRequest;
  const int32_t id = nghttp2_submit_request(session_, nullptr, headers.data(),
                                            headers.size(), &body, &call);
  if (id < 0) {
    // Stream ids used up, most likely: this connection takes no more.
    going_away_ = true;
    shard_->ConnectionGoingAway(this);
    return false;
  }
  call.connection = this;
  call.stream_id = id;
  streams_.insert(id);
  ScheduleFlush();
  return true;
}

ssize_t Connection::ReadRequest(nghttp2_session* session, int32_t stream_id,
                                uint8_t* buf, size_t length,
                                uint32_t* data_flags, nghttp2_data_source*,
                                void*) {
  auto* call = static_cast<UpstreamCallImpl*>(
      nghttp2_session_get_stream_user_data(session, stream_id));
  if (call == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  const size_t n = std::min(length, call->framed.size() - call->request_sent);
  std::memcpy(buf, call->framed.data() + call->request_sent, n);
  call->request_sent += n;
  if (call->request_sent == call->framed.size()) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  }
  return static_cast<ssize_t>(n);
}

int Connection::OnHeader(nghttp2_session*, const nghttp2_frame* frame,
                         const uint8_t* name_bytes, size_t namelen,
                         const uint8_t* value_bytes, size_t valuelen, uint8_t,
                         void* user_data) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto* self = static_cast<Connection*>(user_data);
  UpstreamCallImpl* call = self->CallOf(frame->hd.stream_id);
  if (call == nullptr) return 0;
  const absl::string_view name(reinterpret_cast<const char*>(name_bytes),
                              namelen);
  const absl::string_view value(reinterpret_cast<const char*>(value_bytes),
                               valuelen);
  if (name == ":status") {
    int status = 0;
    if (absl::SimpleAtoi(value, &status)) call->http_status = status;
  } else if (name == "content-type") {
    call->grpc_content_type = absl::StartsWith(value, "application/grpc");
  } else if (name == "grpc-status") {
    int code = 0;
    call->grpc_status =
        absl::SimpleAtoi(value, &code) && code >= 0 && code <= 16
            ? code
            : static_cast<int>(grpc::StatusCode::UNKNOWN);
  } else if (name == "grpc-message") {
    // Percent-encoded (bytes outside printable ASCII, and '%').
    if (!http::PercentDecode(value, /*plus_is_space=*/false,
                             call->grpc_message)) {
      call->grpc_message = std::string(value);
    }
  } else if (name == "grpc-status-details-bin") {
    // Binary metadata: base64, padding usually left out.
    std::string padded(value);
    padded.append((4 - padded.size() % 4) % 4, '=');
    if (!absl::Base64Unescape(padded, &call->grpc_details)) {
      call->grpc_details.clear();
    }
  } else if (name == "grpc-encoding") {
    call->compressed = value != "identity";
  } else if (call->options.server_metadata != nullptr) {
    ServerMetadata& wanted = *call->options.server_metadata;
    if (std::find(wanted.keys.begin(), wanted.keys.end(), name) !=
        wanted.keys.end()) {
      wanted.values.emplace(std::string(name), std::string(value));
    }
  }
  return 0;
}

void Connection::OnMessageBytes(UpstreamCallImpl& call, int32_t stream_id,
                                const uint8_t* data, size_t size) {
  call.buffer.append(reinterpret_cast<const char*>(data), size);
  const size_t limit =
      static_cast<size_t>(std::max(0, shard_->options().max_response_bytes));
  while (call.buffer.size() - call.buffer_start >= kPrefixBytes) {
    const auto* head =
        reinterpret_cast<const uint8_t*>(call.buffer.data() + call.buffer_start);
    const size_t length = (static_cast<size_t>(head[1]) << 24) |
                          (static_cast<size_t>(head[2]) << 16) |
                          (static_cast<size_t>(head[3]) << 8) | head[4];
    grpc::Status refused;
    if (head[0] != 0) {
      refused = grpc::Status(grpc::StatusCode::INTERNAL,
                             "compressed response (none was asked for)");
    } else if (length > limit) {
      refused = grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("response message of ", length, " bytes, over ",
                       limit));
    } else if (!call.streaming && call.messages > 0) {
      refused = grpc::Status(grpc::StatusCode::INTERNAL,
                             "more than one response to a unary call");
    }
    if (!refused.ok()) {
      nghttp2_session_set_stream_user_data(session_, stream_id, nullptr);
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id,
                                NGHTTP2_CANCEL);
      streams_.erase(stream_id);
      shard_->Defer([shard = shard_, target = call.shared_from_this(),
                     refused] {
        target->connection = nullptr;
        target->stream_id = 0;
        shard->Finish(*target, refused);
      });
      return;
    }
    if (call.buffer.size() - call.buffer_start - kPrefixBytes < length) break;
    std::string message =
        call.buffer.substr(call.buffer_start + kPrefixBytes, length);
    call.buffer_start += kPrefixBytes + length;
    ++call.messages;
    if (call.streaming) {
      // Delivered now: nothing of ours runs again inside this callback.
      if (call.on_message) call.on_message(message);
    } else {
      call.response = std::move(message);
    }
  }
  if (call.buffer_start == call.buffer.size()) {
    call.buffer.clear();
    call.buffer_start = 0;
  }
}

int Connection::OnDataChunk(nghttp2_session*, uint8_t, int32_t stream_id,
                            const uint8_t* data, size_t len, void* user_data) {
  auto* self = static_cast<Connection*>(user_data);
  UpstreamCallImpl* call = self->CallOf(stream_id);
  if (call == nullptr || call->finished) return 0;
  self->OnMessageBytes(*call, stream_id, data, len);
  return 0;
}

int Connection::OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame,
                            void* user_data) {
  auto* self = static_cast<Connection*>(user_data);
  if (frame->hd.type == NGHTTP2_SETTINGS &&
      (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0 && !self->ready_) {
    self->ready_ = true;
    self->connect_timer_.cancel();
    self->shard_->Defer([self = self->shared_from_this()] {
      if (!self->closed_) self->shard_->ConnectionReady(self.get());
    });
  } else if (frame->hd.type == NGHTTP2_GOAWAY && !self->going_away_) {
    self->going_away_ = true;
    self->shard_->Defer([self = self->shared_from_this()] {
      self->shard_->ConnectionGoingAway(self.get());
      self->CloseIfDrained();
    });
  }
  return 0;
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

grpc::Status Connection::StatusAtClose(UpstreamCallImpl& call,
                                       uint32_t error_code) {
  if (call.grpc_status.has_value()) {
    if (*call.grpc_status == 0 && !call.streaming &&
        (call.messages != 1 || call.buffer.size() > call.buffer_start)) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "unary call ended without exactly one response");
    }
    return grpc::Status(static_cast<grpc::StatusCode>(*call.grpc_status),
                        call.grpc_message, call.grpc_details);
  }
  if (call.http_status != 0 && call.http_status != 200) {
    return grpc::Status(CodeOfHttpStatus(call.http_status),
                        absl::StrCat("HTTP status ", call.http_status));
  }
  if (error_code != NGHTTP2_NO_ERROR) {
    return grpc::Status(CodeOfReset(error_code),
                        absl::StrCat("stream reset (",
                                     nghttp2_http2_strerror(error_code), ")"));
  }
  if (call.http_status == 200 && !call.grpc_content_type) {
    return grpc::Status(grpc::StatusCode::UNKNOWN, "not a gRPC response");
  }
  return grpc::Status(grpc::StatusCode::INTERNAL,
                      "stream ended without a gRPC status");
}

int Connection::OnStreamClose(nghttp2_session*, int32_t stream_id,
                              uint32_t error_code, void* user_data) {
  auto* self = static_cast<Connection*>(user_data);
  UpstreamCallImpl* call = self->CallOf(stream_id);
  if (call == nullptr) return 0;
  const bool refused = error_code == NGHTTP2_REFUSED_STREAM &&
                       call->http_status == 0;
  self->EndStream(stream_id, self->StatusAtClose(*call, error_code), refused);
  return 0;
}

void Connection::EndStream(int32_t stream_id, grpc::Status status,
                           bool refused) {
  UpstreamCallImpl* call = CallOf(stream_id);
  if (call == nullptr) return;
  if (!closed_) nghttp2_session_set_stream_user_data(session_, stream_id,
                                                     nullptr);
  streams_.erase(stream_id);
  shard_->Defer([shard = shard_, call = call->shared_from_this(),
                 status = std::move(status), refused] {
    call->connection = nullptr;
    call->stream_id = 0;
    shard->AttemptEnded(*call, status, refused);
  });
  if (!closed_) {
    shard_->Defer([self = shared_from_this()] { self->CloseIfDrained(); });
  }
}

}  // namespace

// --- Shard --------------------------------------------------------------

Shard::Shard(net::io_context& loop, const UpstreamOptions& options)
    : strand_(net::make_strand(loop)),
      options_(options),
      read_methods_(options.read_methods.begin(), options.read_methods.end()),
      names_(ParseTarget(options.target)),
      resolving_(names_.size(), false),
      resolved_(names_.size(), false),
      deadline_timer_(strand_) {}

void Shard::Begin() {
  for (size_t name = 0; name < names_.size(); ++name) Resolve(name);
}

void Shard::Resolve(size_t name) {
  if (shut_down_ || resolving_[name]) return;
  const TargetAddress& address = names_[name];
  ErrorCode ec;
  const net::ip::address literal =
      net::ip::make_address(address.host, ec);
  int port = 0;
  if (!absl::SimpleAtoi(address.port, &port) || port <= 0 || port > 65535) {
    LogWarning("upstream: bad port in target \"%s\"", options_.target);
    resolved_[name] = true;
    return;
  }
  if (!ec) {
    tcp::resolver::results_type one = tcp::resolver::results_type::create(
        tcp::endpoint(literal, static_cast<uint16_t>(port)), address.host, address.port);
    resolved_[name] = true;
    return AddEndpoints(name, one);
  }
  if (resolver_ == nullptr) resolver_ = std::make_unique<tcp::resolver>(strand_);
  resolving_[name] = true;
  resolver_->async_resolve(
      address.host, address.port,
      [self = shared_from_this(), name](
          ErrorCode ec, const tcp::resolver::results_type& found) {
        self->resolving_[name] = false;
        if (self->shut_down_) return;
        self->resolved_[name] = true;
        if (ec) {
          LogWarning("upstream: cannot resolve %s: %s",
                     self->names_[name].host, ec.message());
          if (self->Failing()) self->FailWaiting();
          // Tried again when a connection fails, or after a backoff.
          auto timer = std::make_shared<net::steady_timer>(self->strand_);
          timer->expires_after(absl::ToChronoNanoseconds(
              self->options_.reconnect_max_backoff));
          timer->async_wait([self, name, timer](ErrorCode ec) {
            if (!ec) self->Resolve(name);
          });
          return;
        }
        self->AddEndpoints(name, found);
      });
}

void Shard::AddEndpoints(size_t name,
                                   const tcp::resolver::results_type& found) {
  for (const auto& entry : found) {
    const tcp::endpoint endpoint = entry.endpoint();
    const bool known = std::any_of(
        subchannels_.begin(), subchannels_.end(),
        [&](const Subchannel& s) { return s.endpoint == endpoint; });
    if (known) continue;
    Subchannel& subchannel = subchannels_.emplace_back();
    subchannel.endpoint = endpoint;
    subchannel.name = name;
    subchannel.reconnect_timer = std::make_unique<net::steady_timer>(strand_);
    Connect(subchannel);
  }
}

void Shard::Connect(Subchannel& subchannel) {
  if (shut_down_) return;
  subchannel.connection =
      std::make_shared<Connection>(shared_from_this(), subchannel.endpoint);
  subchannel.connection->Start();
}

absl::Duration Shard::Jittered(absl::Duration d, double jitter) {
  std::uniform_real_distribution<double> spread(1 - jitter, 1 + jitter);
  return d * spread(random_);
}

void Shard::ScheduleReconnect(Subchannel& subchannel) {
  const absl::Duration wait = Jittered(subchannel.backoff, kReconnectJitter);
  subchannel.backoff =
      std::min(subchannel.backoff * kReconnectMultiplier,
               std::max(options_.reconnect_max_backoff, absl::Milliseconds(1)));
  subchannel.reconnect_timer->expires_after(absl::ToChronoNanoseconds(wait));
  Subchannel* target = &subchannel;
  subchannel.reconnect_timer->async_wait(
      [self = shared_from_this(), target](ErrorCode ec) {
        if (ec || self->shut_down_ || target->connection != nullptr) return;
        self->Connect(*target);
      });
}

Shard::Subchannel* Shard::SubchannelOf(
    Connection* connection) {
  for (Subchannel& subchannel : subchannels_) {
    if (subchannel.connection.get() == connection) return &subchannel;
  }
  return nullptr;
}

void Shard::ConnectionReady(Connection* connection) {
  Subchannel* subchannel = SubchannelOf(connection);
  if (subchannel == nullptr || subchannel->ready) return;
  subchannel->ready = true;
  subchannel->failed = false;
  subchannel->backoff = kInitialReconnectBackoff;
  ready_count_.fetch_add(1, std::memory_order_relaxed);
  DispatchWaiting();
}

void Shard::ConnectionGoingAway(Connection* connection) {
  Subchannel* subchannel = SubchannelOf(connection);
  if (subchannel == nullptr) return;
  // The old connection finishes its streams; new calls go to a new one.
  draining_.push_back(subchannel->connection);
  if (subchannel->ready) {
    subchannel->ready = false;
    ready_count_.fetch_sub(1, std::memory_order_relaxed);
  }
  subchannel->connection.reset();
  Connect(*subchannel);
}

void Shard::ConnectionClosed(Connection* connection) {
  draining_.erase(
      std::remove_if(draining_.begin(), draining_.end(),
                     [&](const std::shared_ptr<Connection>& c) {
                       return c.get() == connection;
                     }),
      draining_.end());
  Subchannel* subchannel = SubchannelOf(connection);
  if (subchannel == nullptr) return;
  // Keeps the connection alive until this returns.
  std::shared_ptr<Connection> closing = std::move(subchannel->connection);
  const bool was_ready = subchannel->ready;
  if (was_ready) {
    subchannel->ready = false;
    ready_count_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (shut_down_) return;
  if (was_ready) {
    // It worked until now: the server restarted or went away; try again
    // at once (then with backoff), and ask the name again. Until that
    // attempt fails, calls wait for it (gRPC's CONNECTING).
    subchannel->backoff = kInitialReconnectBackoff;
    Resolve(subchannel->name);
    Connect(*subchannel);
  } else {
    subchannel->failed = true;
    ScheduleReconnect(*subchannel);
  }
  if (Failing()) FailWaiting();
}

bool Shard::Failing() const {
  for (size_t name = 0; name < names_.size(); ++name) {
    if (!resolved_[name]) return false;  // still learning its addresses
  }
  return std::all_of(subchannels_.begin(), subchannels_.end(),
                     [](const Subchannel& s) { return s.failed; });
}

void Shard::FailWaiting() {
  std::deque<std::shared_ptr<UpstreamCallImpl>> still;
  std::deque<std::shared_ptr<UpstreamCallImpl>> waiting;
  waiting.swap(waiting_);
  for (auto& call : waiting) {
    if (call->finished) continue;
    if (call->options.wait_for_ready) {
      still.push_back(std::move(call));
    } else {
      Finish(*call, Unavailable("no coach-server reachable"));
    }
  }
  for (auto& call : still) waiting_.push_back(std::move(call));
}

void Shard::DispatchWaiting() {
  std::deque<std::shared_ptr<UpstreamCallImpl>> waiting;
  waiting.swap(waiting_);
  for (auto& call : waiting) {
    Dispatch(std::move(call));
  }
}

void Shard::Dispatch(std::shared_ptr<UpstreamCallImpl> call) {
  if (call->finished) return;
  const size_t n = subchannels_.size();
  for (size_t i = 0; i < n; ++i) {
    Subchannel& subchannel = subchannels_[(next_ + i) % n];
    if (!subchannel.ready || subchannel.connection == nullptr) continue;
    call->ResetAttempt();
    ++call->attempts;
    if (subchannel.connection->StartStream(*call)) {
      next_ = (next_ + i + 1) % n;
      return;
    }
    --call->attempts;
  }
  if (!call->options.wait_for_ready && Failing()) {
    return Finish(*call, Unavailable("no coach-server reachable"));
  }
  waiting_.push_back(std::move(call));
}

void Shard::Start(std::shared_ptr<UpstreamCallImpl> call) {
  live_.emplace(call.get(), call);
  if (shut_down_) {
    return Finish(*call, grpc::Status(grpc::StatusCode::CANCELLED,
                                      "coach-proxy is stopping"));
  }
  TrackDeadline(*call);
  Dispatch(std::move(call));
}

void Shard::TrackDeadline(UpstreamCallImpl& call) {
  call.deadline_entry = deadlines_.emplace(call.deadline, &call);
  call.has_deadline_entry = true;
  if (call.deadline < deadline_armed_) ArmDeadlineTimer();
}

void Shard::ArmDeadlineTimer() {
  if (deadlines_.empty()) return;
  deadline_armed_ = deadlines_.begin()->first;
  deadline_timer_.expires_after(absl::ToChronoNanoseconds(
      std::max(absl::ZeroDuration(), deadline_armed_ - absl::Now())));
  deadline_timer_.async_wait([self = shared_from_this()](ErrorCode ec) {
    if (ec) return;  // re-armed or shut down
    self->OnDeadlineTimer();
  });
}

void Shard::OnDeadlineTimer() {
  deadline_armed_ = absl::InfiniteFuture();
  const absl::Time now = absl::Now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    UpstreamCallImpl* call = deadlines_.begin()->second;
    Finish(*call, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                               "Deadline Exceeded"));
  }
  ArmDeadlineTimer();
}

void Shard::Finish(UpstreamCallImpl& call, grpc::Status status) {
  if (call.finished) return;
  call.finished = true;
  if (call.connection != nullptr) {
    call.connection->ResetStream(call.stream_id);
    call.connection = nullptr;
    call.stream_id = 0;
  }
  if (call.has_deadline_entry) {
    deadlines_.erase(call.deadline_entry);
    call.has_deadline_entry = false;
  }
  if (call.retry_timer != nullptr) call.retry_timer->cancel();
  // Kept alive through its callback.
  std::shared_ptr<UpstreamCallImpl> keep;
  if (auto found = live_.find(&call); found != live_.end()) {
    keep = std::move(found->second);
    live_.erase(found);
  }
  if (call.streaming) {
    Upstream::StreamDone done = std::move(call.stream_done);
    call.on_message = nullptr;
    if (done) done(status);
  } else {
    Upstream::UnaryDone done = std::move(call.unary_done);
    if (!status.ok()) call.response.clear();
    if (done) done(status, call.response);
  }
}

void Shard::AttemptEnded(UpstreamCallImpl& call, grpc::Status status,
                                   bool refused) {
  if (call.finished) return;
  if (refused && call.transparent_retries < kMaxTransparentRetries) {
    // The server never saw it: any method may go again, at once.
    ++call.transparent_retries;
    --call.attempts;
    std::shared_ptr<UpstreamCallImpl> again = call.shared_from_this();
    return Dispatch(std::move(again));
  }
  if (call.read) {
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      tokens_ = std::max(0.0, tokens_ - 1);
    } else if (status.ok()) {
      tokens_ = std::min(kMaxTokens, tokens_ + kTokenRatio);
    }
  }
  const bool retry = call.read &&
                     status.error_code() == grpc::StatusCode::UNAVAILABLE &&
                     call.attempts < kMaxAttempts && call.messages == 0 &&
                     tokens_ > kMaxTokens / 2 && !shut_down_;
  if (!retry) return Finish(call, std::move(status));
  // Backoff: random up to min(initial * 2^(n-1), max) (A6).
  absl::Duration cap = kRetryInitialBackoff;
  for (int i = 1; i < call.attempts; ++i) cap *= kRetryMultiplier;
  cap = std::min(cap, kRetryMaxBackoff);
  std::uniform_real_distribution<double> fraction(0, 1);
  const absl::Duration wait = cap * fraction(random_);
  if (absl::Now() + wait >= call.deadline) {
    return Finish(call, std::move(status));
  }
  if (call.retry_timer == nullptr) {
    call.retry_timer = std::make_unique<net::steady_timer>(strand_);
  }
  call.retry_timer->expires_after(absl::ToChronoNanoseconds(wait));
  call.retry_timer->async_wait(
      [self = shared_from_this(), call = call.shared_from_this()](ErrorCode ec) {
        if (ec || call->finished) return;
        self->Dispatch(call);
      });
}

void Shard::Shutdown() {
  shut_down_ = true;
  std::vector<std::shared_ptr<UpstreamCallImpl>> calls;
  calls.reserve(live_.size());
  for (auto& [raw, call] : live_) calls.push_back(call);
  for (auto& call : calls) {
    Finish(*call, grpc::Status(grpc::StatusCode::CANCELLED,
                               "coach-proxy is stopping"));
  }
  waiting_.clear();
  deadline_timer_.cancel();
  if (resolver_ != nullptr) resolver_->cancel();
  for (Subchannel& subchannel : subchannels_) {
    subchannel.reconnect_timer->cancel();
    if (subchannel.connection != nullptr) subchannel.connection->Close("stopping");
  }
  std::vector<std::shared_ptr<Connection>> draining = std::move(draining_);
  for (auto& connection : draining) connection->Close("stopping");
  RunDeferred();
}

void UpstreamCallImpl::Cancel() {
  net::post(shard->strand(), [self = shared_from_this()] {
    self->shard->Finish(*self, grpc::Status(grpc::StatusCode::CANCELLED,
                                            "Cancelled"));
  });
}

}  // namespace upstream_internal

// --- Upstream -----------------------------------------------------------

using upstream_internal::Shard;
using upstream_internal::UpstreamCallImpl;
namespace net = boost::asio;

Upstream::Upstream(net::io_context& loop, const UpstreamOptions& options) {
  const int shards = std::max(1, options.shards);
  for (int i = 0; i < shards; ++i) {
    auto shard = std::make_shared<Shard>(loop, options);
    net::post(shard->strand(), [shard] { shard->Begin(); });
    shards_.push_back(std::move(shard));
  }
}

Upstream::~Upstream() {
  for (const std::shared_ptr<Shard>& shard : shards_) {
    auto done = std::make_shared<absl::Notification>();
    net::post(shard->strand(), [shard, done] {
      shard->Shutdown();
      done->Notify();
    });
    // The loop runs (the constructor's contract); bounded all the same.
    if (!done->WaitForNotificationWithTimeout(absl::Seconds(10))) {
      LogError("upstream: shutdown did not complete");
    }
  }
}

bool Upstream::AnyServerReady() const {
  return std::any_of(shards_.begin(), shards_.end(),
                     [](const std::shared_ptr<Shard>& s) { return s->ready(); });
}

namespace {

// `request` with gRPC's prefix (uncompressed, 32-bit big-endian length).
std::string Framed(const google::protobuf::Message& request) {
  constexpr size_t kPrefix = upstream_internal::kPrefixBytes;
  const size_t size = request.ByteSizeLong();
  std::string framed(kPrefix + size, '\0');
  framed[1] = static_cast<char>((size >> 24) & 0xFF);
  framed[2] = static_cast<char>((size >> 16) & 0xFF);
  framed[3] = static_cast<char>((size >> 8) & 0xFF);
  framed[4] = static_cast<char>(size & 0xFF);
  request.SerializeWithCachedSizesToArray(
      reinterpret_cast<uint8_t*>(framed.data() + kPrefix));
  return framed;
}

}  // namespace

std::shared_ptr<UpstreamCallImpl> Upstream::NewCall(
    const std::string& grpc_method, const google::protobuf::Message& request,
    CallOptions options) {
  auto call = std::make_shared<UpstreamCallImpl>();
  call->shard = shards_[next_shard_.fetch_add(1, std::memory_order_relaxed) %
                        shards_.size()];
  call->method = grpc_method;
  call->read = call->shard->IsRead(grpc_method);
  call->deadline = absl::Now() + options.deadline;
  call->options = std::move(options);
  call->framed = Framed(request);
  return call;
}

std::shared_ptr<UpstreamCall> Upstream::Unary(
    const std::string& grpc_method, const google::protobuf::Message& request,
    CallOptions options, UnaryDone done) {
  std::shared_ptr<UpstreamCallImpl> call =
      NewCall(grpc_method, request, std::move(options));
  call->unary_done = std::move(done);
  net::post(call->shard->strand(), [call] { call->shard->Start(call); });
  return call;
}

std::shared_ptr<UpstreamCall> Upstream::ServerStream(
    const std::string& grpc_method, const google::protobuf::Message& request,
    CallOptions options, StreamMessage on_message, StreamDone done) {
  std::shared_ptr<UpstreamCallImpl> call =
      NewCall(grpc_method, request, std::move(options));
  call->streaming = true;
  call->on_message = std::move(on_message);
  call->stream_done = std::move(done);
  net::post(call->shard->strand(), [call] { call->shard->Start(call); });
  return call;
}

}  // namespace coach::proxy
