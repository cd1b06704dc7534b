// The gRPC client (proxy/upstream/upstream.h) against a misbehaving HTTP/2
// peer: tests/support/h2_peer.h, nghttp2's server session scripted frame
// by frame. Each case says what a server does and what the call must end
// with, for the native client and for gRPC's own (the reference); where
// the two differ, the case says why. Memory stays bounded: the process's
// peak resident size (VmHWM, reset before the case) grows by far less than
// what the peer sends.
//
// Synchronisation: callbacks record into an PeerOutcome under a mutex; the
// test waits on absl conditions with a deadline (kPeerWait).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/wrappers.pb.h"
#include "http/event_loop.h"
#include "proxy/upstream/upstream.h"
#include "proxy/upstream/wire.h"
#include "tests/support/eventually.h"
#include "tests/support/h2_peer.h"

namespace coach::proxy {
namespace {

using coach::testing::Eventually;

using coach::testing::H2Fields;
using coach::testing::H2Peer;
using coach::testing::H2PeerConnection;
using coach::testing::H2Request;
using google::protobuf::StringValue;
using Code = grpc::StatusCode;

constexpr absl::Duration kPeerWait = absl::Seconds(30);
constexpr char kMethod[] = "/test.Peer/Call";
constexpr int kMaxMessage = 64 * 1024;
constexpr int kMaxHeaders = 16 * 1024;

std::string Message(const std::string& value) {
  StringValue message;
  message.set_value(value);
  return wire::FrameMessage(message.SerializeAsString());
}

const H2Fields& GrpcHeaders() {
  static const H2Fields* fields =
      new H2Fields{{":status", "200"}, {"content-type", "application/grpc"}};
  return *fields;
}
H2Fields Status(int code, const std::string& message = "") {
  H2Fields fields = {{"grpc-status", std::to_string(code)}};
  if (!message.empty()) fields.push_back({"grpc-message", message});
  return fields;
}
H2Fields TrailersOnly(int code, const std::string& message = "") {
  H2Fields fields = GrpcHeaders();
  for (auto& field : Status(code, message)) fields.push_back(field);
  return fields;
}

// The process's peak resident size, and its reset (Linux: clear_refs 5).
int64_t PeakRssKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      int64_t kb = 0;
      (void)absl::SimpleAtoi(
          absl::StripAsciiWhitespace(line.substr(6, line.size() - 9)), &kb);
      return kb;
    }
  }
  return -1;
}
void ResetPeakRss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
}

struct PeerOutcome {
  mutable absl::Mutex mu;
  int done_calls ABSL_GUARDED_BY(mu) = 0;
  grpc::Status status ABSL_GUARDED_BY(mu);
  std::vector<std::string> messages ABSL_GUARDED_BY(mu);
  size_t message_bytes ABSL_GUARDED_BY(mu) = 0;
  bool keep_messages = true;

  bool WaitDone() const {
    absl::MutexLock lock(&mu);
    const auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return done_calls > 0;
    };
    return mu.AwaitWithTimeout(absl::Condition(&done), kPeerWait);
  }
  grpc::Status final_status() const {
    absl::MutexLock lock(&mu);
    return status;
  }
  std::vector<std::string> values() const {
    absl::MutexLock lock(&mu);
    std::vector<std::string> out;
    for (const std::string& bytes : messages) {
      StringValue message;
      out.push_back(message.ParseFromString(bytes) ? message.value()
                                                   : "<unparsable>");
    }
    return out;
  }
};

class ConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  bool native() const { return GetParam() == "native"; }

  UpstreamOptions Options(const std::string& target) const {
    UpstreamOptions options;
    options.client = GetParam() == std::string("grpc")
                         ? UpstreamClient::kGrpc
                         : UpstreamClient::kNative;
    options.target = target;
    options.reconnect_max_backoff = absl::Milliseconds(100);
    options.max_response_bytes = kMaxMessage;
    options.max_header_list_bytes = kMaxHeaders;
    options.keepalive_time = absl::InfiniteDuration();
    options.read_methods = {};
    return options;
  }

  void Connect(const UpstreamOptions& options) {
    upstream_ = std::make_unique<Upstream>(loop_.context(), options);
  }

  void TearDown() override {
    upstream_.reset();
    if (peer_ != nullptr) peer_->Stop();
  }

  // A peer running `script`, and a client to it.
  H2Peer& Serve(H2Peer::Script script,
                const std::function<void(UpstreamOptions&)>& adjust = nullptr) {
    peer_ = std::make_unique<H2Peer>(std::move(script));
    EXPECT_NE(peer_->port(), 0);
    UpstreamOptions options = Options(peer_->address());
    if (adjust) adjust(options);
    Connect(options);
    return *peer_;
  }

  static CallOptions Defaults() {
    CallOptions options;
    options.deadline = absl::Seconds(20);
    return options;
  }

  std::shared_ptr<PeerOutcome> Unary(const CallOptions& options = Defaults()) {
    auto outcome = std::make_shared<PeerOutcome>();
    StringValue request;
    request.set_value("question");
    upstream_->Unary(
        kMethod, request, options,
        [outcome](const grpc::Status& status, std::string& response) {
          absl::MutexLock lock(&outcome->mu);
          ++outcome->done_calls;
          outcome->status = status;
          if (status.ok()) outcome->messages.push_back(response);
        });
    return outcome;
  }

  std::shared_ptr<PeerOutcome> Stream(bool keep_messages = true,
                                      const CallOptions& options = Defaults()) {
    auto outcome = std::make_shared<PeerOutcome>();
    outcome->keep_messages = keep_messages;
    StringValue request;
    request.set_value("question");
    upstream_->ServerStream(
        kMethod, request, options,
        [outcome](std::string& message) {
          absl::MutexLock lock(&outcome->mu);
          outcome->message_bytes += message.size();
          if (outcome->keep_messages) outcome->messages.push_back(message);
        },
        [outcome](const grpc::Status& status) {
          absl::MutexLock lock(&outcome->mu);
          ++outcome->done_calls;
          outcome->status = status;
        });
    return outcome;
  }

  http::EventLoop loop_{1};
  std::unique_ptr<H2Peer> peer_;
  std::unique_ptr<Upstream> upstream_;
};

#define EXPECT_CODE(outcome_expression, expected)                        \
  do {                                                                   \
    const std::shared_ptr<PeerOutcome> o_ = (outcome_expression);        \
    ASSERT_TRUE(o_->WaitDone()) << "no callback within kPeerWait";       \
    const grpc::Status s_ = o_->final_status();                          \
    EXPECT_EQ(s_.error_code(), (expected)) << s_.error_message();        \
    std::printf(                                                         \
        "    [%s] %s: %d %s\n", GetParam().c_str(),                      \
        ::testing::UnitTest::GetInstance()->current_test_info()->name(), \
        static_cast<int>(s_.error_code()), s_.error_message().c_str());  \
  } while (0)

// --- The baseline ------------------------------------------------------------

// Guards: the peer speaks gRPC well enough: headers, one message, trailers.
TEST_P(ConformanceTest, WellFormedAnswer) {
  Serve([](H2PeerConnection& c, const H2Request& r) {
    c.Headers(r.stream_id, GrpcHeaders());
    c.Data(r.stream_id, Message("réponse"));
    c.Trailers(r.stream_id, Status(0));
  });
  auto outcome = Unary();
  EXPECT_CODE(outcome, Code::OK);
  EXPECT_EQ(outcome->values(), std::vector<std::string>{"réponse"});
}

// --- GOAWAY ------------------------------------------------------------------

// Guards: GOAWAY whose last stream id is below streams in flight: the stream
// it names is answered; the others (never processed) go again on a new
// connection, any method: every call ends OK.
TEST_P(ConformanceTest, GoawayBelowStreamsInFlight) {
  absl::Mutex mu;
  std::vector<int32_t> first_connection;
  H2Peer& peer = Serve([&](H2PeerConnection& c, const H2Request& r) {
    if (c.index() > 0) {
      c.Headers(r.stream_id, GrpcHeaders());
      c.Data(r.stream_id, Message(absl::StrCat("seconde-", r.stream_id)));
      c.Trailers(r.stream_id, Status(0));
      return;
    }
    std::vector<int32_t> ids;
    {
      absl::MutexLock lock(&mu);
      first_connection.push_back(r.stream_id);
      if (first_connection.size() < 3) return;
      ids = first_connection;
    }
    c.Goaway(ids[0], NGHTTP2_NO_ERROR);
    c.Headers(ids[0], GrpcHeaders());
    c.Data(ids[0], Message("première"));
    c.Trailers(ids[0], Status(0));
  });
  std::vector<std::shared_ptr<PeerOutcome>> outcomes;
  for (int i = 0; i < 3; ++i) outcomes.push_back(Unary());
  int first = 0;
  for (const auto& outcome : outcomes) {
    EXPECT_CODE(outcome, Code::OK);
    if (outcome->values() == std::vector<std::string>{"première"}) ++first;
  }
  EXPECT_EQ(first, 1);
  // Native: exactly one new connection; gRPC may make one more.
  EXPECT_GE(peer.connections(), 2);
  if (native()) {
    EXPECT_EQ(peer.connections(), 2);
  }
}

