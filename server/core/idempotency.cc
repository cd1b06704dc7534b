#include "server/core/idempotency.h"

#include <nlohmann/json.hpp>

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/digest.h"
#include "base/log.h"
#include "server/core/chat.h"
#include "server/core/errors.h"

namespace coach {
namespace {

using json = nlohmann::ordered_json;

// The errors a key replays, by the name they are stored under (stable:
// rows outlive builds).
struct ReplayableError {
  ErrorReason reason;
  const char* name;
  absl::Status (*make)();
};
constexpr ReplayableError kReplayable[] = {
    {ErrorReason::kSessionNotFound, "SESSION_NOT_FOUND", &SessionNotFoundError},
    {ErrorReason::kSessionForbidden, "SESSION_FORBIDDEN",
     &SessionForbiddenError},
    {ErrorReason::kContentFiltered, "CONTENT_FILTERED", &ContentFilteredError},
};

const ReplayableError* ReplayableOf(const absl::Status& status) {
  const std::optional<ErrorReason> reason = ReasonOf(status);
  if (!reason.has_value()) return nullptr;
  for (const ReplayableError& error : kReplayable) {
    if (error.reason == *reason) return &error;
  }
  return nullptr;
}

json MessageJson(const MessageRecord& m) {
  json out = {{"id", m.id},
              {"content", m.content},
              {"createdAt", absl::ToUnixMicros(m.created_at)}};
  if (!m.model.empty()) out["model"] = m.model;
  if (m.usage.has_value()) {
    out["promptTokens"] = m.usage->prompt_tokens;
    out["completionTokens"] = m.usage->completion_tokens;
  }
  return out;
}

MessageRecord MessageOf(const json& in, const std::string& session_id,
                        Role role) {
  MessageRecord m{
      .id = in.at("id").get<std::string>(),
      .session_id = session_id,
      .role = role,
      .content = in.at("content").get<std::string>(),
      .created_at = absl::FromUnixMicros(in.at("createdAt").get<int64_t>()),
      .model = in.value("model", std::string()),
      .usage = std::nullopt};
  if (in.contains("promptTokens")) {
    m.usage = TokenUsage{
        .prompt_tokens = in.at("promptTokens").get<int32_t>(),
        .completion_tokens = in.at("completionTokens").get<int32_t>()};
  }
  return m;
}

std::string Dump(const json& value) {
  // Replace, not throw: the texts were checked as UTF-8, the model name
  // (the provider's) was not.
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Length-prefixed, so that no two requests frame the same bytes.
void Frame(std::string& out, absl::string_view field) {
  absl::StrAppend(&out, field.size(), ":", field, ";");
}

}  // namespace

std::string SendRequestHash(absl::string_view session_id,
                            absl::string_view message) {
  std::string framed = "coach.v1.SendMessage;";
  Frame(framed, session_id);
  Frame(framed, message);
  return Sha256Hex(framed);
}

std::string EncodeSendResponse(absl::string_view session_id,
                               const MessageRecord& user_message,
                               const MessageRecord& assistant_message) {
  return Dump(json{{"sessionId", session_id},
                   {"userMessage", MessageJson(user_message)},
                   {"assistantMessage", MessageJson(assistant_message)}});
}

bool IsReplayableError(const absl::Status& status) {
  return ReplayableOf(status) != nullptr;
}

std::string EncodeSendError(const absl::Status& status) {
  const ReplayableError* error = ReplayableOf(status);
  return Dump(json{{"error", error != nullptr ? error->name : "INTERNAL"}});
}

absl::StatusOr<SendResult> DecodeSendResponse(const StoredResponse& stored) {
  try {
    const json in = json::parse(stored.response);
    if (in.contains("error")) {
      const std::string name = in.at("error").get<std::string>();
      for (const ReplayableError& error : kReplayable) {
        if (name == error.name) return MarkReplayed(error.make());
      }
      return absl::InternalError(absl::StrCat("unknown stored error ", name));
    }
    SendResult result;
    result.session_id = in.at("sessionId").get<std::string>();
    result.user_message =
        MessageOf(in.at("userMessage"), result.session_id, Role::kUser);
    result.assistant_message = MessageOf(in.at("assistantMessage"),
                                         result.session_id, Role::kAssistant);
    result.remaining_credits = stored.remaining_credits;
    result.replayed = true;
    return result;
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("unreadable stored response: ", e.what()));
  }
}

KeyClaim::KeyClaim(KeyClaim&& other) noexcept
    : store_(std::exchange(other.store_, nullptr)),
      user_id_(std::move(other.user_id_)),
      key_(std::move(other.key_)),
      claim_id_(std::move(other.claim_id_)) {}

KeyClaim& KeyClaim::operator=(KeyClaim&& other) noexcept {
  if (this != &other) {
    Release();
    store_ = std::exchange(other.store_, nullptr);
    user_id_ = std::move(other.user_id_);
    key_ = std::move(other.key_);
    claim_id_ = std::move(other.claim_id_);
  }
  return *this;
}

std::optional<IdempotencyCompletion> KeyClaim::Completion(
    std::string response) const {
  if (!held()) return std::nullopt;
  return IdempotencyCompletion{.user_id = user_id_,
                               .key = key_,
                               .claim_id = claim_id_,
                               .response = std::move(response)};
}

absl::Status KeyClaim::Settle(absl::Status status) {
  if (!held()) return status;
  if (!IsReplayableError(status)) {
    Release();
    return status;
  }
  Store* store = std::exchange(store_, nullptr);
  if (absl::Status stored = store->CompleteIdempotencyKey(
          user_id_, key_, claim_id_, EncodeSendError(status));
      !stored.ok()) {
    // Not stored: the retry runs again and meets the error itself.
    LogWarning("storing an idempotent error failed: %s", stored.ToString());
    store->ReleaseIdempotencyKey(user_id_, key_, claim_id_).IgnoreError();
  }
  return status;
}

void KeyClaim::Release() {
  Store* store = std::exchange(store_, nullptr);
  if (store == nullptr) return;
  if (absl::Status released =
          store->ReleaseIdempotencyKey(user_id_, key_, claim_id_);
      !released.ok()) {
    LogWarning(
        "releasing an idempotency key failed (its claim will expire): "
        "%s",
        released.ToString());
  }
}

}  // namespace coach
