#include "proxy/upstream/wire.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/url.h"

namespace coach::proxy::wire {
namespace {

// Where MakeStatus keeps the details (a payload's type URL; never on the
// wire).
constexpr char kDetailsPayload[] = "coach.upstream/grpc-status-details-bin";
// HTTP/2 counts each header field as its name, its value and 32 bytes
// (RFC 9113 §6.5.2).
constexpr size_t kFieldOverhead = 32;
// A message's body is reserved up to this much at once; larger ones grow
// as their bytes arrive (a peer announcing a large message and sending
// nothing costs little).
constexpr size_t kMaxReserve = 1 << 20;

// RFC 9113 §7's names, for messages.
absl::string_view Http2ErrorName(uint32_t code) {
  static constexpr absl::string_view kNames[] = {"NO_ERROR",
                                                 "PROTOCOL_ERROR",
                                                 "INTERNAL_ERROR",
                                                 "FLOW_CONTROL_ERROR",
                                                 "SETTINGS_TIMEOUT",
                                                 "STREAM_CLOSED",
                                                 "FRAME_SIZE_ERROR",
                                                 "REFUSED_STREAM",
                                                 "CANCEL",
                                                 "COMPRESSION_ERROR",
                                                 "CONNECT_ERROR",
                                                 "ENHANCE_YOUR_CALM",
                                                 "INADEQUATE_SECURITY",
                                                 "HTTP_1_1_REQUIRED"};
  return code < std::size(kNames) ? kNames[code] : "unknown error";
}

bool IsGrpcContentType(absl::string_view value) {
  // "application/grpc", "application/grpc+proto", "application/grpc;..."
  if (!absl::StartsWithIgnoreCase(value, "application/grpc")) return false;
  const absl::string_view rest = value.substr(16);
  return rest.empty() || rest[0] == '+' || rest[0] == ';';
}

}  // namespace

void WriteMessagePrefix(size_t length, char prefix[kMessagePrefixBytes]) {
  prefix[0] = 0;
  prefix[1] = static_cast<char>((length >> 24) & 0xFF);
  prefix[2] = static_cast<char>((length >> 16) & 0xFF);
  prefix[3] = static_cast<char>((length >> 8) & 0xFF);
  prefix[4] = static_cast<char>(length & 0xFF);
}

std::string FrameMessage(absl::string_view serialized) {
  std::string framed(kMessagePrefixBytes + serialized.size(), '\0');
  WriteMessagePrefix(serialized.size(), framed.data());
  if (!serialized.empty()) {
    std::memcpy(framed.data() + kMessagePrefixBytes, serialized.data(),
                serialized.size());
  }
  return framed;
}

std::string GrpcTimeout(absl::Duration left) {
  const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(left));
  if (ms < 100'000'000) return absl::StrCat(ms, "m");
  return absl::StrCat(std::min<int64_t>(99'999'999, ms / 1000), "S");
}

std::optional<absl::Duration> ParseGrpcTimeout(absl::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  const absl::string_view digits = value.substr(0, value.size() - 1);
  if (!std::all_of(digits.begin(), digits.end(),
                   [](char c) { return absl::ascii_isdigit(c); })) {
    return std::nullopt;
  }
  int64_t n = 0;
  if (!absl::SimpleAtoi(digits, &n)) return std::nullopt;
  switch (value.back()) {
    case 'H': return absl::Hours(n);
    case 'M': return absl::Minutes(n);
    case 'S': return absl::Seconds(n);
    case 'm': return absl::Milliseconds(n);
    case 'u': return absl::Microseconds(n);
    case 'n': return absl::Nanoseconds(n);
    default: return std::nullopt;
  }
}

absl::StatusCode CodeOfHttpStatus(int http_status) {
  // http-grpc-status-mapping.md.
  switch (http_status) {
    case 400: return absl::StatusCode::kInternal;
    case 401: return absl::StatusCode::kUnauthenticated;
    case 403: return absl::StatusCode::kPermissionDenied;
    case 404: return absl::StatusCode::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504: return absl::StatusCode::kUnavailable;
    default: return absl::StatusCode::kUnknown;
  }
}