// --- RST_STREAM
// ----------------------------------------------------------------

// gRPC's code for a stream reset without a status.
Code CodeOfReset(uint32_t error_code) {
  switch (error_code) {
    case NGHTTP2_REFUSED_STREAM: return Code::UNAVAILABLE;
    case NGHTTP2_CANCEL: return Code::CANCELLED;
    case NGHTTP2_ENHANCE_YOUR_CALM: return Code::RESOURCE_EXHAUSTED;
    case NGHTTP2_INADEQUATE_SECURITY: return Code::PERMISSION_DENIED;
    default: return Code::INTERNAL;
  }
}

// Guards: RST_STREAM with each HTTP/2 error code, before any answer and
// after the response headers, ends the call with gRPC's code for it
// (NO_ERROR without a status included: INTERNAL). REFUSED_STREAM before
// any answer means the server never saw the call: the native client tries
// it again at once, three times, then fails UNAVAILABLE (gRPC 1.51 too,
// after attempts of its own).
TEST_P(ConformanceTest, RstStreamWithEachErrorCode) {
  for (bool after_headers : {false, true}) {
    for (uint32_t code = 0; code <= NGHTTP2_HTTP_1_1_REQUIRED; ++code) {
      SCOPED_TRACE(
          absl::StrCat("code ", code, after_headers ? " after headers" : ""));
      std::atomic<int> attempts{0};
      Serve([&, code, after_headers](H2PeerConnection& c, const H2Request& r) {
        ++attempts;
        if (after_headers) c.Headers(r.stream_id, GrpcHeaders());
        c.Reset(r.stream_id, code);
      });
      CallOptions options = Defaults();
      options.deadline = absl::Seconds(5);
      auto outcome = Unary(options);
      EXPECT_CODE(outcome, CodeOfReset(code));
      if (code == NGHTTP2_REFUSED_STREAM && !after_headers) {
        std::printf("    [%s] refused stream: %d attempts\n",
                    GetParam().c_str(), attempts.load());
        if (native()) {
          EXPECT_EQ(attempts.load(), 4) << "one attempt and three again";
        }
      }
      upstream_.reset();
      peer_->Stop();
    }
  }
}

// --- Answers that are not gRPC -----------------------------------------------

// Guards: an HTTP error answer without grpc-status (a proxy's or a load
// balancer's page) ends the call with gRPC's code for the HTTP status, at
// once: its body (8 MiB of HTML here) is not read into memory.
TEST_P(ConformanceTest, NonGrpcErrorAnswers) {
  const std::pair<int, Code> cases[] = {
      {503, Code::UNAVAILABLE},       {502, Code::UNAVAILABLE},
      {504, Code::UNAVAILABLE},       {429, Code::UNAVAILABLE},
      {404, Code::UNIMPLEMENTED},     {401, Code::UNAUTHENTICATED},
      {403, Code::PERMISSION_DENIED}, {400, Code::INTERNAL},
      {500, Code::UNKNOWN},
  };
  for (const auto& [http_status, expected] : cases) {
    SCOPED_TRACE(http_status);
    Serve([http_status](H2PeerConnection& c, const H2Request& r) {
      c.Headers(r.stream_id, {{":status", std::to_string(http_status)},
                              {"content-type", "text/html"}});
      auto left = std::make_shared<int>(8 * 64);
      c.DataFrom(
          r.stream_id,
          [left](std::string& frame) {
            if ((*left)-- == 0) return false;
            frame.assign(16 * 1024, 'x');
            frame.replace(0, 6, "<html>");
            return true;
          },
          /*end_stream=*/true);
    });
    EXPECT_CODE(Unary(), expected);
    upstream_.reset();
    peer_->Stop();
  }
}

