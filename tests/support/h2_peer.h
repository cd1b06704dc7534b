// A scripted HTTP/2 server on 127.0.0.1 for the gRPC client's conformance
// tests: nghttp2's server session over a loopback socket, each accepted
// connection on a thread of its own. The test's script sees every complete
// request (headers and body, END_STREAM received) and answers with any
// frames, in the order it queues them: headers (any :status, any fields,
// 1xx included), DATA (each call one frame or more, as small as wanted),
// trailers, RST_STREAM with any code, GOAWAY with any last stream id, or
// nothing. Flow control is honoured (a large answer waits for the client's
// WINDOW_UPDATEs). A peer in kSilent mode accepts connections and never
// writes a byte (no SETTINGS): a server that hangs at the handshake.
//
// Thread-safety: the script runs on the connection's thread; counters and
// Stop() may be used from any thread.
#ifndef COACH_TESTS_SUPPORT_H2_PEER_H_
#define COACH_TESTS_SUPPORT_H2_PEER_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "tests/support/ports.h"

namespace coach::testing {

class H2Peer;

// One header field, as sent (names lowercase).
using H2Fields = std::vector<std::pair<std::string, std::string>>;

// What the script knows of a request.
struct H2Request {
  int32_t stream_id = 0;
  int connection = 0;  // 0 for the peer's first connection, then 1...
  std::string path;
  std::multimap<std::string, std::string> headers;
  std::string body;  // the gRPC-framed request
};

// One connection, as the script drives it. Every action is queued per
// stream and sent in order once the script returns.
class H2PeerConnection {
 public:
  int index() const { return index_; }
  // Response headers (or trailers-only with end_stream), 1xx included.
  void Headers(int32_t stream, H2Fields fields, bool end_stream = false) {
    Queue(stream, Action{Action::kHeaders, std::move(fields), {}, end_stream});
  }
  // One DATA frame (more if larger than the frame size).
  void Data(int32_t stream, std::string bytes, bool end_stream = false) {
    Queue(stream, Action{Action::kData, {}, std::move(bytes), end_stream});
  }
  // DATA frames from `next`, one per call, until it returns false (then
  // END_STREAM if asked): large answers without holding them.
  void DataFrom(int32_t stream, std::function<bool(std::string& frame)> next,
                bool end_stream = false) {
    Action action{Action::kGenerated, {}, {}, end_stream};
    action.next = std::move(next);
    Queue(stream, std::move(action));
  }
  // Trailers: headers ending the stream.
  void Trailers(int32_t stream, H2Fields fields) {
    Queue(stream, Action{Action::kHeaders, std::move(fields), {}, true});
  }
  void Reset(int32_t stream, uint32_t error_code) {
    Action action{Action::kReset, {}, {}, false};
    action.code = error_code;
    Queue(stream, std::move(action));
  }
  // GOAWAY at once (not queued behind a stream).
  void Goaway(int32_t last_stream_id, uint32_t error_code,
              const std::string& debug = "") {
    nghttp2_submit_goaway(
        session_, NGHTTP2_FLAG_NONE, last_stream_id, error_code,
        reinterpret_cast<const uint8_t*>(debug.data()), debug.size());
  }
  // Closes the socket after what is queued is sent.
  void CloseAfterSending() { close_after_sending_ = true; }

 private:
  friend class H2Peer;
  struct Action {
    enum Kind { kHeaders, kData, kGenerated, kReset };
    Action(Kind kind, H2Fields fields, std::string bytes, bool end_stream)
        : kind(kind),
          fields(std::move(fields)),
          bytes(std::move(bytes)),
          end_stream(end_stream) {}
    Kind kind;
    H2Fields fields;
    std::string bytes;
    bool end_stream = false;
    uint32_t code = 0;
    std::function<bool(std::string& frame)> next;
  };
  struct StreamState {
    std::deque<Action> actions;
    bool data_active = false;  // a DATA provider submitted, not finished
    std::string data;          // its bytes
    size_t data_sent = 0;
    bool data_end_stream = false;
  };

  void Queue(int32_t stream, Action action) {
    streams_[stream].actions.push_back(std::move(action));
  }