absl::StatusCode CodeOfHttp2Error(uint32_t error_code) {
  // gRPC's grpc_http2_error_to_grpc_status. NO_ERROR without a status
  // "should never be received": INTERNAL.
  switch (error_code) {
    // REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM, INADEQUATE_SECURITY.
    case 0x7: return absl::StatusCode::kUnavailable;
    case 0x8: return absl::StatusCode::kCancelled;
    case 0xb: return absl::StatusCode::kResourceExhausted;
    case 0xc: return absl::StatusCode::kPermissionDenied;
    default: return absl::StatusCode::kInternal;
  }
}

absl::StatusCode ParseGrpcStatus(absl::string_view value) {
  int code = 0;
  if (value.empty() || value.size() > 2 ||
      !std::all_of(value.begin(), value.end(),
                   [](char c) { return absl::ascii_isdigit(c); }) ||
      !absl::SimpleAtoi(value, &code) || code > 16) {
    return absl::StatusCode::kUnknown;
  }
  return static_cast<absl::StatusCode>(code);
}

std::string DecodeGrpcMessage(absl::string_view value) {
  std::string out;
  if (value.find('%') == absl::string_view::npos) return std::string(value);
  if (PercentDecode(value, /*plus_is_space=*/false, out)) return out;
  // A bad escape: decode what can be, keep the rest as it is.
  out.clear();
  for (size_t i = 0; i < value.size(); ++i) {
    std::string one;
    if (value[i] == '%' && i + 2 < value.size() &&
        PercentDecode(value.substr(i, 3), false, one)) {
      out += one;
      i += 2;
    } else {
      out.push_back(value[i]);
    }
  }
  return out;
}

std::optional<std::string> DecodeBinaryHeader(absl::string_view value) {
  std::string padded(value);
  padded.append((4 - padded.size() % 4) % 4, '=');
  std::string out;
  if (!absl::Base64Unescape(padded, &out)) return std::nullopt;
  return out;
}

absl::Status MakeStatus(absl::StatusCode code, absl::string_view message,
                        absl::string_view details) {
  absl::Status status(code, message);
  if (!details.empty() && !status.ok()) {
    status.SetPayload(kDetailsPayload, absl::Cord(details));
  }
  return status;
}

std::string DetailsOf(const absl::Status& status) {
  const auto details = status.GetPayload(kDetailsPayload);
  return details.has_value() ? std::string(*details) : std::string();
}

absl::StatusOr<std::vector<TargetAddress>> ParseTarget(
    absl::string_view target) {
  absl::string_view rest = absl::StripAsciiWhitespace(target);
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
  std::vector<TargetAddress> out;
  for (absl::string_view one : absl::StrSplit(rest, ',', absl::SkipEmpty())) {
    one = absl::StripAsciiWhitespace(one);
    if (one.empty()) continue;
    TargetAddress address;
    size_t colon = one.rfind(':');
    if (one.front() == '[') {  // [v6]:port
      const size_t close = one.find(']');
      if (close == absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("no ']' after '[' in \"", one, "\""));
      }
      address.host = std::string(one.substr(1, close - 1));
      colon = close + 1 < one.size() && one[close + 1] == ':'
                  ? close + 1
                  : absl::string_view::npos;
      if (colon == absl::string_view::npos && close + 1 != one.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected text after ']' in \"", one, "\""));
      }
    } else if (colon != absl::string_view::npos) {
      address.host = std::string(one.substr(0, colon));
    } else {
      address.host = std::string(one);
    }
    address.port = colon == absl::string_view::npos
                       ? "443"  // gRPC's default port
                       : std::string(one.substr(colon + 1));
    int port = 0;
    if (!absl::SimpleAtoi(address.port, &port) || port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad port in \"", one, "\""));
    }
    if (address.host.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("no host in \"", one, "\""));
    }
    out.push_back(std::move(address));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no address in target \"", target, "\""));
  }
  return out;
}

// --- Deframer --------------------------------------------------------------

