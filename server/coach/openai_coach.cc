#include "server/coach/openai_coach.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "server/coach/context_window.h"
#include "server/coach/retry_policy.h"
#include "server/core/errors.h"
#include "server/core/log.h"

namespace coach {
namespace {

using nlohmann::json;

constexpr char kUserAgent[] = "coach-ai-hub/0.1";
constexpr int kHttpOk = 200;

const char* RoleName(Role role) {
  return role == Role::kAssistant ? "assistant" : "user";
}

// httplib takes (seconds, microseconds).
template <typename Setter>
void SetTimeout(absl::Duration d, Setter&& set) {
  const int64_t micros = std::max<int64_t>(1, absl::ToInt64Microseconds(d));
  set(static_cast<time_t>(micros / 1000000),
      static_cast<time_t>(micros % 1000000));
}

// OpenAI's error body: {"error": {"message", "type", "code", "param"}}.
struct ProviderError {
  std::string message;
  std::string type;
  std::string code;
};

ProviderError ParseProviderError(const std::string& body) {
  ProviderError error;
  const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("error") ||
      !parsed["error"].is_object()) {
    return error;
  }
  const json& e = parsed["error"];
  const auto text = [&](const char* key) {
    return e.contains(key) && e[key].is_string() ? e[key].get<std::string>()
                                                 : std::string();
  };
  error.message = text("message");
  error.type = text("type");
  error.code = text("code");
  return error;
}

// The reply in a 200 answer, or why there is none.
absl::StatusOr<CoachReply> ParseCompletion(const std::string& body,
                                           const std::string& default_model) {
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
  const json* message = choice.contains("message") && choice["message"].is_object()
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
    LogInfo("openai: reply cut at max_tokens (finish_reason=length)");
  }
  reply.model = parsed.contains("model") && parsed["model"].is_string()
                    ? parsed["model"].get<std::string>()
                    : default_model;
  if (parsed.contains("usage") && parsed["usage"].is_object()) {
    const json& usage = parsed["usage"];
    if (usage.contains("prompt_tokens") &&
        usage["prompt_tokens"].is_number_integer() &&
        usage.contains("completion_tokens") &&
        usage["completion_tokens"].is_number_integer()) {
      reply.usage = TokenUsage{
          .prompt_tokens = usage["prompt_tokens"].get<int32_t>(),
          .completion_tokens = usage["completion_tokens"].get<int32_t>()};
    }
  }
  return reply;
}

}  // namespace

absl::StatusOr<std::unique_ptr<OpenAiCoach>> OpenAiCoach::Create(
    const OpenAiOptions& options) {
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
        absl::StrCat("OpenAI base URL \"", options.base_url,
                     "\" is not http(s)://host[:port][/path]"));
  }
  const size_t path_start = url.find('/', scheme_end + 3);
  const absl::string_view origin = url.substr(0, path_start);
  const absl::string_view prefix =
      path_start == absl::string_view::npos ? "" : url.substr(path_start);
  if (origin.size() <= scheme_end + 3) {
    return absl::InvalidArgumentError("OpenAI base URL has no host");
  }
  return std::unique_ptr<OpenAiCoach>(
      new OpenAiCoach(options, std::string(origin),
                      absl::StrCat(prefix, "/chat/completions")));
}

OpenAiCoach::OpenAiCoach(const OpenAiOptions& options, std::string origin,
                         std::string path)
    : options_(options), origin_(std::move(origin)), path_(std::move(path)) {}

OpenAiCoach::~OpenAiCoach() = default;

std::unique_ptr<httplib::Client> OpenAiCoach::TakeClient() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      std::unique_ptr<httplib::Client> client = std::move(idle_.back());
      idle_.pop_back();
      return client;
    }
  }
  auto client = std::make_unique<httplib::Client>(origin_);
  client->set_keep_alive(true);
  // httplib writes headers and body separately: without nodelay the body of
  // a request on a reused connection waits for a delayed ACK (~40 ms).
  client->set_tcp_nodelay(true);
  // Certificates are verified against the system's CA store (OpenSSL's
  // default paths, Debian's ca-certificates) — httplib's default, stated.
  client->enable_server_certificate_verification(true);
  client->set_follow_location(false);
  return client;
}

void OpenAiCoach::ReturnClient(std::unique_ptr<httplib::Client> client) {
  absl::MutexLock lock(&mu_);
  if (idle_.size() < static_cast<size_t>(options_.max_idle_connections)) {
    idle_.push_back(std::move(client));
  }
}

