// OpenAiCoach: replies from an OpenAI-compatible chat-completions API
// (POST {base_url}/chat/completions), asynchronously: requests go out on an
// AsyncHttpClient (libcurl, TLS verified through OpenSSL), and a send waiting
// for its reply holds no thread.
//
// Failures behave as the official SDKs: up to `max_retries` retries with
// backoff (retry_policy.h), all within `timeout`. When no reply can be had
// the result is UNAVAILABLE (or DEADLINE_EXCEEDED); an answer that makes no
// sense is INTERNAL; a reply stopped by the provider's content filter is
// CONTENT_FILTERED. The API key is sent, never logged.
//
// Streaming (CoachRequest::on_delta set): the request asks for
// `"stream": true` with usage in the last chunk, and each piece of text is
// given to on_delta on the HTTP client's loop thread as soon as its chunk is
// read (openai_stream.h). Retries happen only before the first piece was
// given: after it a failure (an error object, a cut stream, a timeout) is the
// reply's. A request without on_delta is the plain, non-streamed request.
//
// Time and logs are the Env's (base/env.h): deadlines, the waits before a
// retry, Retry-After dates, and every line logged.
#ifndef COACH_SERVER_COACH_OPENAI_COACH_H_
#define COACH_SERVER_COACH_OPENAI_COACH_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/env.h"
#include "base/thread_pool.h"
#include "server/coach/async_http_client.h"
#include "server/coach/openai_options.h"
#include "server/core/coach.h"

namespace coach {

class OpenAiCoach final : public Coach {
 public:
  // INVALID_ARGUMENT if the key is empty or the base URL is not
  // http(s)://host[:port][/path]. `env` must outlive the coach.
  static absl::StatusOr<std::unique_ptr<OpenAiCoach>> Create(
      const OpenAiOptions& options, Env& env = Env::Default());
  // Cancels what is in flight and delivers every callback before returning.
  ~OpenAiCoach() override;

  // `done` runs on one of `options.reply_threads` threads, never on the HTTP
  // client's loop: storing a reply may wait on SQLite, and must not hold up
  // the other requests' I/O. A raised request.cancellation stops the request
  // in flight (or the wait before a retry) at once: CANCELLED.
  void StartReply(CoachRequest request, ReplyCallback done) override;
  // Fails the requests in flight now and wakes retries from their backoff.
  void CancelAll() override;

 private:
  // One reply, across its attempts.
  struct Call;
  // The step of a Call in progress, for the caller's cancel to stop.
  struct Step;
  // What a failed attempt says about retrying it.
  struct Failure;

  OpenAiCoach(const OpenAiOptions& options, Env& env, std::string url,
              std::unique_ptr<AsyncHttpClient> http);

  // Sends attempt number call->attempt, unless time is up.
  void Attempt(std::unique_ptr<Call> call);
  // Delivers the reply, retries, or gives up.
  void OnAnswer(std::unique_ptr<Call> call, absl::StatusOr<HttpAnswer> answer);
  // Delivers the reply of a plain (not streamed) HTTP 200 answer, or why it
  // is unusable, logged.
  void DeliverCompletion(std::unique_ptr<Call> call, const HttpAnswer& answer);
  // An HTTP error status: its error put in call.last_error, and what it says
  // about a retry (the provider's code, Retry-After).
  Failure HttpFailure(Call& call, const HttpAnswer& answer);
  // After a failed attempt (its error in call->last_error): gives up if the
  // reply had started, the failure is not retryable, the retries are spent
  // or time would run out; else retries after the backoff. Logged.
  void RetryOrGiveUp(std::unique_ptr<Call> call, const Failure& failure);
  // Gives up with the last error (DEADLINE_EXCEEDED once time is up).
  void GiveUp(std::unique_ptr<Call> call);
  // Starts the next step of `call`: `start` posts the request, or the wait
  // before a retry, and returns its id, recorded for the caller's cancel. If
  // the caller has gone, delivers CANCELLED instead.
  void StartStep(
      std::unique_ptr<Call> call,
      absl::FunctionRef<AsyncHttpClient::Id(std::unique_ptr<Call>)> start);
  // Hands the outcome to the caller's callback, on a delivery thread.
  void Deliver(std::unique_ptr<Call> call, absl::StatusOr<CoachReply> outcome);
  // The caller's own end (CANCELLED), or the server's (UNAVAILABLE), if any.
  absl::Status StopReason(const Call& call) const;
  // The body of one chat-completions request (streamed if `stream`).
  std::string RequestBody(const CoachRequest& request, bool stream) const;
  // Logs the outcome of a streamed attempt.
  void LogStreamed(const Call& call, const absl::StatusOr<CoachReply>& reply,
                   bool cut_at_max_tokens);

  const OpenAiOptions options_;
  Env& env_;
  const std::string url_;  // "https://api.openai.com/v1/chat/completions"
  const std::vector<std::string> headers_;
  const std::vector<std::string> stream_headers_;
  std::atomic<bool> cancelled_{false};
  // Runs the callers' callbacks; destroyed after http_, whose last callbacks
  // hand it work.
  ThreadPool delivery_;
  const std::unique_ptr<AsyncHttpClient> http_;
};

}  // namespace coach

#endif  // COACH_SERVER_COACH_OPENAI_COACH_H_
