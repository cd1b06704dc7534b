// Upstream: coach-proxy's gRPC client to coach-server. Calls by method
// name with serialized protobuf on both ends (the proxy needs no generated
// stub per service); every callback runs on the proxy's own event loop.
//
// Two implementations behind this one interface (UpstreamOptions::client,
// COACH_UPSTREAM_CLIENT):
// - "native" (the default): HTTP/2 connections that live on the event loop
//   (nghttp2 for the framing, Asio for the sockets): proxy/upstream/
//   wire.h (the protocol, pure), connection.h (one HTTP/2 connection),
//   channel.h (resolution, round robin, backoff, retries, deadlines).
//   Why not gRPC's client: its calls complete on gRPC's own threads, so
//   every request crossed threads twice (event loop -> gRPC -> event loop),
//   about one context switch per request (docs/performance.md). Here the
//   HTTP request, its call and its answer run on one event-loop thread, and
//   the calls of one loop iteration share a write to the socket.
// - "grpc": gRPC's own C++ client (generic callback stub, one channel with
//   the same service config), its callbacks handed to the loop. The
//   reference the native one is tested against (tests/upstream_test.cc runs
//   every test on both), and an escape hatch.
//
// What both do, as gRPC's channel did for the proxy:
// - Targets: "host:port", "dns:///host:port" (every address the name
//   resolves to), "ipv4:a:p,b:p" / "ipv6:[a]:p,[b]:p" (each listed
//   server). One connection per server address (native: per event-loop
//   shard).
// - Round-robin over the servers that are connected; a server that cannot
//   be reached is skipped and reconnected with exponential backoff (100 ms
//   up to `reconnect_max_backoff`; one attempt, TCP and the server's HTTP/2
//   SETTINGS, at most `connect_timeout`). Names are resolved again after a
//   failure (native: and every `resolve_interval`); servers that left the
//   name are dropped, their calls in progress let finish.
// - Keepalive: an HTTP/2 PING after `keepalive_time` without anything
//   received (with or without calls); no acknowledgement within
//   `keepalive_timeout` drops the connection (its calls end UNAVAILABLE,
//   reads are retried elsewhere). TCP_USER_TIMEOUT is set to
//   `keepalive_timeout` too. A server answering GOAWAY "too_many_pings"
//   makes the pings half as frequent (gRPC's rule).
// - A call waits for a connection while a first connection is being made;
//   once every server failed, it fails UNAVAILABLE at once unless
//   `wait_for_ready` (then it waits until its deadline).
// - Retries: a call the server never saw (stream refused, GOAWAY) is tried
//   again on another connection, any method; a `read_methods` call that
//   ended UNAVAILABLE is retried up to 3 attempts with backoff (50 ms, x2,
//   up to 0.5 s), throttled (gRPC's retryThrottling: 100 tokens, 0.1 back
//   per success, no retries below half). A send is never retried.
// - Deadlines (sent as grpc-timeout too), cancellation (RST_STREAM), the
//   status from grpc-status / grpc-message / grpc-status-details-bin (so
//   google.rpc.ErrorInfo details reach the proxy), responses larger than
//   `max_response_bytes` refused (RESOURCE_EXHAUSTED), header blocks larger
//   than `max_header_list_bytes` refused (RESOURCE_EXHAUSTED), compressed
//   responses refused by the native client (none is asked for).
// - An answer that is not gRPC (an HTTP error page, a proxy's 503) ends the
//   call with gRPC's code for its HTTP status (wire.h).
// - TLS (`tls` set): the server's chain verified against the CA, its name
//   (`tls_server_name`, else the target's host) checked, ALPN h2 required,
//   a client certificate presented when configured; the handshake counts
//   in `connect_timeout`. A server that fails any of these is unreachable
//   (calls end UNAVAILABLE), never trusted. New connections use the files
//   as they are then: native: TlsContextSource::Current() (files looked at
//   every check_interval, re-read at once by its Reload()); grpc: gRPC's
//   file watcher on the same files, every check_interval (whole seconds).
//
// Thread-safety: Upstream and UpstreamCall are thread-safe. Callbacks run
// on the event loop's threads, one call's callbacks never two at once.
#ifndef COACH_PROXY_UPSTREAM_UPSTREAM_H_
#define COACH_PROXY_UPSTREAM_UPSTREAM_H_

#include <grpcpp/support/status.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/tls.h"
#include "google/protobuf/message.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace coach::proxy {
namespace upstream_internal {
class UpstreamImpl;
}  // namespace upstream_internal

// The metadata key carrying the request id to coach-server (and its logs).
inline constexpr char kRequestIdMetadata[] = "x-request-id";
// The caller's credentials, forwarded unchanged (as grpc-gateway does).
inline constexpr char kAuthorizationMetadata[] = "authorization";

// Which client (see above): COACH_UPSTREAM_CLIENT's `native` or `grpc`.
enum class UpstreamClient { kNative, kGrpc };
// absl's flag marshalling (base/settings.h): "native", "grpc".
bool AbslParseFlag(absl::string_view text, UpstreamClient* client,
                   std::string* error);
