#include "proxy/upstream/channel.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/log.h"

namespace coach::proxy::upstream_internal {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using ErrorCode = boost::system::error_code;

// Reconnection: the first retry after a failed attempt comes this soon,
// then each wait grows by this factor (with this much jitter either way),
// up to UpstreamOptions::reconnect_max_backoff (gRPC's connection backoff).
constexpr absl::Duration kInitialReconnectBackoff = absl::Milliseconds(100);
constexpr double kReconnectMultiplier = 1.6;
constexpr double kReconnectJitter = 0.2;
// Retries of a read that ended UNAVAILABLE (gRPC's retryPolicy, A6).
constexpr int kMaxAttempts = 3;
constexpr absl::Duration kRetryInitialBackoff = absl::Milliseconds(50);
constexpr absl::Duration kRetryMaxBackoff = absl::Milliseconds(500);
constexpr double kRetryMultiplier = 2;
// A call the server never saw is tried again at most this often.
constexpr int kMaxTransparentRetries = 3;
// Retry throttling (gRPC's retryThrottling): each failure costs a token,
// each success gives back kTokenRatio; no retries at or below half. 100,
// not gRPC's usual 10: the few calls in flight on a server that dies must
// not switch retries off for the reads that follow them.
constexpr double kMaxTokens = 100;
constexpr double kTokenRatio = 0.1;

absl::Status NoServer() {
  return absl::UnavailableError("no coach-server reachable");
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()), wire::DetailsOf(status));
}

Channel::Channel(net::io_context& loop, const UpstreamOptions& options)
    : strand_(net::make_strand(loop)),
      options_(options),
      read_methods_(options.read_methods.begin(), options.read_methods.end()),
      keepalive_time_(options.keepalive_time),
      deadline_timer_(strand_),
      tokens_(kMaxTokens) {
  absl::StatusOr<std::vector<wire::TargetAddress>> names =
      wire::ParseTarget(options.target);
  if (names.ok()) {
    names_ = *std::move(names);
  } else {
    target_error_ = absl::UnavailableError(
        absl::StrCat("bad coach-server target: ", names.status().message()));
  }
  name_states_.resize(names_.size());
  for (size_t i = 0; i < names_.size(); ++i) {
    ErrorCode ec;
    net::ip::make_address(names_[i].host, ec);
    name_states_[i].literal = !ec;
    name_states_[i].timer = std::make_unique<net::steady_timer>(strand_);
  }
}

void Channel::Begin() {
  if (!target_error_.ok()) {
    LogError("upstream: %s", target_error_.message());
    return;
  }
  for (size_t name = 0; name < names_.size(); ++name) Resolve(name);
}

// --- Names and subchannels ---------------------------------------------------

void Channel::Resolve(size_t name) {
  NameState& state = name_states_[name];
  if (shut_down_ || state.resolving) return;
  const wire::TargetAddress& address = names_[name];
  const auto port = static_cast<uint16_t>(std::stoi(address.port));
  if (state.literal) {
    if (state.resolved) return;  // an address: nothing to ask again
    state.resolved = true;
    return SetEndpoints(
        name, {tcp::endpoint(net::ip::make_address(address.host), port)});
  }
  state.last_resolved = absl::Now();
  if (options_.resolve_for_testing) {
    absl::StatusOr<std::vector<std::string>> found =
        options_.resolve_for_testing(address.host);
    state.resolved = true;
    std::vector<tcp::endpoint> endpoints;
    if (found.ok()) {
      for (const std::string& literal : *found) {
        ErrorCode ec;
        const net::ip::address ip = net::ip::make_address(literal, ec);
        if (!ec) endpoints.emplace_back(ip, port);
      }
    }
    if (endpoints.empty()) {
      LogWarning("upstream: cannot resolve %s", address.host);
      if (Failing()) FailWaiting();
      return ScheduleResolve(name, options_.reconnect_max_backoff);
    }
    SetEndpoints(name, endpoints);
    return ScheduleResolve(name, options_.resolve_interval);
  }
  if (resolver_ == nullptr) {
    resolver_ = std::make_unique<tcp::resolver>(strand_);
  }
  state.resolving = true;
  resolver_->async_resolve(
      address.host, address.port,
      [self = shared_from_this(), name](
          ErrorCode ec, const tcp::resolver::results_type& found) {
        NameState& state = self->name_states_[name];
        state.resolving = false;
        if (self->shut_down_) return;
        state.resolved = true;
        if (ec) {
          LogWarning("upstream: cannot resolve %s: %s", self->names_[name].host,
                     ec.message());
          if (self->Failing()) self->FailWaiting();
          // The addresses known stay (gRPC's rule); asked again soon.
          return self->ScheduleResolve(name,
                                       self->options_.reconnect_max_backoff);
        }
        std::vector<tcp::endpoint> endpoints;
        for (const auto& entry : found) endpoints.push_back(entry.endpoint());
        self->SetEndpoints(name, endpoints);
        self->ScheduleResolve(name, self->options_.resolve_interval);
      });
}

