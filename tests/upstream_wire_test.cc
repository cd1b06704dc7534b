// proxy/upstream/wire.h: gRPC's wire format as the client reads it, without
// sockets: framing, the deframer (every split of a stream, its memory
// bound), the response's header blocks and status, grpc-timeout, status
// and trailer values, targets.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proxy/upstream/wire.h"

namespace coach::proxy::wire {
namespace {

std::string Prefix(uint8_t flag, uint32_t length) {
  std::string prefix(5, '\0');
  prefix[0] = static_cast<char>(flag);
  prefix[1] = static_cast<char>(length >> 24);
  prefix[2] = static_cast<char>(length >> 16);
  prefix[3] = static_cast<char>(length >> 8);
  prefix[4] = static_cast<char>(length);
  return prefix;
}

// --- Framing and values
// -------------------------------------------------------

TEST(WireTest, FrameMessage) {
  EXPECT_EQ(FrameMessage("abc"), Prefix(0, 3) + "abc");
  EXPECT_EQ(FrameMessage(""), Prefix(0, 0));
  const std::string large(70000, 'x');
  EXPECT_EQ(FrameMessage(large), Prefix(0, 70000) + large);
}

TEST(WireTest, GrpcTimeoutRoundTrips) {
  EXPECT_EQ(GrpcTimeout(absl::Seconds(5)), "5000m");
  EXPECT_EQ(GrpcTimeout(absl::ZeroDuration()), "1m");
  EXPECT_EQ(GrpcTimeout(-absl::Seconds(1)), "1m");
  EXPECT_EQ(GrpcTimeout(absl::Hours(48)), "172800S");
  EXPECT_EQ(GrpcTimeout(absl::Hours(24 * 365 * 10)), "99999999S");
  for (absl::Duration d :
       {absl::Milliseconds(1), absl::Seconds(60), absl::Hours(30)}) {
    EXPECT_EQ(ParseGrpcTimeout(GrpcTimeout(d)), d);
  }
  EXPECT_EQ(ParseGrpcTimeout("2H"), absl::Hours(2));
  EXPECT_EQ(ParseGrpcTimeout("3M"), absl::Minutes(3));
  EXPECT_EQ(ParseGrpcTimeout("10u"), absl::Microseconds(10));
  EXPECT_EQ(ParseGrpcTimeout("7n"), absl::Nanoseconds(7));
  for (const char* bad : {"", "m", "5", "5x", "-5m", "123456789m", "1.5S"}) {
    EXPECT_EQ(ParseGrpcTimeout(bad), std::nullopt) << bad;
  }
}

TEST(WireTest, HttpStatusToCode) {
  const std::map<int, absl::StatusCode> expected = {
      {400, absl::StatusCode::kInternal},
      {401, absl::StatusCode::kUnauthenticated},
      {403, absl::StatusCode::kPermissionDenied},
      {404, absl::StatusCode::kUnimplemented},
      {429, absl::StatusCode::kUnavailable},
      {502, absl::StatusCode::kUnavailable},
      {503, absl::StatusCode::kUnavailable},
      {504, absl::StatusCode::kUnavailable},
      {500, absl::StatusCode::kUnknown},
      {418, absl::StatusCode::kUnknown},
      {200, absl::StatusCode::kUnknown},
  };
  for (const auto& [status, code] : expected) {
    EXPECT_EQ(CodeOfHttpStatus(status), code) << status;
  }
}

TEST(WireTest, Http2ErrorToCode) {
  for (uint32_t error = 0; error < 20; ++error) {
    absl::StatusCode expected = absl::StatusCode::kInternal;
    if (error == 7) expected = absl::StatusCode::kUnavailable;
    if (error == 8) expected = absl::StatusCode::kCancelled;
    if (error == 11) expected = absl::StatusCode::kResourceExhausted;
    if (error == 12) expected = absl::StatusCode::kPermissionDenied;
    EXPECT_EQ(CodeOfHttp2Error(error), expected) << error;
  }
}

TEST(WireTest, GrpcStatusValues) {
  for (int code = 0; code <= 16; ++code) {
    EXPECT_EQ(ParseGrpcStatus(std::to_string(code)),
              static_cast<absl::StatusCode>(code));
  }
  for (const char* bad : {"", "17", "-1", "1a", " 1", "007", "99"}) {
    EXPECT_EQ(ParseGrpcStatus(bad), absl::StatusCode::kUnknown) << bad;
  }
}

TEST(WireTest, GrpcMessageIsPercentDecodedPermissively) {
  EXPECT_EQ(DecodeGrpcMessage("plain text"), "plain text");
  EXPECT_EQ(DecodeGrpcMessage("Cr%C3%A9dits %25"), "Crédits %");
  // gRPC keeps what is not an escape as it is.
  EXPECT_EQ(DecodeGrpcMessage("100% s%C3%BBr"), "100% sûr");
  EXPECT_EQ(DecodeGrpcMessage("%zz%4"), "%zz%4");
  EXPECT_EQ(DecodeGrpcMessage("%"), "%");
}

TEST(WireTest, BinaryHeaders) {
  EXPECT_EQ(DecodeBinaryHeader("aGVsbG8"), "hello");   // unpadded
  EXPECT_EQ(DecodeBinaryHeader("aGVsbG8="), "hello");  // padded
  EXPECT_EQ(DecodeBinaryHeader(""), "");
  EXPECT_EQ(DecodeBinaryHeader("a$b"), std::nullopt);
}

TEST(WireTest, StatusDetailsRideAlong) {
  const absl::Status status =
      MakeStatus(absl::StatusCode::kNotFound, "absent", "\x08\x05");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "absent");
  EXPECT_EQ(DetailsOf(status), "\x08\x05");
  EXPECT_EQ(DetailsOf(absl::NotFoundError("x")), "");
  EXPECT_TRUE(MakeStatus(absl::StatusCode::kOk, "", "ignored").ok());
}

TEST(WireTest, Targets) {
  using List = std::vector<TargetAddress>;
  EXPECT_EQ(*ParseTarget("127.0.0.1:50051"), (List{{"127.0.0.1", "50051"}}));
  EXPECT_EQ(*ParseTarget("dns:///coach:50051"), (List{{"coach", "50051"}}));
  EXPECT_EQ(*ParseTarget("dns://8.8.8.8/coach:50051"),
            (List{{"coach", "50051"}}));
  EXPECT_EQ(*ParseTarget("dns:coach:1"), (List{{"coach", "1"}}));
  EXPECT_EQ(*ParseTarget("coach"), (List{{"coach", "443"}}));
  EXPECT_EQ(*ParseTarget("ipv4:10.0.0.1:1,10.0.0.2:2"),
            (List{{"10.0.0.1", "1"}, {"10.0.0.2", "2"}}));
  EXPECT_EQ(*ParseTarget("ipv6:[::1]:5,[fe80::1]:6"),
            (List{{"::1", "5"}, {"fe80::1", "6"}}));
  EXPECT_EQ(*ParseTarget("[::1]"), (List{{"::1", "443"}}));
  for (const char* bad : {"", "dns:///", "host:0", "host:65536", "host:x",
                          "[::1:5", "[::1]x", ":5", "ipv4:"}) {
    EXPECT_FALSE(ParseTarget(bad).ok()) << bad;
  }
}

// --- Deframer
// ------------------------------------------------------------------

// Feeds `bytes` in pieces cut at `cuts`, collecting messages.
absl::Status FeedCut(Deframer& deframer, const std::string& bytes,
                     const std::vector<size_t>& cuts,
                     std::vector<std::string>& out) {
  size_t from = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(bytes.size());
  for (size_t end : ends) {
    absl::Status fed =
        deframer.Feed(absl::string_view(bytes).substr(from, end - from),
                      [&out](std::string& message) {
                        out.push_back(message);
                        return true;
                      });
    if (!fed.ok()) return fed;
    from = end;
  }
  return absl::OkStatus();
}

// Guards: every way of cutting a stream of messages (empty, small, larger
// than a read) in two, and byte by byte, gives the same messages.
TEST(DeframerTest, EverySplitGivesTheSameMessages) {
  const std::vector<std::string> messages = {"", "a", std::string(300, 'b'), "",
                                             "cd"};
  std::string stream;
  for (const std::string& m : messages) stream += FrameMessage(m);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    Deframer deframer(1000);
    std::vector<std::string> out;
    ASSERT_TRUE(FeedCut(deframer, stream, {cut}, out).ok());
    EXPECT_EQ(out, messages) << "cut at " << cut;
    EXPECT_FALSE(deframer.InMessage());
    EXPECT_EQ(deframer.buffered(), 0u);
  }
  Deframer deframer(1000);
  std::vector<size_t> every;
  for (size_t i = 1; i < stream.size(); ++i) every.push_back(i);
  std::vector<std::string> out;
  ASSERT_TRUE(FeedCut(deframer, stream, every, out).ok());
  EXPECT_EQ(out, messages);
  EXPECT_EQ(deframer.messages(), 5);
}