absl::Status Deframer::Feed(absl::string_view data, Sink sink) {
  while (!stopped_) {
    if (prefix_have_ < kMessagePrefixBytes) {
      if (data.empty()) break;
      const size_t take =
          std::min(kMessagePrefixBytes - prefix_have_, data.size());
      std::memcpy(prefix_ + prefix_have_, data.data(), take);
      prefix_have_ += take;
      data.remove_prefix(take);
      if (prefix_have_ < kMessagePrefixBytes) break;
      const auto* p = reinterpret_cast<const uint8_t*>(prefix_);
      const size_t length = (static_cast<size_t>(p[1]) << 24) |
                            (static_cast<size_t>(p[2]) << 16) |
                            (static_cast<size_t>(p[3]) << 8) | p[4];
      if (p[0] != 0) {
        stopped_ = true;
        return absl::InternalError(
            p[0] == 1 ? "compressed response message (none was asked for)"
                      : absl::StrCat("bad message flag ", p[0]));
      }
      if (length > max_message_bytes_) {
        stopped_ = true;
        return absl::ResourceExhaustedError(
            absl::StrCat("response message of ", length, " bytes, over ",
                         max_message_bytes_));
      }
      body_length_ = length;
      // Most messages arrive whole: taken straight from `data`.
      if (data.size() >= length) {
        std::string message(data.substr(0, length));
        data.remove_prefix(length);
        prefix_have_ = 0;
        ++messages_;
        if (!sink(message)) stopped_ = true;
        continue;
      }
      body_.clear();
      body_.reserve(std::min(length, kMaxReserve));
    }
    const size_t take = std::min(body_length_ - body_.size(), data.size());
    body_.append(data.data(), take);
    data.remove_prefix(take);
    if (body_.size() < body_length_) break;
    std::string message = std::move(body_);
    body_ = std::string();  // no capacity kept between messages
    prefix_have_ = 0;
    ++messages_;
    if (!sink(message)) stopped_ = true;
  }
  return absl::OkStatus();
}

// --- ResponseReader ----------------------------------------------------------

void ResponseReader::BeginHeaders(bool end_stream) {
  block_end_stream_ = end_stream;
  block_bytes_ = 0;
  http_status_ = 0;
  switch (phase_) {
    case Phase::kAwaitingHeaders:
      block_ = end_stream ? Block::kTrailersOnly : Block::kInitial;
      break;
    case Phase::kBody:
    case Phase::kEnded: block_ = Block::kTrailers; break;
  }
}

void ResponseReader::KeepMetadata(absl::string_view name,
                                  absl::string_view value) {
  if (options_.metadata == nullptr || options_.metadata_keys == nullptr) {
    return;
  }
  for (const std::string& key : *options_.metadata_keys) {
    if (key == name) {
      options_.metadata->emplace(key, std::string(value));
      return;
    }
  }
}

absl::Status ResponseReader::OnHeader(absl::string_view name,
                                      absl::string_view value) {
  block_bytes_ += name.size() + value.size() + kFieldOverhead;
  if (block_bytes_ > options_.max_header_list_bytes) {
    final_ = absl::ResourceExhaustedError(absl::StrCat(
        block_ == Block::kTrailers ? "trailers" : "response headers",
        " larger than ", options_.max_header_list_bytes,
        " bytes (SETTINGS_MAX_HEADER_LIST_SIZE)"));
    phase_ = Phase::kEnded;
    return final_;
  }
  if (block_ == Block::kInformational) return absl::OkStatus();
  if (name.empty()) return absl::OkStatus();
  if (name[0] == ':') {
    if (name == ":status") {
      int status = 0;
      if (absl::SimpleAtoi(value, &status)) http_status_ = status;
      // 1xx: an interim answer; the real one follows (nothing in it counts).
      if (status >= 100 && status < 200 && block_ != Block::kTrailers) {
        block_ = Block::kInformational;
      }
    }
    return absl::OkStatus();
  }
  const bool final_block =
      block_ == Block::kTrailersOnly || block_ == Block::kTrailers;
  if (name == "content-type") {
    if (block_ != Block::kTrailers) {
      grpc_content_type_ = IsGrpcContentType(value);
      if (!grpc_content_type_) content_type_ = std::string(value.substr(0, 64));
    }
  } else if (name == "grpc-status") {
    if (final_block) grpc_status_ = ParseGrpcStatus(value);
  } else if (name == "grpc-message") {
    if (final_block) grpc_message_ = DecodeGrpcMessage(value);
  } else if (name == "grpc-status-details-bin") {
    if (final_block) {
      grpc_details_ = DecodeBinaryHeader(value).value_or(std::string());
    }
  } else {
    KeepMetadata(name, value);
  }
  return absl::OkStatus();
}

