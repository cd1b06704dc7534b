#include "server/coach/openai_coach.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "base/url.h"
#include "server/coach/context_window.h"
#include "server/coach/openai_stream.h"
#include "server/coach/provider_error.h"
#include "server/coach/retry_policy.h"
#include "server/core/errors.h"

namespace coach {
namespace {

using nlohmann::json;

constexpr char kUserAgent[] = "coach-ai-hub/0.1";
constexpr int kHttpOk = 200;
constexpr int kNoAnswer = 0;  // for IsRetryable: no HTTP status at all
// How long a streamed body may stay open after its [DONE] before it is
// ended for the provider (it normally ends within the same read).
constexpr absl::Duration kEndAfterDone = absl::Milliseconds(500);

const char* RoleName(Role role) {
  return role == Role::kAssistant ? "assistant" : "user";
}

// The `code` of OpenAI's error body ({"error": {"message", "type", "code",
// "param"}}), for the retry rule only (429 "insufficient_quota" is not
// retried). Never logged nor returned: a provider may echo the key, whole
// or in part, in any of these fields.
std::string ProviderErrorCode(const std::string& body) {
  const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("error") ||
      !parsed["error"].is_object()) {
    return "";
  }
  const json& e = parsed["error"];
  return e.contains("code") && e["code"].is_string()
             ? e["code"].get<std::string>()
             : std::string();
}

// What an HTTP error from the provider means, in our own words: the error
// logged and returned carries this and the status, no provider text.
const char* DescribeHttpError(int http_status, absl::string_view code) {
  switch (http_status) {
    case 400: return "request refused";
    case 401: return "API key refused";
    case 403: return "access denied";
    case 404: return "model or URL unknown";
    case 408: return "request timeout";
    case 409: return "conflict";
    case 413: return "request too large";
    case 422: return "request refused";
    case 429:
      return code == "insufficient_quota" ? "quota exhausted" : "rate limited";
  }
  return http_status >= 500 ? "provider error" : "unexpected status";
}

// The reply in a 200 answer, or why there is none.
absl::StatusOr<CoachReply> ParseCompletion(const std::string& body,
                                           const std::string& default_model,
                                           Env& env) {
  const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("choices") ||
      !parsed["choices"].is_array() || parsed["choices"].empty() ||
      !parsed["choices"][0].is_object()) {
    return absl::InternalError("chat completion without choices");
  }
  const json& choice = parsed["choices"][0];
  const std::string finish_reason =
      choice.contains("finish_reason") && choice["finish_reason"].is_string()
          ? choice["finish_reason"].get<std::string>()
          : "";
  if (finish_reason == "content_filter") return ContentFilteredError();
  const json* message =
      choice.contains("message") && choice["message"].is_object()
          ? &choice["message"]
          : nullptr;
  if (message == nullptr) return absl::InternalError("choice without message");
  // A model may refuse instead of answering (`refusal`, content null).
  if (message->contains("refusal") && (*message)["refusal"].is_string() &&
      !(message->contains("content") && (*message)["content"].is_string())) {
    return ContentFilteredError();
  }
  if (!message->contains("content") || !(*message)["content"].is_string()) {
    return absl::InternalError("message without text content");
  }
  CoachReply reply;
  reply.content = (*message)["content"].get<std::string>();
  if (finish_reason == "length") {
    // Cut by max_tokens: the text so far is still a useful reply.
    LogTo(env, LogLevel::kInfo,
          "openai: reply cut at max_tokens (finish_reason=length)");
  }
  reply.model = parsed.contains("model") && parsed["model"].is_string()
                    ? parsed["model"].get<std::string>()
                    : default_model;
  reply.usage = UsageIn(parsed);
  return reply;
}

}  // namespace