// Guards: a read method answered 503 by something that is not gRPC (a
// load balancer with no server behind) is retried as UNAVAILABLE, as gRPC's
// retry policy does; then fails UNAVAILABLE.
TEST_P(ConformanceTest, NonGrpc503OnAReadIsRetried) {
  std::atomic<int> attempts{0};
  Serve(
      [&attempts](H2PeerConnection& c, const H2Request& r) {
        ++attempts;
        c.Headers(r.stream_id,
                  {{":status", "503"}, {"content-type", "text/plain"}});
        c.Data(r.stream_id, "no healthy upstream", true);
      },
      [](UpstreamOptions& options) { options.read_methods = {kMethod}; });
  EXPECT_CODE(Unary(), Code::UNAVAILABLE);
  std::printf("    [%s] 503 on a read: %d attempts\n", GetParam().c_str(),
              attempts.load());
  EXPECT_EQ(attempts.load(), 3);
}

// Guards: a 200 that is not gRPC (an HTML page) delivers nothing.
TEST_P(ConformanceTest, HtmlWithStatus200) {
  Serve([](H2PeerConnection& c, const H2Request& r) {
    c.Headers(r.stream_id, {{":status", "200"}, {"content-type", "text/html"}});
    c.Data(r.stream_id, "<html><body>Bienvenue</body></html>", true);
  });
  auto outcome = Stream();
  // UNKNOWN as soon as the headers say it is not gRPC (grpc-go's rule;
  // gRPC C++ refuses the content-type as it parses it: "Stream removed").
  EXPECT_CODE(outcome, Code::UNKNOWN);
  EXPECT_TRUE(outcome->values().empty());
}

// --- Trailers-only
// ----------------------------------------------------------------

// Guards: a trailers-only error: its code, its (percent-decoded) message.
TEST_P(ConformanceTest, TrailersOnlyError) {
  Serve([](H2PeerConnection& c, const H2Request& r) {
    c.Headers(r.stream_id, TrailersOnly(5, "Session introuvable : 100%25"),
              /*end_stream=*/true);
  });
  auto outcome = Unary();
  EXPECT_CODE(outcome, Code::NOT_FOUND);
  EXPECT_EQ(outcome->final_status().error_message(),
            "Session introuvable : 100%");
}

// Guards: grpc-status wins over an HTTP error status (gRPC's mapping rule).
TEST_P(ConformanceTest, TrailersOnlyWithHttpErrorStatus) {
  Serve([](H2PeerConnection& c, const H2Request& r) {
    c.Headers(r.stream_id,
              {{":status", "503"},
               {"content-type", "application/grpc"},
               {"grpc-status", "9"},
               {"grpc-message", "précondition"}},
              /*end_stream=*/true);
  });
  EXPECT_CODE(Unary(), Code::FAILED_PRECONDITION);
}

// --- Messages and DATA frames
// ------------------------------------------------------

// Guards: one message cut into 3-byte DATA frames, and 40 stream messages
// each cut across frame boundaries (frames of 7 bytes), arrive whole.
TEST_P(ConformanceTest, MessagesSplitAcrossManyDataFrames) {
  std::string large(4000, 'a');
  for (size_t i = 0; i < large.size(); i += 7) large[i] = 'z';
  std::vector<std::string> values;
  std::string stream_bytes;
  for (int i = 0; i < 40; ++i) {
    values.push_back(absl::StrCat("message ", i, std::string(i * 3, '.')));
    stream_bytes += Message(values.back());
  }
  std::atomic<int> calls{0};
  Serve([&](H2PeerConnection& c, const H2Request& r) {
    c.Headers(r.stream_id, GrpcHeaders());
    const bool unary = calls++ == 0;
    const std::string bytes = unary ? Message(large) : stream_bytes;
    const size_t step = unary ? 3 : 7;
    for (size_t i = 0; i < bytes.size(); i += step) {
      c.Data(r.stream_id, bytes.substr(i, step));
    }
    c.Trailers(r.stream_id, Status(0));
  });
  auto unary = Unary();
  EXPECT_CODE(unary, Code::OK);
  EXPECT_EQ(unary->values(), std::vector<std::string>{large});
  auto stream = Stream();
  EXPECT_CODE(stream, Code::OK);
  EXPECT_EQ(stream->values(), values);
}