std::string AbslUnparseFlag(UpstreamClient client);

struct UpstreamOptions {
  UpstreamClient client = UpstreamClient::kNative;
  std::string target = "127.0.0.1:50051";
  // Longest pause between reconnection attempts to a server that is down.
  absl::Duration reconnect_max_backoff = absl::Milliseconds(500);
  // One connection attempt: TCP, then the server's HTTP/2 SETTINGS (a peer
  // that accepts and says nothing fails the attempt after this).
  absl::Duration connect_timeout = absl::Seconds(1);
  // A PING after this long without anything received from a server
  // (absl::InfiniteDuration(): none), and how long its acknowledgement may
  // take before the connection is dropped (also TCP_USER_TIMEOUT).
  absl::Duration keepalive_time = absl::Seconds(10);
  absl::Duration keepalive_timeout = absl::Seconds(5);
  // Names of the target are resolved again this often (native client; and
  // after a connection fails, with either).
  absl::Duration resolve_interval = absl::Seconds(30);
  // The largest response message accepted from coach-server.
  int max_response_bytes = 64 * 1024 * 1024;
  // The largest header block accepted (advertised as HTTP/2's
  // SETTINGS_MAX_HEADER_LIST_SIZE; gRPC's max metadata size).
  int max_header_list_bytes = 16 * 1024;
  // Full gRPC method names ("/coach.v1.UserService/GetUserStats") that only
  // read: retried on another server when one is unavailable.
  std::vector<std::string> read_methods;
  // Independent sets of connections (each on its own strand), so that
  // several event-loop threads do not queue behind one; at least 1.
  int shards = 1;
  std::string user_agent = "coach-proxy";
  // TLS to the servers (role kClient, ALPN h2); null: plaintext.
  std::shared_ptr<TlsContextSource> tls;
  // The name checked in the servers' certificates; empty: each target
  // name's host.
  std::string tls_server_name;
  // Tests only (native client): resolves a name of the target to address
  // literals, on the loop, instead of the system's resolver.
  std::function<absl::StatusOr<std::vector<std::string>>(absl::string_view)>
      resolve_for_testing;
};

// Server metadata a caller wants back: Upstream copies the values of `keys`
// from the server's initial metadata, then its trailing metadata, into
// `values` before it runs the callback that follows them (a stream's first
// message, or the end).
struct ServerMetadata {
  std::vector<std::string> keys;
  std::map<std::string, std::string> values;
};

struct CallOptions {
  absl::Duration deadline = absl::Seconds(60);
  // Wait for a connecting or restarting server (until the deadline) rather
  // than failing UNAVAILABLE at once when none is reachable.
  bool wait_for_ready = false;
  std::string request_id;
  // The HTTP Authorization header's value; empty: none. A value metadata
  // cannot carry (not printable ASCII) is replaced by one no server accepts.
  std::string authorization;
  // More metadata to send, as is (keys lowercase, values printable ASCII).
  std::vector<std::pair<std::string, std::string>> metadata;
  // Filled with the server metadata it asks for; null: none is read.
  std::shared_ptr<ServerMetadata> server_metadata;
};

// A call in progress; Cancel() makes it end CANCELLED (its callback still
// runs once) unless it has ended already.
class UpstreamCall {
 public:
  virtual ~UpstreamCall() = default;
  virtual void Cancel() = 0;
};

class Upstream {
 public:
  // Calls run on `loop`, which must outlive this object and run while it
  // is destroyed (the destructor waits for its connections to close). A
  // target that does not parse is logged; every call then fails
  // UNAVAILABLE.
  Upstream(boost::asio::io_context& loop, const UpstreamOptions& options);
  // Ends every call in progress CANCELLED (callbacks run) and closes the
  // connections. Must not run on the loop's threads.
  ~Upstream();

  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  // A unary call: `done` runs exactly once with the status and, when OK,
  // the serialized response.
  using UnaryDone = absl::AnyInvocable<void(const grpc::Status& status,
                                            std::string& response)>;
  std::shared_ptr<UpstreamCall> Unary(const std::string& grpc_method,
                                      const google::protobuf::Message& request,
                                      CallOptions options, UnaryDone done);

  // A server-streaming call: `on_message` runs for each message in order,
  // then `done` once with the final status.
  using StreamMessage = absl::AnyInvocable<void(std::string& message)>;
  using StreamDone = absl::AnyInvocable<void(const grpc::Status& status)>;
  std::shared_ptr<UpstreamCall> ServerStream(
      const std::string& grpc_method, const google::protobuf::Message& request,
      CallOptions options, StreamMessage on_message, StreamDone done);

  // True while at least one server is connected.
  bool AnyServerReady() const;

 private:
  std::unique_ptr<upstream_internal::UpstreamImpl> impl_;
};

}  // namespace coach::proxy

#endif  // COACH_PROXY_UPSTREAM_UPSTREAM_H_