absl::StatusOr<std::unique_ptr<OpenAiCoach>> OpenAiCoach::Create(
    const OpenAiOptions& options, Env& env) {
  if (options.api_key.empty()) {
    return absl::InvalidArgumentError("OpenAI: no API key");
  }
  absl::string_view url = options.base_url;
  while (absl::ConsumeSuffix(&url, "/")) {
  }
  const size_t scheme_end = url.find("://");
  const absl::string_view scheme =
      scheme_end == absl::string_view::npos ? "" : url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") {
    return absl::InvalidArgumentError(
        absl::StrCat("OpenAI base URL \"", WithoutUserinfo(options.base_url),
                     "\" is not http(s)://host[:port][/path]"));
  }
  const size_t path_start = url.find('/', scheme_end + 3);
  const absl::string_view origin = url.substr(0, path_start);
  const absl::string_view prefix =
      path_start == absl::string_view::npos ? "" : url.substr(path_start);
  if (origin.size() <= scheme_end + 3) {
    return absl::InvalidArgumentError("OpenAI base URL has no host");
  }
  auto http = AsyncHttpClient::Create(
      AsyncHttpOptions{
          .max_idle_connections = options.max_idle_connections,
          .max_answer_bytes = static_cast<size_t>(options.max_answer_bytes),
          .proxy = options.proxy},
      env);
  if (!http.ok()) return http.status();
  return std::unique_ptr<OpenAiCoach>(new OpenAiCoach(
      options, env, absl::StrCat(origin, prefix, "/chat/completions"),
      *std::move(http)));
}

// Shared by a Call and the action on its caller's Cancellation. The lock
// orders "start the next step and record its id" against "cancel the step
// recorded", so that a cancel never misses the step that starts meanwhile.
struct OpenAiCoach::Step {
  absl::Mutex mu;
  AsyncHttpClient::Id id ABSL_GUARDED_BY(mu) = 0;  // 0: none yet
  bool over ABSL_GUARDED_BY(mu) = false;           // delivered
};

// A streamed attempt: its reader, fed on the loop thread by the transfer's
// on_body, then read by OnAnswer on the same thread.
struct StreamAttempt {
  StreamAttempt(const OpenAiOptions& options,
                std::function<void(absl::string_view)> to)
      : reader(static_cast<size_t>(options.max_stream_line_bytes),
               static_cast<size_t>(options.max_answer_bytes)),
        on_delta(std::move(to)) {}
  OpenAiStream reader;
  const std::function<void(absl::string_view)> on_delta;
  // A piece was given: the reply has started, no retry now.
  bool started = false;
};

struct OpenAiCoach::Call {
  std::shared_ptr<const std::string> body;  // every attempt sends these bytes
  // Null: the plain request.
  std::function<void(absl::string_view)> on_delta;
  // The current attempt's, when streamed.
  std::shared_ptr<StreamAttempt> stream;
  // Our own budget, or the caller's patience if shorter.
  absl::Time deadline;
  int attempt = 0;  // 0: the first try
  absl::Time sent;
  absl::Status last_error = absl::UnavailableError("OpenAI: no attempt made");
  std::shared_ptr<Cancellation> cancellation;  // the caller's; may be null
  const std::shared_ptr<Step> step = std::make_shared<Step>();
  ReplyCallback done;
};

OpenAiCoach::OpenAiCoach(const OpenAiOptions& options, Env& env,
                         std::string url, std::unique_ptr<AsyncHttpClient> http)
    : options_(options),
      env_(env),
      url_(std::move(url)),
      headers_({absl::StrCat("Authorization: Bearer ", options.api_key),
                absl::StrCat("User-Agent: ", kUserAgent),
                "Accept: application/json", "Content-Type: application/json"}),
      stream_headers_({absl::StrCat("Authorization: Bearer ", options.api_key),
                       absl::StrCat("User-Agent: ", kUserAgent),
                       "Accept: text/event-stream",
                       "Content-Type: application/json"}),
      delivery_(options.reply_threads),
      http_(std::move(http)) {}

OpenAiCoach::~OpenAiCoach() {
  // Before http_ goes: work its last callbacks run (a retry's Attempt) must
  // see that nothing more is to be sent.
  cancelled_ = true;
}

