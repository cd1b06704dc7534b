// The native client's channel: one set of connections on one strand (a
// "shard" of the event loop). It resolves the target's names, keeps one
// subchannel (a server address and its current connection) per address,
// and runs each call: round robin over the ready subchannels, waiting for
// a first connection (or for its deadline with wait_for_ready), retries,
// deadlines, cancellation. What it promises is upstream.h's list.
//
// Subchannels follow the names: a resolution that no longer lists an
// address removes its subchannel (its connection finishes the streams it
// has, then closes); new addresses get one. Names are resolved at start,
// after a ready connection is lost or an attempt fails (at most once per
// reconnect backoff), and every `resolve_interval`.
//
// Thread-safety: Start() takes calls from any thread (it posts); every
// other method runs on strand().
#ifndef COACH_PROXY_UPSTREAM_CHANNEL_H_
#define COACH_PROXY_UPSTREAM_CHANNEL_H_

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proxy/upstream/call.h"
#include "proxy/upstream/connection.h"
#include "proxy/upstream/upstream.h"
#include "proxy/upstream/wire.h"

namespace coach::proxy::upstream_internal {

class Channel final : public ConnectionOwner,
                      public std::enable_shared_from_this<Channel> {
 public:
  Channel(boost::asio::io_context& loop, const UpstreamOptions& options);

  Strand& strand() { return strand_; }
  // A method of UpstreamOptions::read_methods (retried when UNAVAILABLE).
  bool IsRead(const std::string& method) const {
    return read_methods_.contains(method);
  }
  // Any subchannel ready (any thread).
  bool ready() const {
    return ready_count_.load(std::memory_order_relaxed) > 0;
  }

  // On the strand: resolves the target and connects.
  void Begin();
  // On the strand: takes `call` (its fields set) until it ends.
  void Start(std::shared_ptr<Call> call);
  // On the strand: ends `call` with `status` (its callback runs now) unless
  // it has ended.
  void Finish(Call& call, absl::Status status);
  // On the strand: ends every call CANCELLED, closes every connection.
  void Shutdown();

  // ConnectionOwner.
  void ConnectionReady(Connection* connection) override;
  void ConnectionGoingAway(Connection* connection,
                           bool too_many_pings) override;
  void ConnectionClosed(Connection* connection) override;
  void AttemptEnded(Call& call, absl::Status status, bool refused) override;
  void Defer(absl::AnyInvocable<void()> work) override {
    deferred_.push_back(std::move(work));
  }
  void RunDeferred() override;
  bool stopping() const override { return shut_down_; }

 private:
  struct Subchannel {
    boost::asio::ip::tcp::endpoint endpoint;
    size_t name = 0;  // index of the TargetAddress it came from
    std::shared_ptr<Connection> connection;  // current, maybe connecting
    bool ready = false;
    bool failed = false;   // failed since it was last ready
    bool removed = false;  // left the name: no reconnection
    absl::Duration backoff;
    std::unique_ptr<boost::asio::steady_timer> reconnect_timer;
  };

  void Dispatch(std::shared_ptr<Call> call);
  // Every server failed since last ready: calls fail at once.
  bool Failing() const;
  void FailWaiting();
  void DispatchWaiting();
  void Resolve(size_t name);
  void ScheduleResolve(size_t name, absl::Duration after);
  // The addresses `name` resolves to now: subchannels added and removed.
  void SetEndpoints(size_t name,
                    const std::vector<boost::asio::ip::tcp::endpoint>& found);
  void Connect(Subchannel& subchannel);
  void ScheduleReconnect(const std::shared_ptr<Subchannel>& subchannel);
  std::shared_ptr<Subchannel> SubchannelOf(Connection* connection);
  void SetReady(Subchannel& subchannel, bool ready);
  // `name`: the index of the target name a connection's address came from
  // (its host is what TLS checks, unless options_.tls_server_name).
  ConnectionOptions ConnectionOptionsNow(size_t name) const;
  void TrackDeadline(Call& call);
  void ArmDeadlineTimer();
  void OnDeadlineTimer();
  absl::Duration Jittered(absl::Duration d, double jitter);

  Strand strand_;
  const UpstreamOptions options_;
  const absl::flat_hash_set<std::string> read_methods_;
  // The target's names (empty, with target_error_, when it did not parse).
  std::vector<wire::TargetAddress> names_;
  absl::Status target_error_;
  struct NameState {
    bool literal = false;  // an address: never resolved
    bool resolving = false;
    bool resolved = false;  // at least once (successfully or not)
    absl::Time last_resolved = absl::InfinitePast();
    std::unique_ptr<boost::asio::steady_timer> timer;  // next resolution
  };
  std::vector<NameState> name_states_;
  std::unique_ptr<boost::asio::ip::tcp::resolver> resolver_;
  std::vector<std::shared_ptr<Subchannel>> subchannels_;
  std::vector<std::shared_ptr<Connection>> draining_;
  size_t next_ = 0;  // round robin
  std::atomic<int> ready_count_{0};
  // Keepalive PINGs this often (doubled when a server finds them too
  // frequent).
  absl::Duration keepalive_time_;
  std::deque<std::shared_ptr<Call>> waiting_;
  absl::flat_hash_map<Call*, std::shared_ptr<Call>> live_;
  std::multimap<absl::Time, Call*> deadlines_;
  boost::asio::steady_timer deadline_timer_;
  absl::Time deadline_armed_ = absl::InfiniteFuture();
  double tokens_;
  std::vector<absl::AnyInvocable<void()>> deferred_;
  std::mt19937 random_{std::random_device{}()};
  bool shut_down_ = false;
};

// `status` as grpc::Status, with its details (wire::DetailsOf).
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace coach::proxy::upstream_internal

#endif  // COACH_PROXY_UPSTREAM_CHANNEL_H_
