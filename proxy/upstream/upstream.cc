#include "proxy/upstream/upstream.h"

#include <algorithm>
#include <utility>

#include "base/settings.h"
#include "proxy/upstream/impl.h"

namespace coach::proxy {
namespace upstream_internal {

absl::string_view AuthorizationValue(const std::string& authorization) {
  const bool printable =
      std::all_of(authorization.begin(), authorization.end(),
                  [](char c) { return c >= 0x20 && c < 0x7F; });
  return printable ? absl::string_view(authorization)
                   : absl::string_view("Bearer -");
}

}  // namespace upstream_internal

namespace {
constexpr EnumName<UpstreamClient> kClientNames[] = {
    {UpstreamClient::kNative, "native"}, {UpstreamClient::kGrpc, "grpc"}};
}  // namespace

bool AbslParseFlag(absl::string_view text, UpstreamClient* client,
                   std::string* error) {
  return ParseEnumName(text, kClientNames, client, error);
}

std::string AbslUnparseFlag(UpstreamClient client) {
  return EnumNameOf(client, kClientNames);
}

Upstream::Upstream(boost::asio::io_context& loop,
                   const UpstreamOptions& options)
    : impl_(options.client == UpstreamClient::kGrpc
                ? upstream_internal::NewGrpcUpstream(loop, options)
                : upstream_internal::NewNativeUpstream(loop, options)) {}

Upstream::~Upstream() = default;

std::shared_ptr<UpstreamCall> Upstream::Unary(
    const std::string& grpc_method, const google::protobuf::Message& request,
    CallOptions options, UnaryDone done) {
  return impl_->Unary(grpc_method, request, std::move(options),
                      std::move(done));
}

std::shared_ptr<UpstreamCall> Upstream::ServerStream(
    const std::string& grpc_method, const google::protobuf::Message& request,
    CallOptions options, StreamMessage on_message, StreamDone done) {
  return impl_->ServerStream(grpc_method, request, std::move(options),
                             std::move(on_message), std::move(done));
}

bool Upstream::AnyServerReady() const { return impl_->AnyServerReady(); }

}  // namespace coach::proxy
