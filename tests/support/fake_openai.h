// FakeOpenAi: a real HTTP server on loopback that speaks OpenAI's
// chat-completions protocol, for tests. It records what it receives and
// answers from a script of canned responses (status, body, headers, delay),
// then with a default success once the script is used up. A response may be
// streamed (Server-Sent Events, as with "stream": true): its pieces are
// written and flushed one by one, and it can stop midway until the test
// releases it; a client that leaves midway is recorded as an aborted stream.
#ifndef COACH_TESTS_SUPPORT_FAKE_OPENAI_H_
#define COACH_TESTS_SUPPORT_FAKE_OPENAI_H_

#include <httplib.h>

#include <atomic>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "proxy/proxy_config.h"
#include "server/coach/openai_options.h"
#include "tests/support/httplib_tuning.h"

namespace coach::testing {

// A streamed answer (text/event-stream, chunked).
struct FakeStream {
  // Each written and flushed in turn. Empty: the answer is not streamed.
  std::vector<std::string> pieces;
  // After this many pieces, wait for ReleaseStreams (or Stop, or the client
  // leaving) before writing the rest. -1: no wait.
  int hold_after = -1;
  // The wait between two pieces (a slow model).
  absl::Duration piece_delay = absl::ZeroDuration();
};

struct FakeResponse {
  int status = 200;
  std::string body;
  httplib::Headers headers;
  // The fake waits this long before answering (a slow or stuck provider).
  // It stops waiting early when the fake shuts down.
  absl::Duration delay = absl::ZeroDuration();
  // With pieces: streamed (`body` is then unused).
  FakeStream stream = {};
};

// One server-sent event of a chat.completion.chunk carrying `content`.
inline std::string StreamChunk(const std::string& content) {
  nlohmann::json chunk = {
      {"id", "chatcmpl-test"},
      {"object", "chat.completion.chunk"},
      {"created", 1764000000},
      {"model", "gpt-4o-mini-2024-07-18"},
      {"choices",
       {{{"index", 0},
         {"delta", {{"content", content}}},
         {"finish_reason", nullptr}}}},
  };
  return "data: " + chunk.dump() + "\n\n";
}
// The chunk that ends the choice, with `finish_reason`.
inline std::string StreamFinish(const std::string& finish_reason = "stop") {
  nlohmann::json chunk = {
      {"id", "chatcmpl-test"},
      {"object", "chat.completion.chunk"},
      {"model", "gpt-4o-mini-2024-07-18"},
      {"choices",
       {{{"index", 0},
         {"delta", nlohmann::json::object()},
         {"finish_reason", finish_reason}}}},
  };
  return "data: " + chunk.dump() + "\n\n";
}
// The last chunk with stream_options.include_usage: no choices, the usage.
inline std::string StreamUsage(int prompt_tokens = 42,
                               int completion_tokens = 17) {
  nlohmann::json chunk = {
      {"id", "chatcmpl-test"},
      {"object", "chat.completion.chunk"},
      {"model", "gpt-4o-mini-2024-07-18"},
      {"choices", nlohmann::json::array()},
      {"usage",
       {{"prompt_tokens", prompt_tokens},
        {"completion_tokens", completion_tokens},
        {"total_tokens", prompt_tokens + completion_tokens}}},
  };
  return "data: " + chunk.dump() + "\n\n";
}
inline std::string StreamDone() { return "data: [DONE]\n\n"; }
// A whole streamed reply: a chunk per piece, finish, usage, [DONE].
inline std::vector<std::string> StreamedReply(
    const std::vector<std::string>& pieces) {
  std::vector<std::string> events;
  for (const std::string& piece : pieces) events.push_back(StreamChunk(piece));
  events.push_back(StreamFinish());
  events.push_back(StreamUsage());
  events.push_back(StreamDone());
  return events;
}

// A streamed answer: `pieces` written in turn (StreamChunk...), the stream
// held open after `hold_after` of them (-1: never).
inline FakeResponse StreamResponse(std::vector<std::string> pieces,
                                   int hold_after = -1) {
  FakeResponse response;
  response.stream.pieces = std::move(pieces);
  response.stream.hold_after = hold_after;
  return response;
}

// Options for a coach talking to a FakeOpenAi at `base_url`: real defaults
// for what the API sees (model, max tokens, temperature), short waits so
// that retries take milliseconds.
inline OpenAiOptions FastOpenAiOptions(const std::string& base_url,
                                       const std::string& api_key) {
  OpenAiOptions options;
  options.api_key = api_key;
  options.base_url = base_url;
  options.connect_timeout = absl::Seconds(1);
  options.timeout = absl::Seconds(20);
  options.retry_base_delay = absl::Milliseconds(10);
  options.retry_max_delay = absl::Milliseconds(50);
  return options;
}

struct ReceivedRequest {
  std::string method;
  std::string path;
  httplib::Headers headers;
  std::string body;
  nlohmann::json json;  // the parsed body (discarded value if not JSON)
};

// A 200 chat completion with `content`, `finish_reason` and usage.
inline std::string CompletionBody(const std::string& content,
                                  const std::string& finish_reason = "stop",
                                  int prompt_tokens = 42,
                                  int completion_tokens = 17) {
  nlohmann::json body = {
      {"id", "chatcmpl-test"},
      {"object", "chat.completion"},
      {"created", 1764000000},
      {"model", "gpt-4o-mini-2024-07-18"},
      {"choices",
       {{{"index", 0},
         {"message", {{"role", "assistant"}, {"content", content}}},
         {"finish_reason", finish_reason}}}},
      {"usage",
       {{"prompt_tokens", prompt_tokens},
        {"completion_tokens", completion_tokens},
        {"total_tokens", prompt_tokens + completion_tokens}}},
  };
  return body.dump();
}

// OpenAI's error body.
inline std::string ErrorBody(const std::string& message,
                             const std::string& type, const std::string& code) {
  nlohmann::json body = {{"error",
                          {{"message", message},
                           {"type", type},
                           {"code", code},
                           {"param", nullptr}}}};
  return body.dump();
}

class FakeOpenAi {
 public:
  static constexpr int kWorkers = 256;