void Channel::ScheduleResolve(size_t name, absl::Duration after) {
  if (shut_down_) return;
  net::steady_timer& timer = *name_states_[name].timer;
  timer.expires_after(absl::ToChronoNanoseconds(after));
  timer.async_wait([self = shared_from_this(), name](ErrorCode ec) {
    if (!ec) self->Resolve(name);
  });
}

void Channel::SetEndpoints(size_t name,
                           const std::vector<tcp::endpoint>& found) {
  // Addresses that left the name: no new calls, no reconnection; their
  // calls in progress finish on the connection, which then closes.
  std::vector<std::shared_ptr<Connection>> leaving;
  for (auto it = subchannels_.begin(); it != subchannels_.end();) {
    Subchannel& subchannel = **it;
    if (subchannel.name != name ||
        std::find(found.begin(), found.end(), subchannel.endpoint) !=
            found.end()) {
      ++it;
      continue;
    }
    LogInfo("upstream: %s left %s: dropped",
            subchannel.endpoint.address().to_string(), names_[name].host);
    subchannel.removed = true;
    subchannel.reconnect_timer->cancel();
    SetReady(subchannel, false);
    if (subchannel.connection != nullptr) {
      leaving.push_back(std::move(subchannel.connection));
    }
    it = subchannels_.erase(it);
  }
  if (!subchannels_.empty()) next_ %= subchannels_.size();
  for (const std::shared_ptr<Connection>& connection : leaving) {
    draining_.push_back(connection);
    connection->Drain();
  }
  for (const tcp::endpoint& endpoint : found) {
    const bool known = std::any_of(subchannels_.begin(), subchannels_.end(),
                                   [&](const std::shared_ptr<Subchannel>& s) {
                                     return s->endpoint == endpoint;
                                   });
    if (known) continue;
    auto subchannel = std::make_shared<Subchannel>();
    subchannel->endpoint = endpoint;
    subchannel->name = name;
    subchannel->backoff = kInitialReconnectBackoff;
    subchannel->reconnect_timer = std::make_unique<net::steady_timer>(strand_);
    subchannels_.push_back(subchannel);
    Connect(*subchannel);
  }
  if (Failing()) FailWaiting();
}

ConnectionOptions Channel::ConnectionOptionsNow(size_t name) const {
  ConnectionOptions options;
  options.tls = options_.tls;
  options.tls_name = !options_.tls_server_name.empty()
                         ? options_.tls_server_name
                     : name < names_.size() ? names_[name].host
                                            : "";
  options.connect_timeout = options_.connect_timeout;
  options.keepalive_time = keepalive_time_;
  options.keepalive_timeout = options_.keepalive_timeout;
  options.max_message_bytes =
      static_cast<size_t>(std::max(0, options_.max_response_bytes));
  options.max_header_list_bytes =
      static_cast<size_t>(std::max(0, options_.max_header_list_bytes));
  options.user_agent = options_.user_agent;
  return options;
}

