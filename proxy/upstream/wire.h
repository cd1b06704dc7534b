// gRPC over HTTP/2 as the client reads and writes it, without any I/O:
// message framing, the response's header blocks and DATA bytes turned into
// messages and a final status, grpc-timeout, and the target names. Pure
// functions and single-threaded values, unit-tested
// (tests/upstream_wire_test.cc) and fuzzed (proxy/upstream/fuzz/).
//
// The rules are gRPC's PROTOCOL-HTTP2.md and http-grpc-status-mapping.md,
// checked against gRPC's own C++ client where the documents are silent
// (tests/upstream_conformance_test.cc runs both on the same peers):
// - a response is initial headers, messages, trailers; or trailers alone
//   ("trailers-only"). Informational (1xx) header blocks are skipped.
// - the status comes only from the trailers (or a trailers-only block):
//   grpc-status anywhere else is ignored.
// - messages are delivered only after initial headers with `:status` 200
//   and a `content-type` of application/grpc (or application/grpc+...); any
//   other answer ends the call at once, its body unread: an HTTP status is
//   mapped to a gRPC code as gRPC does (404 -> UNIMPLEMENTED, 503 ->
//   UNAVAILABLE...), a 200 that is not gRPC is UNKNOWN.
// - a header block larger than the advertised limit (names, values and 32
//   bytes per field, as HTTP/2 counts it) ends the call RESOURCE_EXHAUSTED.
// - a stream that ends OK in the middle of a message, or a unary call
//   answered OK without exactly one message, ends INTERNAL.
// - bytes buffered per stream never exceed one message prefix and one
//   message (at most the message limit).
//
// Statuses are absl::Status with gRPC's code numbers; the server's
// google.rpc.Status bytes (grpc-status-details-bin) ride as a payload
// (DetailsOf).
#ifndef COACH_PROXY_UPSTREAM_WIRE_H_
#define COACH_PROXY_UPSTREAM_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace coach::proxy::wire {

// gRPC's message prefix: a compressed flag, then a 32-bit big-endian length.
inline constexpr size_t kMessagePrefixBytes = 5;

// `serialized` with its prefix (uncompressed).
std::string FrameMessage(absl::string_view serialized);
// Writes the prefix of an uncompressed message of `length` bytes.
void WriteMessagePrefix(size_t length, char prefix[kMessagePrefixBytes]);

// grpc-timeout for `left` (at least 1 ms): at most 8 digits, in
// milliseconds while they fit, else seconds.
std::string GrpcTimeout(absl::Duration left);
// A grpc-timeout value read back ("100m", "5S", "1H"...); nullopt when it
// is not one.
std::optional<absl::Duration> ParseGrpcTimeout(absl::string_view value);

// gRPC's code for an HTTP status that came without grpc-status.
absl::StatusCode CodeOfHttpStatus(int http_status);
// gRPC's code for a stream reset (RST_STREAM, or a GOAWAY's error) by its
// HTTP/2 error code.
absl::StatusCode CodeOfHttp2Error(uint32_t error_code);

// A grpc-status value: its code, UNKNOWN when it is not one (as gRPC).
absl::StatusCode ParseGrpcStatus(absl::string_view value);
// A grpc-message value: percent-decoded; a bad escape is kept as it is
// (gRPC's permissive decoding).
std::string DecodeGrpcMessage(absl::string_view value);
// A binary (-bin) header's value: base64, padded or not; nullopt when it
// is not base64.
std::optional<std::string> DecodeBinaryHeader(absl::string_view value);

// The status `code` with `message` and, when not empty, the serialized
// google.rpc.Status `details` as a payload.
absl::Status MakeStatus(absl::StatusCode code, absl::string_view message,
                        absl::string_view details = {});
// The details MakeStatus put in `status` (empty: none).
std::string DetailsOf(const absl::Status& status);

// One server address a target names: a literal address, or a name to
// resolve.
struct TargetAddress {
  std::string host;
  std::string port;
  bool operator==(const TargetAddress&) const = default;
};
// "host:port", "dns:///host:port" (or "dns://authority/host:port",
// "dns:host:port"), "ipv4:a:p,b:p", "ipv6:[a]:p,[b]:p"; a missing port is
// 443 (gRPC's default). An error names what is wrong (no address, a port
// that is not 1-65535, an unclosed '[').
absl::StatusOr<std::vector<TargetAddress>> ParseTarget(
    absl::string_view target);