// Guards: the hole of the first client: a stream whose chunks all end in
// the middle of a message held every byte ever received. Now at most one
// message (and its prefix) is held, however long the stream.
TEST(DeframerTest, BufferIsBoundedByOneMessage) {
  const std::string one = FrameMessage(std::string(1000, 'm'));
  std::string stream;
  for (int i = 0; i < 2000; ++i) stream += one;
  Deframer deframer(1000);
  size_t most = 0;
  int messages = 0;
  for (size_t i = 0; i < stream.size(); i += 1500) {
    ASSERT_TRUE(deframer
                    .Feed(absl::string_view(stream).substr(i, 1500),
                          [&](std::string&) {
                            ++messages;
                            return true;
                          })
                    .ok());
    most = std::max(most, deframer.buffered());
  }
  EXPECT_EQ(messages, 2000);
  EXPECT_LE(most, one.size());
}

TEST(DeframerTest, RefusesCompressedAndOversizedBeforeTheirBody) {
  {
    Deframer deframer(100);
    const absl::Status fed =
        deframer.Feed(Prefix(0, 101), [](std::string&) { return true; });
    EXPECT_EQ(fed.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(deframer.buffered(), 5u) << "no body buffered";
  }
  {
    Deframer deframer(100);
    EXPECT_EQ(
        deframer.Feed(Prefix(1, 3) + "abc", [](std::string&) { return true; })
            .code(),
        absl::StatusCode::kInternal);
  }
  {
    Deframer deframer(100);
    EXPECT_EQ(
        deframer.Feed(Prefix(2, 0), [](std::string&) { return true; }).code(),
        absl::StatusCode::kInternal);
  }
  // Exactly the limit passes.
  Deframer deframer(3);
  std::vector<std::string> out;
  EXPECT_TRUE(FeedCut(deframer, FrameMessage("abc"), {}, out).ok());
  EXPECT_EQ(out, std::vector<std::string>{"abc"});
}

TEST(DeframerTest, StopsWhenTheSinkSaysSo) {
  Deframer deframer(100);
  int seen = 0;
  const std::string stream = FrameMessage("a") + FrameMessage("b");
  EXPECT_TRUE(deframer
                  .Feed(stream,
                        [&](std::string&) {
                          ++seen;
                          return false;
                        })
                  .ok());
  EXPECT_EQ(seen, 1);
  EXPECT_TRUE(deframer
                  .Feed(FrameMessage("c"),
                        [&](std::string&) {
                          ++seen;
                          return true;
                        })
                  .ok());
  EXPECT_EQ(seen, 1) << "nothing is read after a stop";
}

// --- ResponseReader
// ---------------------------------------------------------------

using Fields = std::vector<std::pair<std::string, std::string>>;

class ReaderTest : public ::testing::Test {
 protected:
  ResponseReader& Reader(bool unary) {
    ResponseReader::Options options;
    options.max_message_bytes = 1000;
    options.max_header_list_bytes = 1024;
    options.unary = unary;
    options.metadata_keys = &keys_;
    options.metadata = &metadata_;
    reader_.emplace(options);
    return *reader_;
  }
  absl::Status Headers(const Fields& fields, bool end_stream) {
    reader_->BeginHeaders(end_stream);
    for (const auto& [name, value] : fields) {
      absl::Status status = reader_->OnHeader(name, value);
      if (!status.ok()) return status;
    }
    return reader_->EndHeaders();
  }
  absl::Status Data(const std::string& bytes) {
    return reader_->OnData(bytes, [this](std::string& message) {
      messages_.push_back(message);
      return true;
    });
  }

  std::vector<std::string> keys_ = {"x-initial", "x-trailing"};
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> messages_;
  std::optional<ResponseReader> reader_;
};

const Fields kGrpc = {{":status", "200"},
                      {"content-type", "application/grpc"},
                      {"x-initial", "bonjour"}};

TEST_F(ReaderTest, HeadersMessageTrailers) {
  Reader(/*unary=*/true);
  ASSERT_TRUE(Headers(kGrpc, false).ok());
  EXPECT_TRUE(reader_->responded());
  ASSERT_TRUE(Data(FrameMessage("réponse")).ok());
  ASSERT_TRUE(
      Headers({{"grpc-status", "0"}, {"x-trailing", "fin"}}, true).ok());
  EXPECT_TRUE(reader_->Finish(0).ok());
  EXPECT_EQ(messages_, std::vector<std::string>{"réponse"});
  EXPECT_EQ(metadata_, (std::map<std::string, std::string>{
                           {"x-initial", "bonjour"}, {"x-trailing", "fin"}}));
}

TEST_F(ReaderTest, TrailersOnlyErrorWithDetails) {
  Reader(true);
  ASSERT_TRUE(Headers({{":status", "200"},
                       {"content-type", "application/grpc+proto"},
                       {"grpc-status", "5"},
                       {"grpc-message", "introuvable %C3%A0 100%25"},
                       {"grpc-status-details-bin", "CAU"}},
                      true)
                  .ok());
  const absl::Status status = reader_->Finish(0);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "introuvable à 100%");
  EXPECT_EQ(DetailsOf(status), "\x08\x05");
}