void Channel::Connect(Subchannel& subchannel) {
  if (shut_down_ || subchannel.removed) return;
  subchannel.connection = std::make_shared<Connection>(
      shared_from_this(), strand_, subchannel.endpoint,
      ConnectionOptionsNow(subchannel.name));
  subchannel.connection->Start();
}

absl::Duration Channel::Jittered(absl::Duration d, double jitter) {
  std::uniform_real_distribution<double> spread(1 - jitter, 1 + jitter);
  return d * spread(random_);
}

void Channel::ScheduleReconnect(const std::shared_ptr<Subchannel>& subchannel) {
  const absl::Duration wait = Jittered(subchannel->backoff, kReconnectJitter);
  subchannel->backoff =
      std::min(subchannel->backoff * kReconnectMultiplier,
               std::max(options_.reconnect_max_backoff, absl::Milliseconds(1)));
  subchannel->reconnect_timer->expires_after(absl::ToChronoNanoseconds(wait));
  subchannel->reconnect_timer->async_wait(
      [self = shared_from_this(), subchannel](ErrorCode ec) {
        if (ec || self->shut_down_ || subchannel->removed ||
            subchannel->connection != nullptr) {
          return;
        }
        self->Connect(*subchannel);
      });
}

std::shared_ptr<Channel::Subchannel> Channel::SubchannelOf(
    Connection* connection) {
  for (const std::shared_ptr<Subchannel>& subchannel : subchannels_) {
    if (subchannel->connection.get() == connection) return subchannel;
  }
  return nullptr;
}

void Channel::SetReady(Subchannel& subchannel, bool ready) {
  if (subchannel.ready == ready) return;
  subchannel.ready = ready;
  ready_count_.fetch_add(ready ? 1 : -1, std::memory_order_relaxed);
}

void Channel::ConnectionReady(Connection* connection) {
  std::shared_ptr<Subchannel> subchannel = SubchannelOf(connection);
  if (subchannel == nullptr || subchannel->ready) return;
  SetReady(*subchannel, true);
  subchannel->failed = false;
  subchannel->backoff = kInitialReconnectBackoff;
  DispatchWaiting();
}

void Channel::ConnectionGoingAway(Connection* connection, bool too_many_pings) {
  if (too_many_pings && keepalive_time_ != absl::InfiniteDuration()) {
    // gRPC's rule (A8): the server wants fewer PINGs; twice as long from
    // now on.
    keepalive_time_ *= 2;
    LogWarning(
        "upstream: %s refused our keepalive PINGs as too frequent: one "
        "every %s from now on (raise the server's minimum, or "
        "COACH_UPSTREAM_KEEPALIVE_TIME)",
        connection->endpoint().address().to_string(),
        absl::FormatDuration(keepalive_time_));
  }
  std::shared_ptr<Subchannel> subchannel = SubchannelOf(connection);
  if (subchannel == nullptr) return;
  // The old connection finishes its streams; new calls go to a new one.
  draining_.push_back(subchannel->connection);
  SetReady(*subchannel, false);
  subchannel->connection.reset();
  Connect(*subchannel);
}

void Channel::ConnectionClosed(Connection* connection) {
  draining_.erase(std::remove_if(draining_.begin(), draining_.end(),
                                 [&](const std::shared_ptr<Connection>& c) {
                                   return c.get() == connection;
                                 }),
                  draining_.end());
  std::shared_ptr<Subchannel> subchannel = SubchannelOf(connection);
  if (subchannel == nullptr) return;
  // Keeps the connection alive until this returns.
  std::shared_ptr<Connection> closing = std::move(subchannel->connection);
  const bool was_ready = subchannel->ready;
  SetReady(*subchannel, false);
  if (shut_down_) return;
  NameState& name = name_states_[subchannel->name];
  if (was_ready) {
    // It worked until now: the server restarted or went away; try again
    // at once (then with backoff), and ask the name again. Until that
    // attempt fails, calls wait for it (gRPC's CONNECTING).
    subchannel->backoff = kInitialReconnectBackoff;
    Connect(*subchannel);
    Resolve(subchannel->name);
  } else {
    subchannel->failed = true;
    ScheduleReconnect(subchannel);
    if (absl::Now() - name.last_resolved >= options_.reconnect_max_backoff) {
      Resolve(subchannel->name);
    }
  }
  if (Failing()) FailWaiting();
}

