// What an implementation of Upstream provides (upstream.h's contract, every
// word of it: callbacks on the loop, once each; the destructor ends calls in
// progress CANCELLED and returns once their callbacks have run).
//
// Thread-safety: as Upstream's.
#ifndef COACH_PROXY_UPSTREAM_IMPL_H_
#define COACH_PROXY_UPSTREAM_IMPL_H_

#include <memory>
#include <string>

#include "proxy/upstream/upstream.h"

namespace coach::proxy::upstream_internal {

class UpstreamImpl {
 public:
  virtual ~UpstreamImpl() = default;

  virtual std::shared_ptr<UpstreamCall> Unary(
      const std::string& grpc_method, const google::protobuf::Message& request,
      CallOptions options, Upstream::UnaryDone done) = 0;
  virtual std::shared_ptr<UpstreamCall> ServerStream(
      const std::string& grpc_method, const google::protobuf::Message& request,
      CallOptions options, Upstream::StreamMessage on_message,
      Upstream::StreamDone done) = 0;
  virtual bool AnyServerReady() const = 0;
};

// The client on the proxy's event loop (native_upstream.cc).
std::unique_ptr<UpstreamImpl> NewNativeUpstream(boost::asio::io_context& loop,
                                                const UpstreamOptions& options);
// gRPC's C++ client, its callbacks handed to `loop` (grpc_upstream.cc).
std::unique_ptr<UpstreamImpl> NewGrpcUpstream(boost::asio::io_context& loop,
                                              const UpstreamOptions& options);

// A value of CallOptions::authorization metadata can carry: itself when
// printable ASCII, else one no server accepts.
absl::string_view AuthorizationValue(const std::string& authorization);

}  // namespace coach::proxy::upstream_internal

#endif  // COACH_PROXY_UPSTREAM_IMPL_H_
