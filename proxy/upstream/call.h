// One call of the native client, through its attempts: what the channel
// (channel.h) schedules and the connection (connection.h) carries on one
// HTTP/2 stream at a time.
//
// Thread-safety: built on any thread, then used on its channel's strand
// only, except Cancel() (any thread: it posts to the strand).
#ifndef COACH_PROXY_UPSTREAM_CALL_H_
#define COACH_PROXY_UPSTREAM_CALL_H_

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "proxy/upstream/upstream.h"
#include "proxy/upstream/wire.h"

namespace coach::proxy::upstream_internal {

class Channel;
class Connection;

struct Call final : public UpstreamCall,
                    public std::enable_shared_from_this<Call> {
  // Posts to the channel's strand; the call ends CANCELLED there unless it
  // has ended (channel.cc).
  void Cancel() override;

  // Fixed once the call is posted to its channel.
  std::shared_ptr<Channel> channel;
  std::string method;
  bool read = false;  // retried when UNAVAILABLE
  bool streaming = false;
  CallOptions options;
  std::string framed;  // the request, with gRPC's prefix
  absl::Time deadline;
  Upstream::UnaryDone unary_done;
  Upstream::StreamMessage on_message;
  Upstream::StreamDone stream_done;
  // Set by Cancel() at once: no message is delivered after it.
  std::atomic<bool> cancel_requested{false};

  // Strand-only from here.
  bool finished = false;
  int attempts = 0;
  int transparent_retries = 0;
  std::multimap<absl::Time, Call*>::iterator deadline_entry;
  bool has_deadline_entry = false;
  std::unique_ptr<boost::asio::steady_timer> retry_timer;

  // The attempt in progress.
  Connection* connection = nullptr;
  int32_t stream_id = 0;
  size_t request_sent = 0;
  std::optional<wire::ResponseReader> reader;
  std::string response;  // unary: the one message

  // A fresh attempt: its reader with these limits, the server metadata
  // read so far forgotten.
  void ResetAttempt(size_t max_message_bytes, size_t max_header_list_bytes) {
    connection = nullptr;
    stream_id = 0;
    request_sent = 0;
    response.clear();
    wire::ResponseReader::Options reading;
    reading.max_message_bytes = max_message_bytes;
    reading.max_header_list_bytes = max_header_list_bytes;
    reading.unary = !streaming;
    if (options.server_metadata != nullptr) {
      options.server_metadata->values.clear();
      reading.metadata_keys = &options.server_metadata->keys;
      reading.metadata = &options.server_metadata->values;
    }
    reader.emplace(reading);
  }

  // A message of the answer: a stream's goes to its callback at once, a
  // unary call's is kept for the end. False once the call has ended (the
  // callback may cancel it: the connection stops delivering).
  bool Deliver(std::string& message) {
    if (finished || cancel_requested.load(std::memory_order_relaxed)) {
      return false;
    }
    if (!streaming) {
      response = std::move(message);
      return true;
    }
    if (on_message) on_message(message);
    return !finished && !cancel_requested.load(std::memory_order_relaxed);
  }
};

}  // namespace coach::proxy::upstream_internal

#endif  // COACH_PROXY_UPSTREAM_CALL_H_