std::string OpenAiCoach::RequestBody(const CoachRequest& request) const {
  json messages = json::array();
  messages.push_back({{"role", "system"},
                      {"content", std::string(request.system_prompt)}});
  for (const CoachTurn& turn :
       FitToBudget(request, options_.context_token_budget)) {
    messages.push_back({{"role", RoleName(turn.role)}, {"content", turn.content}});
  }
  const json body = {
      {"model", options_.model},
      {"messages", std::move(messages)},
      {"max_tokens", options_.max_tokens},
      {"temperature", options_.temperature},
  };
  // Stored text is valid UTF-8 (validated on the way in); replace rather
  // than throw if that ever fails.
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string OpenAiCoach::Redacted(std::string text) const {
  return absl::StrReplaceAll(text, {{options_.api_key, "[redacted]"}});
}

void OpenAiCoach::CancelAll() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  for (httplib::Client* client : in_flight_) client->stop();
}

absl::StatusOr<CoachReply> OpenAiCoach::Reply(const CoachRequest& request) {
  // Our own budget, or the caller's patience if shorter.
  const absl::Time deadline =
      std::min(absl::Now() + options_.timeout, request.deadline);
  const std::string body = RequestBody(request);
  const httplib::Headers headers = {
      {"Authorization", absl::StrCat("Bearer ", options_.api_key)},
      {"User-Agent", kUserAgent},
      {"Accept", "application/json"},
  };

  absl::Status last_error = absl::UnavailableError("OpenAI: no attempt made");
  for (int attempt = 0; attempt <= options_.max_retries; ++attempt) {
    const absl::Duration remaining = deadline - absl::Now();
    if (remaining <= absl::ZeroDuration()) break;

    std::unique_ptr<httplib::Client> client = TakeClient();
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) return absl::UnavailableError("OpenAI: shutting down");
      in_flight_.insert(client.get());
    }
    SetTimeout(std::min(options_.connect_timeout, remaining),
               [&](time_t s, time_t us) { client->set_connection_timeout(s, us); });
    SetTimeout(remaining, [&](time_t s, time_t us) { client->set_read_timeout(s, us); });
    SetTimeout(remaining, [&](time_t s, time_t us) { client->set_write_timeout(s, us); });

    const absl::Time sent = absl::Now();
    httplib::Request http_request;
    http_request.method = "POST";
    http_request.path = path_;
    http_request.headers = headers;
    http_request.set_header("Content-Type", "application/json");
    http_request.body = body;
    // httplib's timeouts bound each read, not the reply: an answer trickled
    // byte by byte would outlive them. Abort the body past the deadline.
    http_request.progress = [deadline](uint64_t, uint64_t) {
      return absl::Now() < deadline;
    };
    httplib::Result result = client->send(http_request);
    {
      absl::MutexLock lock(&mu_);
      in_flight_.erase(client.get());
    }
    int http_status = 0;
    std::string error_code;
    std::optional<absl::Duration> retry_after;
    bool certificate_refused = false;
    if (!result) {
      // A certificate that fails verification will fail again: no retry.
      certificate_refused =
          result.error() == httplib::Error::SSLServerVerification;
      last_error = absl::UnavailableError(absl::StrCat(
          "OpenAI: no response (", httplib::to_string(result.error()), ")"));
    } else {
      http_status = result->status;
      if (http_status == kHttpOk) {
        ReturnClient(std::move(client));
        absl::StatusOr<CoachReply> reply =
            ParseCompletion(result->body, options_.model);
        if (!reply.ok() && ReasonOf(reply.status()).empty()) {
          LogError("openai: unusable answer: %s", reply.status().message());
        }
        if (reply.ok()) {
          LogInfo("openai: reply in %.0f ms (attempt %d)",
                  absl::ToDoubleMilliseconds(absl::Now() - sent), attempt + 1);
        }
        return reply;
      }
      const ProviderError error = ParseProviderError(result->body);
      error_code = error.code;
      retry_after = ParseRetryAfter(result->get_header_value("retry-after-ms"),
                                    result->get_header_value("retry-after"),
                                    absl::Now());
      last_error = absl::UnavailableError(absl::StrCat(
          "OpenAI: HTTP ", http_status, " type=", error.type,
          " code=", error.code, " message=", Redacted(error.message)));
      ReturnClient(std::move(client));
    }

    const bool retryable =
        !certificate_refused && IsRetryable(http_status, error_code);
    if (!retryable || attempt == options_.max_retries) {
      if (!retryable) {
        LogError("%s (not retried)", last_error.message());
      }
      break;
    }
    const absl::Duration delay = RetryDelay(attempt + 1, retry_after, options_);
    if (absl::Now() + delay >= deadline) {
      LogWarning("%s; no time left to retry", last_error.message());
      break;
    }
    LogWarning("%s; retry %d in %.0f ms", last_error.message(), attempt + 1,
               absl::ToDoubleMilliseconds(delay));
    // Wait out the backoff, unless the server shuts down meanwhile.
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&cancelled_), delay)) {
      return absl::UnavailableError("OpenAI: shutting down");
    }
  }
  if (deadline <= absl::Now()) {
    return absl::DeadlineExceededError(
        absl::StrCat("OpenAI: no reply within ",
                     absl::FormatDuration(options_.timeout), "; last: ",
                     last_error.message()));
  }
  return last_error;
}

}  // namespace coach
