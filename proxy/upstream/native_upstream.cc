// The native implementation of Upstream: one Channel per event-loop shard,
// calls spread over the shards in turn.
#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "proxy/upstream/channel.h"
#include "proxy/upstream/impl.h"
#include "proxy/upstream/wire.h"

namespace coach::proxy::upstream_internal {
namespace {

namespace net = boost::asio;

// `request` with gRPC's prefix, serialized in place.
std::string Framed(const google::protobuf::Message& request) {
  const size_t size = request.ByteSizeLong();
  std::string framed(wire::kMessagePrefixBytes + size, '\0');
  wire::WriteMessagePrefix(size, framed.data());
  request.SerializeWithCachedSizesToArray(
      reinterpret_cast<uint8_t*>(framed.data() + wire::kMessagePrefixBytes));
  return framed;
}

class NativeUpstream final : public UpstreamImpl {
 public:
  NativeUpstream(net::io_context& loop, const UpstreamOptions& options) {
    const int shards = std::max(1, options.shards);
    for (int i = 0; i < shards; ++i) {
      auto channel = std::make_shared<Channel>(loop, options);
      net::post(channel->strand(), [channel] { channel->Begin(); });
      channels_.push_back(std::move(channel));
    }
  }

  ~NativeUpstream() override {
    for (const std::shared_ptr<Channel>& channel : channels_) {
      auto done = std::make_shared<absl::Notification>();
      net::post(channel->strand(), [channel, done] {
        channel->Shutdown();
        done->Notify();
      });
      // The loop runs (the constructor's contract); bounded all the same.
      if (!done->WaitForNotificationWithTimeout(absl::Seconds(10))) {
        LogError("upstream: shutdown did not complete");
      }
    }
  }

  std::shared_ptr<UpstreamCall> Unary(const std::string& grpc_method,
                                      const google::protobuf::Message& request,
                                      CallOptions options,
                                      Upstream::UnaryDone done) override {
    std::shared_ptr<Call> call =
        NewCall(grpc_method, request, std::move(options));
    call->unary_done = std::move(done);
    net::post(call->channel->strand(), [call] { call->channel->Start(call); });
    return call;
  }

  std::shared_ptr<UpstreamCall> ServerStream(
      const std::string& grpc_method, const google::protobuf::Message& request,
      CallOptions options, Upstream::StreamMessage on_message,
      Upstream::StreamDone done) override {
    std::shared_ptr<Call> call =
        NewCall(grpc_method, request, std::move(options));
    call->streaming = true;
    call->on_message = std::move(on_message);
    call->stream_done = std::move(done);
    net::post(call->channel->strand(), [call] { call->channel->Start(call); });
    return call;
  }

  bool AnyServerReady() const override {
    return std::any_of(
        channels_.begin(), channels_.end(),
        [](const std::shared_ptr<Channel>& c) { return c->ready(); });
  }

 private:
  // A call on the next channel, its request framed.
  std::shared_ptr<Call> NewCall(const std::string& grpc_method,
                                const google::protobuf::Message& request,
                                CallOptions options) {
    auto call = std::make_shared<Call>();
    call->channel = channels_[next_.fetch_add(1, std::memory_order_relaxed) %
                              channels_.size()];
    call->method = grpc_method;
    call->read = call->channel->IsRead(grpc_method);
    call->deadline = absl::Now() + options.deadline;
    call->options = std::move(options);
    call->framed = Framed(request);
    return call;
  }

  std::vector<std::shared_ptr<Channel>> channels_;
  std::atomic<uint64_t> next_{0};
};

}  // namespace

std::unique_ptr<UpstreamImpl> NewNativeUpstream(
    net::io_context& loop, const UpstreamOptions& options) {
  return std::make_unique<NativeUpstream>(loop, options);
}

}  // namespace coach::proxy::upstream_internal
