// One HTTP/2 connection of the native client to one server address,
// carrying gRPC calls as streams: nghttp2 (framing, HPACK, flow control)
// over an Asio socket, on its owner's strand.
//
// Its life: TCP connect, the TLS handshake (with `tls`), our SETTINGS, then
// ready once the server's SETTINGS arrive; all within `connect_timeout`,
// else it closes (a peer that accepts and says nothing). TLS: the context
// current at the attempt (TlsContextSource::Current(), kept for the
// connection's life), the server's certificate checked for `tls_name`,
// ALPN h2 required; any failure closes the attempt (the channel's backoff
// then applies, as for a refused connection). Ready, it takes streams until the
// server sends GOAWAY (then it finishes the streams it has and closes) or it
// closes. Keepalive: after `keepalive_time` with nothing received it sends
// a PING; no acknowledgement within `keepalive_timeout` closes it
// (TCP_USER_TIMEOUT is set to `keepalive_timeout` too). Each stream's
// response is read by its call's wire::ResponseReader; an answer the
// reader refuses resets the stream (RST_STREAM CANCEL) at once.
//
// It reports to its ConnectionOwner (the channel): ready, going away,
// closed, and each attempt's end. Reports that may start new streams or
// run users' callbacks are deferred (ConnectionOwner::Defer) until nghttp2
// has returned.
//
// Thread-safety: none; every method runs on the owner's strand. Kept alive
// by its pending operations and its owner's reference.
#ifndef COACH_PROXY_UPSTREAM_CONNECTION_H_
#define COACH_PROXY_UPSTREAM_CONNECTION_H_

#include <nghttp2/nghttp2.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/tls.h"
#include "proxy/upstream/call.h"

namespace coach::proxy::upstream_internal {

using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;

struct ConnectionOptions {
  absl::Duration connect_timeout = absl::Seconds(1);
  // absl::InfiniteDuration(): no keepalive.
  absl::Duration keepalive_time = absl::InfiniteDuration();
  absl::Duration keepalive_timeout = absl::Seconds(20);
  size_t max_message_bytes = 4 << 20;
  size_t max_header_list_bytes = 16 << 10;
  std::string user_agent;
  // TLS (role kClient); null: plaintext. `tls_name`: the name the server's
  // certificate must carry (a DNS name or an address).
  std::shared_ptr<TlsContextSource> tls;
  std::string tls_name;
};

class Connection;

// What a connection tells its owner. Every method runs on the strand.
class ConnectionOwner {
 public:
  virtual ~ConnectionOwner() = default;
  // The server's SETTINGS arrived: the connection takes streams.
  virtual void ConnectionReady(Connection* connection) = 0;
  // GOAWAY arrived: no new streams; the connection closes once its own
  // have ended. `too_many_pings`: the server found our PINGs too frequent.
  virtual void ConnectionGoingAway(Connection* connection,
                                   bool too_many_pings) = 0;
  // The socket is closed; every stream has ended (AttemptEnded).
  virtual void ConnectionClosed(Connection* connection) = 0;
  // `call`'s attempt ended with `status`. `refused`: the server never saw
  // it (REFUSED_STREAM before any answer, a request not sent because of a
  // GOAWAY): any call may go again elsewhere.
  virtual void AttemptEnded(Call& call, absl::Status status, bool refused) = 0;
  // Work that must not run inside nghttp2's callbacks (users' callbacks,
  // new streams): queued, then run by RunDeferred.
  virtual void Defer(absl::AnyInvocable<void()> work) = 0;
  virtual void RunDeferred() = 0;
  // Whether the owner is stopping (a closed connection is then not worth
  // a warning).
  virtual bool stopping() const = 0;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<ConnectionOwner> owner, const Strand& strand,
             boost::asio::ip::tcp::endpoint endpoint,
             const ConnectionOptions& options);
  ~Connection();

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const boost::asio::ip::tcp::endpoint& endpoint() const { return endpoint_; }
  // Takes streams: connected, the server's SETTINGS received, no GOAWAY.
  bool ready() const { return ready_ && !going_away_ && !closed_; }
  bool closed() const { return closed_; }

  // Connects (TCP, then the HTTP/2 preface); reports ConnectionReady or
  // ConnectionClosed.
  void Start();

  // Starts `call`'s attempt on a new stream (call.ResetAttempt() done);
  // false if this connection takes no more streams (the call is untouched).
  bool StartStream(Call& call);

  // Ends the stream of a call that ended on its own (deadline, cancel):
  // RST_STREAM CANCEL; its call hears nothing more.
  void ResetStream(int32_t stream_id);

  // Takes no more streams; closes once those it has have ended (a server
  // that left the target's name).
  void Drain();

  // Closes the socket; every stream's attempt ends UNAVAILABLE (`why`).
  void Close(absl::string_view why);

 private:
  using Clock = std::chrono::steady_clock;

  void OnConnected(const boost::system::error_code& ec);
  void OnHandshake(const boost::system::error_code& ec);
  // Starts HTTP/2 on the connected (and with TLS, handshaken) socket.
  void StartSession();
  void Read();
  // One read into in_ / one write of out_, through TLS when it is on.
  template <typename Handler>
  void ReadSome(Handler&& handler);
  template <typename Handler>
  void WriteOut(Handler&& handler);
  void ScheduleFlush();
  void Flush();
  // A connection told to go away closes once its last stream ended.
  void CloseIfDrained();
  Call* CallOf(int32_t stream_id);
  // The attempt on `stream_id` ended: handed back to the owner.
  void EndStream(int32_t stream_id, absl::Status status, bool refused);
  // The reader refused the answer: reset the stream, end the attempt.
  void RefuseStream(int32_t stream_id, absl::Status status);
  // Keepalive: the timer, re-armed after each PING's acknowledgement.
  void ArmKeepalive(Clock::time_point when);
  void OnKeepaliveTimer();

  static int OnBeginHeaders(nghttp2_session* session,
                            const nghttp2_frame* frame, void* user_data);
  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame,
                      const uint8_t* name, size_t namelen, const uint8_t* value,
                      size_t valuelen, uint8_t flags, void* user_data);
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

  std::shared_ptr<ConnectionOwner> owner_;
  Strand strand_;
  const boost::asio::ip::tcp::endpoint endpoint_;
  const std::string authority_;
  const ConnectionOptions options_;
  boost::asio::ip::tcp::socket socket_;
  // With TLS: the context the handshake used (outlives tls_), and the
  // stream over socket_ that every read and write then goes through.
  std::shared_ptr<boost::asio::ssl::context> tls_context_;
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls_;
  boost::asio::steady_timer connect_timer_;
  boost::asio::steady_timer keepalive_timer_;
  nghttp2_session* session_ = nullptr;
  bool ready_ = false;       // the server's SETTINGS arrived
  bool going_away_ = false;  // GOAWAY received: no new streams
  bool closed_ = false;
  bool writing_ = false;
  bool flush_scheduled_ = false;
  // Keepalive: when something last arrived; a PING awaiting its ACK.
  Clock::time_point last_read_;
  bool ping_outstanding_ = false;
  // The call of each stream still ours, from its submission (nghttp2
  // knows a stream only once its HEADERS have gone out: a request submitted
  // just before the connection closes would be forgotten).
  absl::flat_hash_map<int32_t, Call*> streams_;
  std::string out_;
  std::unique_ptr<uint8_t[]> in_;
};

}  // namespace coach::proxy::upstream_internal

#endif  // COACH_PROXY_UPSTREAM_CONNECTION_H_
