// libFuzzer target for the client's protocol parsers (proxy/upstream/wire.h):
// the response reader driven by a script of header blocks, fields, DATA
// chunks and stream ends read from the input, the deframer on arbitrary
// cuts (checked against the messages framed), and the value parsers
// (grpc-status, grpc-message, -bin headers, grpc-timeout, targets).
// Invariants checked beyond "no crash, no sanitizer report": the bytes a
// stream holds never exceed one message prefix and one message; nothing
// is read after an error; a framed stream cut anywhere gives back its
// messages.
//
// Built by -DCOACH_FUZZ=ON with clang (proxy/upstream/fuzz/CMakeLists.txt);
// run by tools/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "proxy/upstream/wire.h"

namespace {

using coach::proxy::wire::Deframer;
using coach::proxy::wire::ResponseReader;
namespace wire = coach::proxy::wire;

constexpr size_t kMaxMessage = 4096;

void Check(bool condition) {
  if (!condition) std::abort();
}

// Reads the input as a script.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return at_ >= size_; }
  uint8_t Byte() { return at_ < size_ ? data_[at_++] : 0; }
  // A string of up to `max` bytes, its length read first.
  absl::string_view Bytes(size_t max) {
    size_t n = Byte();
    if (max > 255) n = n * 64 + Byte() % 64;
    n = std::min({n, max, size_ - std::min(at_, size_)});
    absl::string_view out(reinterpret_cast<const char*>(data_ + at_), n);
    at_ += n;
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

// Header names the reader cares about, and others.
constexpr absl::string_view kNames[] = {":status",
                                        "content-type",
                                        "grpc-status",
                                        "grpc-message",
                                        "grpc-status-details-bin",
                                        "grpc-encoding",
                                        "x-wanted",
                                        "x-other"};

void FuzzReader(Input& in) {
  const std::vector<std::string> keys = {"x-wanted"};
  std::map<std::string, std::string> metadata;
  ResponseReader::Options options;
  options.max_message_bytes = kMaxMessage;
  options.max_header_list_bytes = 2048;
  options.unary = in.Byte() & 1;
  options.metadata_keys = &keys;
  options.metadata = &metadata;
  ResponseReader reader(options);
  bool failed = false;
  while (!in.empty() && !failed) {
    absl::Status status;
    switch (in.Byte() % 5) {
      case 0: reader.BeginHeaders(in.Byte() & 1); break;
      case 1: {
        const uint8_t pick = in.Byte();
        const absl::string_view name =
            pick < 200 ? kNames[pick % std::size(kNames)] : in.Bytes(64);
        status = reader.OnHeader(name, in.Bytes(1024));
        break;
      }
      case 2: status = reader.EndHeaders(); break;
      case 3:
        status = reader.OnData(in.Bytes(20000), [](std::string& message) {
          Check(message.size() <= kMaxMessage);
          return true;
        });
        break;
      case 4: (void)reader.Finish(in.Byte() % 16); break;
    }
    Check(reader.buffered() <= kMaxMessage + wire::kMessagePrefixBytes);
    failed = !status.ok();
  }
  (void)reader.Finish(0);
}

void FuzzDeframer(Input& in) {
  // Messages from the input, framed, then fed back cut where it says.
  std::vector<std::string> messages;
  std::string stream;
  const int count = in.Byte() % 8;
  for (int i = 0; i < count; ++i) {
    messages.emplace_back(in.Bytes(kMaxMessage));
    stream += wire::FrameMessage(messages.back());
  }
  Deframer deframer(kMaxMessage);
  std::vector<std::string> out;
  size_t at = 0;
  while (at < stream.size()) {
    const size_t take = std::min<size_t>(stream.size() - at, 1 + in.Byte() * 7);
    Check(deframer
              .Feed(absl::string_view(stream).substr(at, take),
                    [&out](std::string& message) {
                      out.push_back(message);
                      return true;
                    })
              .ok());
    Check(deframer.buffered() <= kMaxMessage + wire::kMessagePrefixBytes);
    at += take;
  }
  Check(out == messages);
  Check(!deframer.InMessage());
  // Then raw bytes: refused or read, never more than the bound.
  Deframer raw(kMaxMessage);
  while (!in.empty()) {
    const absl::Status fed = raw.Feed(in.Bytes(512), [](std::string& m) {
      Check(m.size() <= kMaxMessage);
      return true;
    });
    Check(raw.buffered() <= kMaxMessage + wire::kMessagePrefixBytes);
    if (!fed.ok()) break;
  }
}

void FuzzValues(Input& in) {
  const absl::string_view text = in.Bytes(4096);
  (void)wire::ParseGrpcStatus(text);
  const std::string decoded = wire::DecodeGrpcMessage(text);
  Check(decoded.size() <= text.size());
  (void)wire::DecodeBinaryHeader(text);
  if (auto timeout = wire::ParseGrpcTimeout(text)) {
    Check(*timeout >= absl::ZeroDuration());
  }
  if (auto targets = wire::ParseTarget(text); targets.ok()) {
    Check(!targets->empty());
    for (const auto& target : *targets) Check(!target.host.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  switch (in.Byte() % 3) {
    case 0: FuzzReader(in); break;
    case 1: FuzzDeframer(in); break;
    case 2: FuzzValues(in); break;
  }
  return 0;
}