// Guards: a message cut short, then trailers saying OK: INTERNAL, for a
// unary call and for a stream (whose whole messages before it arrive).
// gRPC 1.51's client gets both wrong, which is why the native client does
// not copy it here: the unary call waits for the rest of the message until
// its deadline, the stream ends OK without the cut message.
TEST_P(ConformanceTest, TruncatedMessageWithStatusOk) {
  Serve([](H2PeerConnection& c, const H2Request& r) {
    c.Headers(r.stream_id, GrpcHeaders());
    c.Data(r.stream_id, Message("entier"));
    c.Data(r.stream_id, Message(std::string(100, 'x')).substr(0, 40));
    c.Trailers(r.stream_id, Status(0));
  });
  CallOptions options = Defaults();
  options.deadline = absl::Seconds(2);
  auto unary = Unary(options);
  EXPECT_CODE(unary, native() ? Code::INTERNAL : Code::DEADLINE_EXCEEDED);
  auto stream = Stream();
  EXPECT_CODE(stream, native() ? Code::INTERNAL : Code::OK);
  EXPECT_EQ(stream->values(), std::vector<std::string>{"entier"});
}

// Guards: a message announcing more than the limit ends the call
// RESOURCE_EXHAUSTED before its body is buffered (the peer announces 64 MiB
// and sends 1 MiB of it, then trailers saying OK). gRPC 1.51 checks the
// size only of a message it has whole: this one never is, and the call
// ends OK (the truncation hole above).
TEST_P(ConformanceTest, MessageOverTheLimitIsNotBuffered) {
  Serve([](H2PeerConnection& c, const H2Request& r) {
    c.Headers(r.stream_id, GrpcHeaders());
    std::string prefix(5, '\0');
    prefix[1] = 4;  // 64 MiB
    c.Data(r.stream_id, prefix + std::string(1 << 20, 'x'));
    c.Trailers(r.stream_id, Status(0));
  });
  EXPECT_CODE(Unary(), native() ? Code::RESOURCE_EXHAUSTED : Code::OK);
}

// Guards: a long stream (16 MiB in 1000-byte messages) whose DATA frames
// all end in the middle of a message is delivered whole, and the native
// client holds at most about one message of it at a time: the process's
// peak resident size grows by far less than the stream (the first client
// kept every byte of such a stream). gRPC's client reads ahead up to its
// flow-control window (grown by its bandwidth probes: ~10 MiB measured),
// less than the stream all the same.
TEST_P(ConformanceTest, LongStreamOfSplitMessagesStaysBounded) {
  constexpr int kMessages = 16 * 1024;
  const std::string one = Message(std::string(1000, 'm'));
  Serve([&one](H2PeerConnection& c, const H2Request& r) {
    c.Headers(r.stream_id, GrpcHeaders());
    // Frames of 1,500 bytes: every one ends inside a message.
    auto state = std::make_shared<std::pair<int, size_t>>(0, 0);
    c.DataFrom(r.stream_id, [&one, state](std::string& frame) {
      auto& [message, offset] = *state;
      frame.clear();
      while (frame.size() < 1500 && message < kMessages) {
        const size_t take = std::min(1500 - frame.size(), one.size() - offset);
        frame.append(one, offset, take);
        offset += take;
        if (offset == one.size()) {
          offset = 0;
          ++message;
        }
      }
      return !frame.empty();
    });
    c.Trailers(r.stream_id, Status(0));
  });
  // Connected first: the baseline holds the connection's own buffers.
  ResetPeakRss();
  const int64_t before = PeakRssKb();
  auto outcome = Stream(/*keep_messages=*/false);
  EXPECT_CODE(outcome, Code::OK);
  const int64_t growth_kb = PeakRssKb() - before;
  {
    absl::MutexLock lock(&outcome->mu);
    EXPECT_EQ(outcome->message_bytes, static_cast<size_t>(kMessages) * 1003);
  }
  std::printf("    [%s] peak RSS growth over a 16 MiB stream: %lld KiB\n",
              GetParam().c_str(), static_cast<long long>(growth_kb));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizers' allocators keep freed blocks aside (ASan's quarantine):
  // resident memory then grows with what was allocated, not with what is
  // held. The bound is checked in the plain build only.
  (void)growth_kb;