// --- Calls -----------------------------------------------------------------

bool Channel::Failing() const {
  if (!target_error_.ok()) return true;
  for (const NameState& state : name_states_) {
    if (!state.resolved) return false;  // still learning its addresses
  }
  return std::all_of(
      subchannels_.begin(), subchannels_.end(),
      [](const std::shared_ptr<Subchannel>& s) { return s->failed; });
}

void Channel::FailWaiting() {
  std::deque<std::shared_ptr<Call>> still;
  std::deque<std::shared_ptr<Call>> waiting;
  waiting.swap(waiting_);
  for (auto& call : waiting) {
    if (call->finished) continue;
    if (call->options.wait_for_ready && target_error_.ok()) {
      still.push_back(std::move(call));
    } else {
      Finish(*call, target_error_.ok() ? NoServer() : target_error_);
    }
  }
  for (auto& call : still) waiting_.push_back(std::move(call));
}

void Channel::DispatchWaiting() {
  std::deque<std::shared_ptr<Call>> waiting;
  waiting.swap(waiting_);
  for (auto& call : waiting) Dispatch(std::move(call));
}

void Channel::Dispatch(std::shared_ptr<Call> call) {
  if (call->finished) return;
  const size_t n = subchannels_.size();
  for (size_t i = 0; i < n; ++i) {
    Subchannel& subchannel = *subchannels_[(next_ + i) % n];
    if (!subchannel.ready || subchannel.connection == nullptr) continue;
    call->ResetAttempt(
        static_cast<size_t>(std::max(0, options_.max_response_bytes)),
        static_cast<size_t>(std::max(0, options_.max_header_list_bytes)));
    ++call->attempts;
    if (subchannel.connection->StartStream(*call)) {
      next_ = (next_ + i + 1) % n;
      return;
    }
    --call->attempts;
  }
  if (!target_error_.ok()) return Finish(*call, target_error_);
  if (!call->options.wait_for_ready && Failing()) {
    return Finish(*call, NoServer());
  }
  waiting_.push_back(std::move(call));
}

void Channel::Start(std::shared_ptr<Call> call) {
  live_.emplace(call.get(), call);
  if (shut_down_) {
    return Finish(*call, absl::CancelledError("coach-proxy is stopping"));
  }
  TrackDeadline(*call);
  Dispatch(std::move(call));
}

void Channel::TrackDeadline(Call& call) {
  call.deadline_entry = deadlines_.emplace(call.deadline, &call);
  call.has_deadline_entry = true;
  if (call.deadline < deadline_armed_) ArmDeadlineTimer();
}

void Channel::ArmDeadlineTimer() {
  if (deadlines_.empty()) return;
  deadline_armed_ = deadlines_.begin()->first;
  deadline_timer_.expires_after(absl::ToChronoNanoseconds(
      std::max(absl::ZeroDuration(), deadline_armed_ - absl::Now())));
  deadline_timer_.async_wait([self = shared_from_this()](ErrorCode ec) {
    if (ec) return;  // re-armed or shut down
    self->OnDeadlineTimer();
  });
}

void Channel::OnDeadlineTimer() {
  deadline_armed_ = absl::InfiniteFuture();
  const absl::Time now = absl::Now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    Call* call = deadlines_.begin()->second;
    Finish(*call, absl::DeadlineExceededError("Deadline Exceeded"));
  }
  ArmDeadlineTimer();
}