  // Submits each stream's next actions while no DATA of its is pending.
  void SubmitReady() {
    for (auto& [id, state] : streams_) {
      while (!state.data_active && !state.actions.empty()) {
        Action action = std::move(state.actions.front());
        state.actions.pop_front();
        switch (action.kind) {
          case Action::kHeaders: {
            std::vector<nghttp2_nv> nva;
            for (auto& [name, value] : action.fields) {
              nva.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(name.data()),
                                       reinterpret_cast<uint8_t*>(value.data()),
                                       name.size(), value.size(),
                                       NGHTTP2_NV_FLAG_NONE});
            }
            nghttp2_submit_headers(
                session_,
                action.end_stream ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE,
                id, nullptr, nva.data(), nva.size(), nullptr);
            break;
          }
          case Action::kGenerated: {
            std::string frame;
            if (!action.next(frame)) {
              // Done: an empty DATA frame carries END_STREAM if asked.
              if (action.end_stream) {
                state.actions.push_front(
                    Action{Action::kData, {}, {}, /*end_stream=*/true});
              }
              break;
            }
            state.actions.push_front(std::move(action));
            if (!SubmitData(id, state, std::move(frame), false)) return;
            break;
          }
          case Action::kData:
            if (!SubmitData(id, state, std::move(action.bytes),
                            action.end_stream)) {
              return;
            }
            break;
          case Action::kReset:
            nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id,
                                      action.code);
            break;
        }
      }
    }
  }

  // False when nghttp2 still holds the stream's previous DATA (it lets it
  // go at its next send): the action is put back, to be tried then.
  bool SubmitData(int32_t id, StreamState& state, std::string bytes,
                  bool end_stream) {
    state.data_active = true;
    state.data = std::move(bytes);
    state.data_sent = 0;
    state.data_end_stream = end_stream;
    nghttp2_data_provider provider;
    provider.source.ptr = &state;
    provider.read_callback = ReadData;
    const int rv = nghttp2_submit_data(
        session_, end_stream ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE, id,
        &provider);
    if (rv == NGHTTP2_ERR_DATA_EXIST) {
      state.data_active = false;
      Action again{Action::kData, {}, std::move(state.data), end_stream};
      if (!state.actions.empty() &&
          state.actions.front().kind == Action::kGenerated) {
        // The generator's frame goes first, then the generator again.
        state.actions.insert(state.actions.begin() + 1, std::move(again));
        std::swap(state.actions[0], state.actions[1]);
      } else {
        state.actions.push_front(std::move(again));
      }
      return false;
    }
    return true;
  }

  static ssize_t ReadData(nghttp2_session*, int32_t, uint8_t* buf,
                          size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
    auto* state = static_cast<StreamState*>(source->ptr);
    const size_t n = std::min(length, state->data.size() - state->data_sent);
    std::memcpy(buf, state->data.data() + state->data_sent, n);
    state->data_sent += n;
    if (state->data_sent == state->data.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      state->data_active = false;
      state->data.clear();
    }
    return static_cast<ssize_t>(n);
  }

  int index_ = 0;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, StreamState> streams_;
  bool close_after_sending_ = false;
};

class H2Peer {
 public:
  // kSilent: accepts, never writes. kNoPingAck: as kScripted, but PINGs
  // are never acknowledged (a peer whose host froze after the handshake).
  enum class Mode { kScripted, kSilent, kNoPingAck };
  using Script = std::function<void(H2PeerConnection& connection,
                                    const H2Request& request)>;