// Cuts a stream of DATA bytes into messages. Holds at most one message's
// prefix and the part of one message received so far; a message announcing
// more than `max_message_bytes`, or compressed, is refused before any of
// its body is buffered.
class Deframer {
 public:
  // Receives each message in order; may move from it. Returns false to
  // stop (the rest of the bytes are dropped, and so is what follows).
  using Sink = absl::FunctionRef<bool(std::string& message)>;

  explicit Deframer(size_t max_message_bytes)
      : max_message_bytes_(max_message_bytes) {}

  // An error ends the stream: RESOURCE_EXHAUSTED (a message over the
  // limit), INTERNAL (a compressed message: none is asked for, or a flag
  // that is neither 0 nor 1). Nothing is read after an error or a stop.
  absl::Status Feed(absl::string_view data, Sink sink);

  // A message has begun and not ended (the stream must not end here).
  bool InMessage() const { return prefix_have_ > 0; }
  // Bytes held for the message in progress.
  size_t buffered() const { return prefix_have_ + body_.size(); }
  int messages() const { return messages_; }

 private:
  const size_t max_message_bytes_;
  bool stopped_ = false;
  char prefix_[kMessagePrefixBytes] = {};
  size_t prefix_have_ = 0;  // kMessagePrefixBytes: a body is being read
  size_t body_length_ = 0;
  std::string body_;
  int messages_ = 0;
};

// One response stream as it arrives: header blocks field by field, DATA
// bytes, then the stream's end. Every method returning an error has ended
// the response: the caller resets the stream (if still open), ends the
// call with that status, and calls nothing more.
class ResponseReader {
 public:
  struct Options {
    size_t max_message_bytes = 4 << 20;
    // The SETTINGS_MAX_HEADER_LIST_SIZE the client advertised.
    size_t max_header_list_bytes = 16 << 10;
    // A unary call: exactly one message.
    bool unary = true;
    // Server metadata to copy, from the initial headers then the trailers,
    // into `metadata` (first value wins); null: none.
    const std::vector<std::string>* metadata_keys = nullptr;
    std::map<std::string, std::string>* metadata = nullptr;
  };
  explicit ResponseReader(const Options& options)
      : options_(options), deframer_(options.max_message_bytes) {}

  // A HEADERS frame and its CONTINUATION frames: BeginHeaders, each field
  // (pseudo-headers first, as HTTP/2 requires), EndHeaders.
  // `end_stream`: the frame ends the stream (trailers, or trailers-only).
  void BeginHeaders(bool end_stream);
  absl::Status OnHeader(absl::string_view name, absl::string_view value);
  absl::Status EndHeaders();

  // DATA bytes: whole messages go to `sink` (Deframer::Sink) in order.
  absl::Status OnData(absl::string_view data, Deframer::Sink sink);

  // The stream closed: after its END_STREAM (`http2_error` NO_ERROR, 0),
  // or reset with `http2_error` (`reset`: an RST_STREAM from the server,
  // NO_ERROR included). The call's final status.
  absl::Status Finish(uint32_t http2_error, bool reset = false) const;

  // The response's final headers arrived (the server saw the call: a
  // refused stream after this is not retried as one never seen).
  bool responded() const { return phase_ != Phase::kAwaitingHeaders; }
  // The trailers (or a trailers-only answer) arrived: the status is known.
  bool ended() const { return phase_ == Phase::kEnded; }
  int messages() const { return deframer_.messages(); }
  size_t buffered() const { return deframer_.buffered(); }

 private:
  enum class Phase { kAwaitingHeaders, kBody, kEnded };
  // What kind of header block is being read.
  enum class Block { kInitial, kTrailersOnly, kTrailers, kInformational };

  absl::Status EndInitial();
  absl::Status EndFinal();
  void KeepMetadata(absl::string_view name, absl::string_view value);

  const Options options_;
  Deframer deframer_;
  Phase phase_ = Phase::kAwaitingHeaders;
  // The block being read.
  Block block_ = Block::kInitial;
  bool block_end_stream_ = false;
  size_t block_bytes_ = 0;
  int http_status_ = 0;  // of the block being read (0: none yet)
  // The answer's content-type is gRPC's; if it is not, what it is (for the
  // error's message).
  bool grpc_content_type_ = false;
  std::string content_type_;
  std::optional<absl::StatusCode> grpc_status_;
  std::string grpc_message_;
  std::string grpc_details_;
  // Set once the status is known (trailers, or an answer that is not
  // gRPC).
  absl::Status final_;
};

}  // namespace coach::proxy::wire

#endif  // COACH_PROXY_UPSTREAM_WIRE_H_