std::string OpenAiCoach::RequestBody(const CoachRequest& request,
                                     bool stream) const {
  json messages = json::array();
  messages.push_back(
      {{"role", "system"}, {"content", std::string(request.system_prompt)}});
  for (const CoachTurn& turn :
       FitToBudget(request, options_.context_token_budget)) {
    messages.push_back(
        {{"role", RoleName(turn.role)}, {"content", turn.content}});
  }
  json body = {
      {"model", options_.model},
      {"messages", std::move(messages)},
      {"max_tokens", options_.max_tokens},
      {"temperature", options_.temperature},
  };
  if (stream) {
    body["stream"] = true;
    // The usage comes in a last chunk with empty choices.
    body["stream_options"] = {{"include_usage", true}};
  }
  // Stored text is valid UTF-8 (validated on the way in); replace rather
  // than throw if that ever fails.
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

void OpenAiCoach::CancelAll() {
  cancelled_ = true;
  http_->CancelAll();
}

void OpenAiCoach::StartReply(CoachRequest request, ReplyCallback done) {
  auto call = std::make_unique<Call>();
  call->on_delta = std::move(request.on_delta);
  call->body = std::make_shared<const std::string>(
      RequestBody(request, call->on_delta != nullptr));
  call->deadline = std::min(env_.Now() + options_.timeout, request.deadline);
  call->cancellation = std::move(request.cancellation);
  call->done = std::move(done);
  if (call->cancellation != nullptr) {
    // Registered once: it stops whichever step is in progress. A step is
    // over once delivered (before this coach can be destroyed), so the raw
    // pointer is never used past http_'s life.
    call->cancellation->OnCancel([http = http_.get(), step = call->step] {
      absl::MutexLock lock(&step->mu);
      if (!step->over && step->id != 0) http->Cancel(step->id);
    });
  }
  Attempt(std::move(call));
}

absl::Status OpenAiCoach::StopReason(const Call& call) const {
  if (call.cancellation != nullptr && call.cancellation->IsCancelled()) {
    return absl::CancelledError("OpenAI: the caller gave up");
  }
  if (cancelled_) return absl::UnavailableError("OpenAI: shutting down");
  return absl::OkStatus();
}

void OpenAiCoach::StartStep(
    std::unique_ptr<Call> call,
    absl::FunctionRef<AsyncHttpClient::Id(std::unique_ptr<Call>)> start) {
  const std::shared_ptr<Step> step = call->step;
  absl::ReleasableMutexLock lock(&step->mu);
  // Checked under the step's lock: a cancel raised after this waits for the
  // id recorded below, and cancels that step.
  if (call->cancellation != nullptr && call->cancellation->IsCancelled()) {
    lock.Release();
    Deliver(std::move(call),
            absl::CancelledError("OpenAI: the caller gave up"));
    return;
  }
  step->id = start(std::move(call));
}

void OpenAiCoach::Deliver(std::unique_ptr<Call> call,
                          absl::StatusOr<CoachReply> outcome) {
  // Nothing left to stop.
  {
    absl::MutexLock lock(&call->step->mu);
    call->step->over = true;
  }
  if (call->cancellation != nullptr) call->cancellation->Clear();
  delivery_.Schedule(
      [done = std::move(call->done), outcome = std::move(outcome)]() mutable {
        done(std::move(outcome));
      });
}

void OpenAiCoach::Attempt(std::unique_ptr<Call> call) {
  if (absl::Status stop = StopReason(*call); !stop.ok()) {
    Deliver(std::move(call), std::move(stop));
    return;
  }
  if (call->deadline <= env_.Now()) {
    GiveUp(std::move(call));
    return;
  }
  HttpPost post{.url = url_,
                .headers = call->on_delta ? stream_headers_ : headers_,
                .body = call->body,
                // Cuts an answer trickled past the deadline too.
                .deadline = call->deadline,
                .connect_timeout = options_.connect_timeout,
                .on_body = nullptr};
  if (call->on_delta) {
    call->stream = std::make_shared<StreamAttempt>(options_, call->on_delta);
    post.on_body = [http = http_.get(), stream = call->stream,
                    step = call->step](absl::string_view bytes) {
      const bool was_done = stream->reader.done();
      absl::Status fed =
          stream->reader.Feed(bytes, [&](absl::string_view piece) {
            stream->started = true;
            stream->on_delta(piece);
          });
      if (fed.ok() && !was_done && stream->reader.done()) {
        // [DONE]: the reply is whole. The body's end normally follows at
        // once (and leaves the connection reusable); a provider that keeps
        // it open has it ended here, rather than the reply failing at the
        // timeout. (A cancel of a step already over does nothing.)
        http->RunAfter(kEndAfterDone, [http, step] {
          absl::MutexLock lock(&step->mu);
          if (!step->over) http->Cancel(step->id);
        });
      }
      return fed;
    };
  }
  call->sent = env_.Now();
  StartStep(std::move(call), [&](std::unique_ptr<Call> started) {
    return http_->Post(std::move(post),
                       [this, call = std::move(started)](
                           absl::StatusOr<HttpAnswer> answer) mutable {
                         OnAnswer(std::move(call), std::move(answer));
                       });
  });
}

// What a failed attempt says about another: its error is in the Call's
// last_error.
struct OpenAiCoach::Failure {
  int http_status = kNoAnswer;
  std::string error_code;
  std::optional<absl::Duration> retry_after;
  // A refused certificate will be refused again.
  bool may_retry = true;
};

void OpenAiCoach::OnAnswer(std::unique_ptr<Call> call,
                           absl::StatusOr<HttpAnswer> answer) {
  if (absl::Status stop = StopReason(*call); !stop.ok()) {
    Deliver(std::move(call), std::move(stop));
    return;
  }
  Failure failure;
  StreamAttempt* const stream = call->stream.get();
  if (stream != nullptr &&
      ((answer.ok() && answer->status == kHttpOk) ||
       !stream->reader.error().ok() || stream->reader.done())) {
    // A stream was read, whole or until the reader stopped it (or to its
    // [DONE], the body then ended by us or cut).
    absl::StatusOr<CoachReply> reply = stream->reader.Finish(options_.model);
    if (reply.ok() || !absl::IsUnavailable(reply.status())) {
      LogStreamed(*call, reply, stream->reader.cut_at_max_tokens());
      Deliver(std::move(call), std::move(reply));
      return;
    }
    // An error object, or a stream cut before [DONE].
    call->last_error = absl::UnavailableError(reply.status().message());
    failure.error_code = stream->reader.error_code();
  } else if (absl::IsResourceExhausted(answer.status())) {
    // An answer no reply needs: nonsense, as far as we are concerned.
    LogTo(env_, LogLevel::kError, "openai: unusable answer: %s",
          answer.status().message());
    Deliver(std::move(call), absl::InternalError(absl::StrCat(
                                 "OpenAI: ", answer.status().message())));
    return;
  } else if (!answer.ok()) {
    failure.may_retry = !absl::IsFailedPrecondition(answer.status());
    call->last_error = absl::UnavailableError(
        absl::StrCat("OpenAI: no response (", answer.status().message(), ")"));
  } else if (answer->status == kHttpOk) {
    DeliverCompletion(std::move(call), *answer);
    return;
  } else {
    failure = HttpFailure(*call, *answer);
  }
  RetryOrGiveUp(std::move(call), failure);
}

void OpenAiCoach::DeliverCompletion(std::unique_ptr<Call> call,
                                    const HttpAnswer& answer) {
  absl::StatusOr<CoachReply> reply =
      ParseCompletion(answer.body, options_.model, env_);
  if (reply.ok()) {
    LogTo(env_, LogLevel::kInfo, "openai: reply in %.0f ms (attempt %d)",
          absl::ToDoubleMilliseconds(env_.Now() - call->sent),
          call->attempt + 1);
  } else if (!ReasonOf(reply.status()).has_value()) {
    LogTo(env_, LogLevel::kError, "openai: unusable answer: %s",
          reply.status().message());
  }
  Deliver(std::move(call), std::move(reply));
}

OpenAiCoach::Failure OpenAiCoach::HttpFailure(Call& call,
                                              const HttpAnswer& answer) {
  Failure failure;
  failure.http_status = answer.status;
  failure.error_code = ProviderErrorCode(answer.body);
  failure.retry_after =
      ParseRetryAfter(answer.Header("retry-after-ms"),
                      answer.Header("retry-after"), env_.Now());
  call.last_error = absl::UnavailableError(absl::StrCat(
      "OpenAI: HTTP ", failure.http_status, " (",
      DescribeHttpError(failure.http_status, failure.error_code), ")"));
  if (RefusesTheRequest(failure.http_status)) {
    call.last_error = MarkRequestRefused(std::move(call.last_error));
  }
  return failure;
}

void OpenAiCoach::RetryOrGiveUp(std::unique_ptr<Call> call,
                                const Failure& failure) {
  if (call->stream != nullptr && call->stream->started) {
    // Pieces of this reply were given: another attempt would write another
    // reply after them. The reply fails here.
    LogTo(env_, LogLevel::kError, "%s (not retried: the reply had started)",
          call->last_error.message());
    GiveUp(std::move(call));
    return;
  }

  const bool retryable =
      failure.may_retry && IsRetryable(failure.http_status, failure.error_code);
  if (!retryable || call->attempt == options_.max_retries) {
    if (!retryable) {
      LogTo(env_, LogLevel::kError, "%s (not retried)",
            call->last_error.message());
    }
    GiveUp(std::move(call));
    return;
  }
  const absl::Duration delay =
      RetryDelay(call->attempt + 1, failure.retry_after, options_);
  if (env_.Now() + delay >= call->deadline) {
    LogTo(env_, LogLevel::kWarning, "%s; no time left to retry",
          call->last_error.message());
    GiveUp(std::move(call));
    return;
  }
  const std::string error(call->last_error.message());
  const int retry = ++call->attempt;
  // A cancel (the caller's, or CancelAll) ends the wait at once; Attempt
  // then sees it.
  StartStep(std::move(call), [&](std::unique_ptr<Call> waiting) {
    return http_->RunAfter(delay, [this, call = std::move(waiting)]() mutable {
      Attempt(std::move(call));
    });
  });
  // Once the wait is timed (the retry cannot start before this returns: it
  // runs on this loop thread), so that the line tells a test that it is.
  LogTo(env_, LogLevel::kWarning, "%s; retry %d in %.0f ms", error, retry,
        absl::ToDoubleMilliseconds(delay));
}

void OpenAiCoach::LogStreamed(const Call& call,
                              const absl::StatusOr<CoachReply>& reply,
                              bool cut_at_max_tokens) {
  if (reply.ok()) {
    if (cut_at_max_tokens) {
      // Cut by max_tokens: the text so far is still a useful reply.
      LogTo(env_, LogLevel::kInfo,
            "openai: reply cut at max_tokens (finish_reason=length)");
    }
    LogTo(env_, LogLevel::kInfo,
          "openai: streamed reply in %.0f ms (attempt %d)",
          absl::ToDoubleMilliseconds(env_.Now() - call.sent), call.attempt + 1);
  } else if (!ReasonOf(reply.status()).has_value()) {
    LogTo(env_, LogLevel::kError, "openai: unusable stream: %s",
          reply.status().message());
  }
}

void OpenAiCoach::GiveUp(std::unique_ptr<Call> call) {
  absl::Status error = call->deadline <= env_.Now()
                           ? absl::DeadlineExceededError(absl::StrCat(
                                 "OpenAI: no reply within ",
                                 absl::FormatDuration(options_.timeout),
                                 "; last: ", call->last_error.message()))
                           : call->last_error;
  Deliver(std::move(call), std::move(error));
}

}  // namespace coach