TEST_F(ReaderTest, GrpcStatusOutsideTheTrailersIsIgnored) {
  Reader(true);
  Fields initial = kGrpc;
  initial.push_back({"grpc-status", "0"});
  ASSERT_TRUE(Headers({{":status", "100"}, {"grpc-status", "13"}}, false).ok());
  EXPECT_FALSE(reader_->responded()) << "an interim answer is not the answer";
  ASSERT_TRUE(Headers(initial, false).ok());
  ASSERT_TRUE(Data(FrameMessage("un")).ok());
  ASSERT_TRUE(Headers({{"grpc-status", "9"}}, true).ok());
  EXPECT_EQ(reader_->Finish(0).code(), absl::StatusCode::kFailedPrecondition);

  // Without trailers, no status at all.
  Reader(true);
  ASSERT_TRUE(Headers(initial, false).ok());
  ASSERT_TRUE(Data(FrameMessage("un")).ok());
  EXPECT_EQ(reader_->Finish(0).code(), absl::StatusCode::kUnknown);
}

TEST_F(ReaderTest, AnswersThatAreNotGrpc) {
  Reader(true);
  EXPECT_EQ(Headers({{":status", "503"}, {"content-type", "text/html"}}, false)
                .code(),
            absl::StatusCode::kUnavailable);
  Reader(true);
  EXPECT_EQ(Headers({{":status", "404"}}, false).code(),
            absl::StatusCode::kUnimplemented);
  Reader(false);
  EXPECT_EQ(Headers({{":status", "200"}, {"content-type", "text/html"}}, false)
                .code(),
            absl::StatusCode::kUnknown);
  Reader(false);
  EXPECT_EQ(Headers({{":status", "200"}, {"content-type", "application/grpcx"}},
                    false)
                .code(),
            absl::StatusCode::kUnknown);
  // Trailers-only: grpc-status wins over the HTTP status; without it, the
  // HTTP status maps.
  Reader(true);
  ASSERT_TRUE(Headers({{":status", "503"}, {"grpc-status", "9"}}, true).ok());
  EXPECT_EQ(reader_->Finish(0).code(), absl::StatusCode::kFailedPrecondition);
  Reader(true);
  ASSERT_TRUE(Headers({{":status", "502"}}, true).ok());
  EXPECT_EQ(reader_->Finish(0).code(), absl::StatusCode::kUnavailable);
  Reader(true);
  ASSERT_TRUE(Headers({{":status", "200"}}, true).ok());
  EXPECT_EQ(reader_->Finish(0).code(), absl::StatusCode::kUnknown);
}