#else
  EXPECT_LT(growth_kb, native() ? 1024 : 16 * 1024);
#endif
}

// --- grpc-status where it does not count
// ---------------------------------------------

// Guards: grpc-status in the initial headers (not the trailers) is not the
// call's status: the trailers' is.
TEST_P(ConformanceTest, GrpcStatusInInitialHeadersIsIgnored) {
  Serve([](H2PeerConnection& c, const H2Request& r) {
    H2Fields headers = GrpcHeaders();
    headers.push_back({"grpc-status", "0"});
    c.Headers(r.stream_id, headers);
    c.Data(r.stream_id, Message("un"));
    c.Trailers(r.stream_id, Status(9, "refus"));
  });
  EXPECT_CODE(Unary(), Code::FAILED_PRECONDITION);
}

// Guards: an interim (1xx) header block carrying grpc-status counts for
// nothing: the answer that follows is read as usual (RFC 9113 §8.1 allows
// interim answers). gRPC 1.51 refuses any 1xx ("Stream removed",
// UNKNOWN): a difference kept, as no gRPC server sends one.
TEST_P(ConformanceTest, GrpcStatusInInformationalHeadersIsIgnored) {
  Serve([](H2PeerConnection& c, const H2Request& r) {
    c.Headers(r.stream_id, {{":status", "100"}, {"grpc-status", "13"}});
    c.Headers(r.stream_id, GrpcHeaders());
    c.Data(r.stream_id, Message("après l'intérim"));
    c.Trailers(r.stream_id, Status(0));
  });
  auto outcome = Unary();
  EXPECT_CODE(outcome, native() ? Code::OK : Code::UNKNOWN);
  if (native()) {
    EXPECT_EQ(outcome->values(), std::vector<std::string>{"après l'intérim"});
  }
}

// Guards: grpc-status 0 in the initial headers, a message, then the stream
// ends without trailers: not OK (the status never came).
TEST_P(ConformanceTest, StatusOnlyInInitialHeadersThenNoTrailers) {
  Serve([](H2PeerConnection& c, const H2Request& r) {
    H2Fields headers = GrpcHeaders();
    headers.push_back({"grpc-status", "0"});
    c.Headers(r.stream_id, headers);
    c.Data(r.stream_id, Message("un"), /*end_stream=*/true);
  });
  EXPECT_CODE(Unary(), Code::UNKNOWN);
}

// --- Header sizes
// ----------------------------------------------------------------

// Guards: response headers or trailers over the advertised limit (16 KiB
// here) end the call RESOURCE_EXHAUSTED; the connection still serves the
// next call (native; see below for gRPC).
TEST_P(ConformanceTest, OversizedHeaders) {
  for (bool in_trailers : {false, true}) {
    SCOPED_TRACE(in_trailers ? "trailers" : "headers");
    Serve([in_trailers](H2PeerConnection& c, const H2Request& r) {
      if (r.headers.find("x-small") != r.headers.end()) {
        c.Headers(r.stream_id, GrpcHeaders());
        c.Data(r.stream_id, Message("petit"));
        c.Trailers(r.stream_id, Status(0));
        return;
      }
      H2Fields large;
      for (int i = 0; i < 40; ++i) {
        large.push_back({absl::StrCat("x-large-", i), std::string(1000, 'v')});
      }
      H2Fields headers = GrpcHeaders();
      if (!in_trailers) {
        headers.insert(headers.end(), large.begin(), large.end());
      }
      c.Headers(r.stream_id, headers);
      c.Data(r.stream_id, Message("grand"));
      H2Fields trailers = Status(0);
      if (in_trailers) {
        trailers.insert(trailers.end(), large.begin(), large.end());
      }
      c.Trailers(r.stream_id, trailers);
    });
    EXPECT_CODE(Unary(), Code::RESOURCE_EXHAUSTED);
    CallOptions small = Defaults();
    small.metadata = {{"x-small", "1"}};
    auto after = Unary(small);
    if (native()) {
      EXPECT_CODE(after, Code::OK);
    } else {
      // gRPC 1.51 failed this next call too, once in ~40 runs under
      // ThreadSanitizer ("received initial metadata size exceeds limit"
      // for a small answer; not understood, gRPC's own HPACK parser is where
      // the message comes from). Recorded, not required.
      ASSERT_TRUE(after->WaitDone());
      std::printf("    [grpc] the next call: %d\n",
                  static_cast<int>(after->final_status().error_code()));
    }
    upstream_.reset();
    peer_->Stop();
  }
}