  explicit H2Peer(Script script, Mode mode = Mode::kScripted)
      : script_(std::move(script)), mode_(mode) {
    int port = 0;
    listen_fd_ = ListenOnLoopback(&port);
    if (listen_fd_ < 0) return;
    port_ = port;
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~H2Peer() { Stop(); }
  H2Peer(const H2Peer&) = delete;
  H2Peer& operator=(const H2Peer&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  int connections() const {
    absl::MutexLock lock(&mu_);
    return connections_;
  }
  int requests() const {
    absl::MutexLock lock(&mu_);
    return requests_;
  }
  // The client's PINGs (not acknowledgements) received.
  int pings() const {
    absl::MutexLock lock(&mu_);
    return pings_;
  }

  // Closes every connection and joins the threads.
  void Stop() {
    stopping_.store(true);
    if (acceptor_.joinable()) acceptor_.join();
    std::vector<std::thread> threads;
    {
      absl::MutexLock lock(&mu_);
      threads.swap(threads_);
    }
    for (std::thread& thread : threads) thread.join();
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = -1;
  }

 private:
  void AcceptLoop() {
    while (!stopping_.load()) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      absl::MutexLock lock(&mu_);
      const int index = connections_++;
      threads_.emplace_back([this, fd, index] { Serve(fd, index); });
    }
  }

  struct Session {
    H2Peer* peer;
    H2PeerConnection connection;
    std::map<int32_t, H2Request> partial;
    std::vector<H2Request> complete;
  };

  void Serve(int fd, int index) {
    if (mode_ == Mode::kSilent) {
      // Reads whatever comes, answers nothing.
      char buffer[4096];
      while (!stopping_.load()) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        if (recv(fd, buffer, sizeof(buffer), 0) <= 0) break;
      }
      close(fd);
      return;
    }
    Session session{this, {}, {}, {}};
    session.connection.index_ = index;
    nghttp2_session_callbacks* callbacks = nullptr;
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_begin_headers_callback(
        callbacks,
        [](nghttp2_session*, const nghttp2_frame* frame, void* user) -> int {
          auto* s = static_cast<Session*>(user);
          if (frame->hd.type == NGHTTP2_HEADERS &&
              frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            H2Request& request = s->partial[frame->hd.stream_id];
            request.stream_id = frame->hd.stream_id;
            request.connection = s->connection.index_;
          }
          return 0;
        });
    nghttp2_session_callbacks_set_on_header_callback(
        callbacks,
        [](nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
           size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
           void* user) -> int {
          auto* s = static_cast<Session*>(user);
          auto found = s->partial.find(frame->hd.stream_id);
          if (found == s->partial.end()) return 0;
          std::string n(reinterpret_cast<const char*>(name), namelen);
          std::string v(reinterpret_cast<const char*>(value), valuelen);
          if (n == ":path") found->second.path = v;
          found->second.headers.emplace(std::move(n), std::move(v));
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        callbacks,
        [](nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
           size_t len, void* user) -> int {
          auto* s = static_cast<Session*>(user);
          auto found = s->partial.find(stream_id);
          if (found != s->partial.end()) {
            found->second.body.append(reinterpret_cast<const char*>(data), len);
          }
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        callbacks,
        [](nghttp2_session*, const nghttp2_frame* frame, void* user) -> int {
          auto* s = static_cast<Session*>(user);
          if (frame->hd.type == NGHTTP2_PING &&
              (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
            absl::MutexLock lock(&s->peer->mu_);
            ++s->peer->pings_;
          }
          if ((frame->hd.type == NGHTTP2_HEADERS ||
               frame->hd.type == NGHTTP2_DATA) &&
              (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
            auto found = s->partial.find(frame->hd.stream_id);
            if (found != s->partial.end()) {
              s->complete.push_back(std::move(found->second));
              s->partial.erase(found);
            }
          }
          return 0;
        });
    nghttp2_session* h2 = nullptr;
    nghttp2_option* option = nullptr;
    nghttp2_option_new(&option);
    // Oversized header blocks are a case of their own.
    nghttp2_option_set_max_send_header_block_length(option, 1 << 20);
    if (mode_ == Mode::kNoPingAck) {
      nghttp2_option_set_no_auto_ping_ack(option, 1);
    }
    nghttp2_session_server_new2(&h2, callbacks, &session, option);
    nghttp2_option_del(option);
    nghttp2_session_callbacks_del(callbacks);
    session.connection.session_ = h2;
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
    nghttp2_submit_settings(h2, NGHTTP2_FLAG_NONE, settings, 1);
    bool open = Send(fd, h2, session.connection);
    uint8_t buffer[16384];
    while (open && !stopping_.load()) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      if (nghttp2_session_mem_recv(h2, buffer, static_cast<size_t>(n)) < 0) {
        break;
      }
      std::vector<H2Request> complete;
      complete.swap(session.complete);
      for (const H2Request& request : complete) {
        {
          absl::MutexLock lock(&mu_);
          ++requests_;
        }
        script_(session.connection, request);
      }
      open = Send(fd, h2, session.connection);
      if (session.connection.close_after_sending_) break;
    }
    nghttp2_session_del(h2);
    shutdown(fd, SHUT_RDWR);
    close(fd);
  }

  // Sends what nghttp2 has; false once the socket failed.
  bool Send(int fd, nghttp2_session* h2, H2PeerConnection& connection) {
    for (;;) {
      connection.SubmitReady();
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(h2, &data);
      if (n < 0) return false;
      if (n == 0) {
        connection.SubmitReady();
        if (!nghttp2_session_want_write(h2)) return true;
        // Blocked on flow control, or more was just submitted: loop once
        // more; if nothing goes, the client's WINDOW_UPDATEs are read by
        // the caller's loop.
        const ssize_t again = nghttp2_session_mem_send(h2, &data);
        if (again <= 0) return again == 0;
        if (!WriteAll(fd, data, static_cast<size_t>(again))) return false;
        continue;
      }
      if (!WriteAll(fd, data, static_cast<size_t>(n))) return false;
    }
  }

  static bool WriteAll(int fd, const uint8_t* data, size_t size) {
    while (size > 0) {
      const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
      if (n <= 0) return false;
      data += n;
      size -= static_cast<size_t>(n);
    }
    return true;
  }

  Script script_;
  const Mode mode_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable absl::Mutex mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
  int pings_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_H2_PEER_H_