  FakeOpenAi() {
    server_.Post("/v1/chat/completions", [this](const httplib::Request& request,
                                                httplib::Response& response) {
      Answer(request, response);
    });
    // Tuned like coach-proxy: enough workers for requests waiting out their
    // delay, no Nagle delay, a real listen backlog.
    HttplibTuning tuning;
    tuning.worker_threads = kWorkers;
    TuneHttpServer(server_, tuning);
    // Bound (and listening) here: connections queue until the thread accepts.
    port_ = BindHttpServer(server_, "127.0.0.1:0", tuning.listen_backlog)
                .value_or(0);
    thread_ = std::thread([this] {
      server_.listen_after_bind();
      serving_over_ = true;
    });
  }
  ~FakeOpenAi() { Stop(); }

  // Stops answering; slow and held answers in progress end at once.
  void Stop() {
    if (!stopping_.HasBeenNotified()) stopping_.Notify();
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
    }
    // httplib's stop() does nothing until the serving thread has started,
    // which then serves for ever: wait for the start (microseconds), or for
    // the thread's end if it could not serve.
    while (thread_.joinable() && !server_.is_running() && !serving_over_) {
      std::this_thread::yield();
    }
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  int port() const { return port_; }
  std::string base_url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/v1";
  }

  // Queues responses, answered in order.
  void Script(std::vector<FakeResponse> responses) {
    absl::MutexLock lock(&mu_);
    for (FakeResponse& r : responses) script_.push_back(std::move(r));
  }
  // The answer once the script is used up.
  void SetDefault(FakeResponse response) {
    absl::MutexLock lock(&mu_);
    default_ = std::move(response);
  }