absl::Status ResponseReader::EndHeaders() {
  switch (block_) {
    case Block::kInformational: return absl::OkStatus();
    case Block::kInitial: return EndInitial();
    case Block::kTrailersOnly:
    case Block::kTrailers: return EndFinal();
  }
  return absl::OkStatus();
}

absl::Status ResponseReader::EndInitial() {
  if (http_status_ != 200) {
    phase_ = Phase::kEnded;
    final_ = absl::Status(
        CodeOfHttpStatus(http_status_),
        absl::StrCat("HTTP status ", http_status_, " (not a gRPC answer)"));
    return final_;
  }
  if (!grpc_content_type_) {
    phase_ = Phase::kEnded;
    final_ = absl::UnknownError(
        absl::StrCat("not a gRPC answer (content-type \"",
                     absl::CHexEscape(content_type_), "\")"));
    return final_;
  }
  phase_ = Phase::kBody;
  return absl::OkStatus();
}

absl::Status ResponseReader::EndFinal() {
  const bool trailers_only = block_ == Block::kTrailersOnly;
  phase_ = Phase::kEnded;
  if (grpc_status_.has_value()) {
    // The server's status, even with an HTTP error status (the mapping's
    // rule: grpc-status wins).
    final_ = MakeStatus(*grpc_status_, grpc_message_, grpc_details_);
  } else if (trailers_only && http_status_ != 200) {
    final_ = absl::Status(
        CodeOfHttpStatus(http_status_),
        absl::StrCat("HTTP status ", http_status_, " (not a gRPC answer)"));
  } else {
    final_ = absl::UnknownError("the answer ended without a grpc-status");
  }
  return absl::OkStatus();
}

absl::Status ResponseReader::OnData(absl::string_view data,
                                    Deframer::Sink sink) {
  if (phase_ != Phase::kBody) {
    // HTTP/2 allows DATA only between the headers and the trailers; the
    // HTTP/2 layer refuses the rest already.
    phase_ = Phase::kEnded;
    final_ = absl::InternalError("DATA outside a response body");
    return final_;
  }
  absl::Status refused;
  const absl::Status fed = deframer_.Feed(data, [&](std::string& message) {
    if (options_.unary && deframer_.messages() > 1) {
      refused = absl::InternalError("more than one response to a unary call");
      return false;
    }
    return sink(message);
  });
  if (!fed.ok() || !refused.ok()) {
    phase_ = Phase::kEnded;
    final_ = fed.ok() ? refused : fed;
    return final_;
  }
  return absl::OkStatus();
}

absl::Status ResponseReader::Finish(uint32_t http2_error, bool reset) const {
  if (phase_ == Phase::kEnded) {
    if (!final_.ok()) return final_;
    if (deframer_.InMessage()) {
      return absl::InternalError("the answer ended in the middle of a message");
    }
    if (options_.unary && deframer_.messages() != 1) {
      return absl::InternalError(
          deframer_.messages() == 0 ? "no message in the answer to a unary call"
                                    : "more than one response to a unary call");
    }
    return final_;
  }
  if (http2_error != 0 || reset) {
    return absl::Status(CodeOfHttp2Error(http2_error),
                        absl::StrCat("stream reset by the server (",
                                     Http2ErrorName(http2_error), ")"));
  }
  return absl::UnknownError("the answer ended without trailers");
}

}  // namespace coach::proxy::wire