// --- Handshake
// ----------------------------------------------------------------------

// Guards: a peer that accepts TCP and never sends SETTINGS: the connection
// attempt fails after connect_timeout; a call fails UNAVAILABLE then (not
// at its deadline), and one that waits for a server ends at its deadline.
TEST_P(ConformanceTest, PeerNeverSendsSettings) {
  peer_ = std::make_unique<H2Peer>(nullptr, H2Peer::Mode::kSilent);
  ASSERT_NE(peer_->port(), 0);
  UpstreamOptions options = Options(peer_->address());
  options.connect_timeout = absl::Milliseconds(500);
  Connect(options);
  const absl::Time start = absl::Now();
  auto failed = Unary();  // deadline 20 s
  EXPECT_CODE(failed, Code::UNAVAILABLE);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_FALSE(upstream_->AnyServerReady());
  CallOptions waiting = Defaults();
  waiting.wait_for_ready = true;
  waiting.deadline = absl::Seconds(2);
  EXPECT_CODE(Unary(waiting), Code::DEADLINE_EXCEEDED);
  EXPECT_GE(peer_->connections(), 2) << "attempts are made again";
}

// --- Keepalive
// ---------------------------------------------------------------------

// Guards: an idle connection (no call in progress) is pinged every
// keepalive_time, and stays up while the PINGs are answered.
TEST_P(ConformanceTest, IdleConnectionIsPinged) {
  H2Peer& peer = Serve(
      [](H2PeerConnection& c, const H2Request& r) {
        c.Headers(r.stream_id, GrpcHeaders());
        c.Data(r.stream_id, Message("ok"));
        c.Trailers(r.stream_id, Status(0));
      },
      [](UpstreamOptions& options) {
        options.keepalive_time = absl::Milliseconds(200);
        options.keepalive_timeout = absl::Seconds(5);
      });
  EXPECT_CODE(Unary(), Code::OK);
  EXPECT_TRUE(Eventually([&peer] { return peer.pings() >= 3; }))
      << peer.pings() << " PINGs";
  EXPECT_EQ(peer.connections(), 1) << "an answered PING dropped nothing";
  EXPECT_CODE(Unary(), Code::OK);
}

// Guards: a peer that stops acknowledging PINGs (its host froze) has its
// connection dropped after keepalive_timeout: a call in progress on it
// ends UNAVAILABLE instead of waiting for its deadline, and the client
// connects again.
TEST_P(ConformanceTest, UnansweredPingDropsTheConnection) {
  peer_ = std::make_unique<H2Peer>(
      [](H2PeerConnection&, const H2Request&) {},  // never answers
      H2Peer::Mode::kNoPingAck);
  ASSERT_NE(peer_->port(), 0);
  UpstreamOptions options = Options(peer_->address());
  options.keepalive_time = absl::Milliseconds(300);
  options.keepalive_timeout = absl::Milliseconds(300);
  Connect(options);
  const absl::Time start = absl::Now();
  auto hanging = Unary();  // deadline 20 s
  EXPECT_CODE(hanging, Code::UNAVAILABLE);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(Eventually([this] { return peer_->connections() >= 2; }));
}

// --- Targets
// -------------------------------------------------------------------------

// Guards: a target that does not parse (coach-proxy refuses it at start;
// this is the library's own answer): calls fail at once, UNAVAILABLE
// (gRPC's lame channel: UNKNOWN).
TEST_P(ConformanceTest, BadTargetFailsCalls) {
  Connect(Options("dns:///"));
  const absl::Time start = absl::Now();
  EXPECT_CODE(Unary(), native() ? Code::UNAVAILABLE : Code::UNKNOWN);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_FALSE(upstream_->AnyServerReady());
}

INSTANTIATE_TEST_SUITE_P(Clients, ConformanceTest,
                         ::testing::Values("native", "grpc"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace coach::proxy