  // Requests wait, once received, until ReleaseAnswers (or Stop): a test can
  // then look at the client with every one of them in flight.
  void HoldAnswers() {
    absl::MutexLock lock(&mu_);
    holding_ = true;
  }
  void ReleaseAnswers() {
    absl::MutexLock lock(&mu_);
    holding_ = false;
  }
  // Held streams (FakeResponse::hold_after) write the rest now.
  void ReleaseStreams() {
    absl::MutexLock lock(&mu_);
    streams_released_ = true;
  }
  // Waits until `n` streamed answers were cut by their client; false after
  // `timeout`.
  bool AwaitAbortedStreams(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const auto aborted = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return aborted_streams_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&aborted), timeout);
  }
  int aborted_streams() const {
    absl::MutexLock lock(&mu_);
    return aborted_streams_;
  }
  // Streamed answers written to their end.
  int completed_streams() const {
    absl::MutexLock lock(&mu_);
    return completed_streams_;
  }

  // Waits until `n` requests have been received; false after `timeout`.
  bool AwaitRequests(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const auto received = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return static_cast<int>(received_.size()) >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&received), timeout);
  }

  std::vector<ReceivedRequest> requests() const {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  int request_count() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(received_.size());
  }

 private:
  void Answer(const httplib::Request& request, httplib::Response& response) {
    FakeResponse answer;
    {
      absl::MutexLock lock(&mu_);
      received_.push_back(ReceivedRequest{
          .method = request.method,
          .path = request.path,
          .headers = request.headers,
          .body = request.body,
          .json = nlohmann::json::parse(request.body, nullptr, false)});
      mu_.Await(absl::Condition(
          +[](FakeOpenAi* fake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(fake->mu_) {
            return !fake->holding_ || fake->stopped_;
          },
          this));
      if (!script_.empty()) {
        answer = std::move(script_.front());
        script_.pop_front();
      } else {
        answer = default_;
      }
    }
    if (answer.delay > absl::ZeroDuration()) {
      stopping_.WaitForNotificationWithTimeout(answer.delay);
    }
    response.status = answer.status;
    for (const auto& [name, value] : answer.headers) {
      response.set_header(name, value);
    }
    if (!answer.stream.pieces.empty()) {
      Stream(std::move(answer), response);
      return;
    }
    response.set_content(answer.body, "application/json");
  }

  // Writes `answer.stream` piece by piece, each flushed at once.
  void Stream(FakeResponse answer, httplib::Response& response) {
    auto script = std::make_shared<FakeResponse>(std::move(answer));
    response.set_chunked_content_provider(
        "text/event-stream",
        [this, script](size_t /*offset*/, httplib::DataSink& sink) {
          const FakeStream& stream = script->stream;
          for (size_t i = 0; i < stream.pieces.size(); ++i) {
            if (static_cast<int>(i) == stream.hold_after &&
                !AwaitRelease(sink)) {
              return Aborted();
            }
            if (i > 0 && stream.piece_delay > absl::ZeroDuration() &&
                stopping_.WaitForNotificationWithTimeout(stream.piece_delay)) {
              return false;
            }
            const std::string& piece = stream.pieces[i];
            if (!sink.write(piece.data(), piece.size())) return Aborted();
          }
          sink.done();
          absl::MutexLock lock(&mu_);
          ++completed_streams_;
          return true;
        });
  }
  // Waits for ReleaseStreams; false if the client left meanwhile. httplib
  // tells a closed connection only by a failed write: a comment line (which
  // SSE readers ignore) is written every few milliseconds meanwhile, the
  // second write after the client's close fails.
  bool AwaitRelease(httplib::DataSink& sink) {
    static constexpr char kKeepAlive[] = ": waiting\n\n";
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        const auto released = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return streams_released_ || stopped_;
        };
        if (mu_.AwaitWithTimeout(absl::Condition(&released),
                                 absl::Milliseconds(5))) {
          return true;
        }
      }
      if (!sink.write(kKeepAlive, sizeof(kKeepAlive) - 1)) return false;
    }
  }
  bool Aborted() {
    absl::MutexLock lock(&mu_);
    ++aborted_streams_;
    return false;
  }

  httplib::Server server_;
  std::thread thread_;
  std::atomic<bool> serving_over_{false};
  int port_ = 0;
  absl::Notification stopping_;
  mutable absl::Mutex mu_;
  std::deque<FakeResponse> script_;
  FakeResponse default_{.status = 200,
                        .body = CompletionBody("Réponse du coach IA."),
                        .headers = {},
                        .delay = absl::ZeroDuration(),
                        .stream = {}};
  std::vector<ReceivedRequest> received_;
  bool holding_ = false;
  bool stopped_ = false;
  bool streams_released_ = false;
  int aborted_streams_ = 0;
  int completed_streams_ = 0;
};

}  // namespace coach::testing

#endif  // COACH_TESTS_SUPPORT_FAKE_OPENAI_H_