TEST_F(ReaderTest, PartialMessageAtTheEndIsAnError) {
  for (bool unary : {true, false}) {
    Reader(unary);
    ASSERT_TRUE(Headers(kGrpc, false).ok());
    ASSERT_TRUE(Data(FrameMessage("entier")).ok());
    ASSERT_TRUE(Data(FrameMessage("coupé").substr(0, 4)).ok());
    ASSERT_TRUE(Headers({{"grpc-status", "0"}}, true).ok());
    EXPECT_EQ(reader_->Finish(0).code(), absl::StatusCode::kInternal) << unary;
  }
  // A non-OK status stays what it is.
  Reader(false);
  ASSERT_TRUE(Headers(kGrpc, false).ok());
  ASSERT_TRUE(Data(FrameMessage("coupé").substr(0, 4)).ok());
  ASSERT_TRUE(Headers({{"grpc-status", "14"}}, true).ok());
  EXPECT_EQ(reader_->Finish(0).code(), absl::StatusCode::kUnavailable);
}

TEST_F(ReaderTest, UnaryNeedsExactlyOneMessage) {
  Reader(true);
  ASSERT_TRUE(Headers(kGrpc, false).ok());
  ASSERT_TRUE(Headers({{"grpc-status", "0"}}, true).ok());
  EXPECT_EQ(reader_->Finish(0).code(), absl::StatusCode::kInternal);
  Reader(true);
  ASSERT_TRUE(Headers(kGrpc, false).ok());
  EXPECT_EQ(Data(FrameMessage("un") + FrameMessage("deux")).code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(messages_, std::vector<std::string>{"un"});
  // A stream may have none.
  Reader(false);
  ASSERT_TRUE(Headers(kGrpc, false).ok());
  ASSERT_TRUE(Headers({{"grpc-status", "0"}}, true).ok());
  EXPECT_TRUE(reader_->Finish(0).ok());
}

TEST_F(ReaderTest, HeaderListLimit) {
  // 1024 bytes, counted as HTTP/2 does: name + value + 32 per field.
  Reader(true);
  Fields fields = kGrpc;
  fields.push_back({"x-big", std::string(1024, 'v')});
  EXPECT_EQ(Headers(fields, false).code(),
            absl::StatusCode::kResourceExhausted);
  Reader(true);
  ASSERT_TRUE(Headers(kGrpc, false).ok());
  ASSERT_TRUE(Data(FrameMessage("un")).ok());
  EXPECT_EQ(
      Headers({{"grpc-status", "0"}, {"grpc-message", std::string(2000, 'm')}},
              true)
          .code(),
      absl::StatusCode::kResourceExhausted);
  // Each block has the whole limit.
  Reader(true);
  Fields half = kGrpc;
  half.push_back({"x-half", std::string(600, 'v')});
  ASSERT_TRUE(Headers(half, false).ok());
  ASSERT_TRUE(Data(FrameMessage("un")).ok());
  ASSERT_TRUE(
      Headers({{"grpc-status", "0"}, {"x-half", std::string(600, 'v')}}, true)
          .ok());
  EXPECT_TRUE(reader_->Finish(0).ok());
}

TEST_F(ReaderTest, ResetsMapToCodes) {
  Reader(true);
  EXPECT_EQ(reader_->Finish(8).code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(reader_->responded());
  ASSERT_TRUE(Headers(kGrpc, false).ok());
  EXPECT_EQ(reader_->Finish(7).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(reader_->Finish(1).code(), absl::StatusCode::kInternal);
  // A reset after the trailers changes nothing.
  ASSERT_TRUE(Data(FrameMessage("un")).ok());
  ASSERT_TRUE(Headers({{"grpc-status", "0"}}, true).ok());
  EXPECT_TRUE(reader_->Finish(8).ok());
}

}  // namespace
}  // namespace coach::proxy::wire