void Channel::Finish(Call& call, absl::Status status) {
  if (call.finished) return;
  call.finished = true;
  if (call.connection != nullptr) {
    call.connection->ResetStream(call.stream_id);
    call.connection = nullptr;
    call.stream_id = 0;
  }
  if (call.has_deadline_entry) {
    deadlines_.erase(call.deadline_entry);
    call.has_deadline_entry = false;
  }
  if (call.retry_timer != nullptr) call.retry_timer->cancel();
  // Kept alive through its callback.
  std::shared_ptr<Call> keep;
  if (auto found = live_.find(&call); found != live_.end()) {
    keep = std::move(found->second);
    live_.erase(found);
  }
  const grpc::Status ended = ToGrpcStatus(status);
  if (call.streaming) {
    Upstream::StreamDone done = std::move(call.stream_done);
    call.on_message = nullptr;
    if (done) done(ended);
  } else {
    Upstream::UnaryDone done = std::move(call.unary_done);
    if (!ended.ok()) call.response.clear();
    if (done) done(ended, call.response);
  }
}

void Channel::AttemptEnded(Call& call, absl::Status status, bool refused) {
  if (call.finished) return;
  const int messages = call.reader.has_value() ? call.reader->messages() : 0;
  if (refused && call.transparent_retries < kMaxTransparentRetries) {
    // The server never saw it: any method may go again, at once.
    ++call.transparent_retries;
    --call.attempts;
    return Dispatch(call.shared_from_this());
  }
  const bool unavailable = status.code() == absl::StatusCode::kUnavailable;
  if (call.read) {
    if (unavailable) {
      tokens_ = std::max(0.0, tokens_ - 1);
    } else if (status.ok()) {
      tokens_ = std::min(kMaxTokens, tokens_ + kTokenRatio);
    }
  }
  const bool retry = call.read && unavailable && call.attempts < kMaxAttempts &&
                     messages == 0 && tokens_ > kMaxTokens / 2 && !shut_down_;
  if (!retry) return Finish(call, std::move(status));
  // Backoff: random up to min(initial * 2^(n-1), max) (A6).
  absl::Duration cap = kRetryInitialBackoff;
  for (int i = 1; i < call.attempts; ++i) cap *= kRetryMultiplier;
  cap = std::min(cap, kRetryMaxBackoff);
  std::uniform_real_distribution<double> fraction(0, 1);
  const absl::Duration wait = cap * fraction(random_);
  if (absl::Now() + wait >= call.deadline) {
    return Finish(call, std::move(status));
  }
  if (call.retry_timer == nullptr) {
    call.retry_timer = std::make_unique<net::steady_timer>(strand_);
  }
  call.retry_timer->expires_after(absl::ToChronoNanoseconds(wait));
  call.retry_timer->async_wait([self = shared_from_this(),
                                call = call.shared_from_this()](ErrorCode ec) {
    if (ec || call->finished) return;
    self->Dispatch(call);
  });
}

void Channel::RunDeferred() {
  while (!deferred_.empty()) {
    std::vector<absl::AnyInvocable<void()>> work;
    work.swap(deferred_);
    for (auto& fn : work) fn();
  }
}

void Channel::Shutdown() {
  shut_down_ = true;
  std::vector<std::shared_ptr<Call>> calls;
  calls.reserve(live_.size());
  for (auto& [raw, call] : live_) calls.push_back(call);
  for (auto& call : calls) {
    Finish(*call, absl::CancelledError("coach-proxy is stopping"));
  }
  waiting_.clear();
  deadline_timer_.cancel();
  if (resolver_ != nullptr) resolver_->cancel();
  for (NameState& state : name_states_) state.timer->cancel();
  for (const std::shared_ptr<Subchannel>& subchannel : subchannels_) {
    subchannel->reconnect_timer->cancel();
    // Held here: Close drops the subchannel's reference (ConnectionClosed)
    // and still runs after that.
    if (const std::shared_ptr<Connection> connection = subchannel->connection;
        connection != nullptr) {
      connection->Close("stopping");
    }
  }
  std::vector<std::shared_ptr<Connection>> draining = std::move(draining_);
  for (auto& connection : draining) connection->Close("stopping");
  RunDeferred();
}

void Call::Cancel() {
  cancel_requested.store(true, std::memory_order_relaxed);
  net::post(channel->strand(), [self = shared_from_this()] {
    self->channel->Finish(*self, absl::CancelledError("Cancelled"));
  });
}

}  // namespace coach::proxy::upstream_internal
