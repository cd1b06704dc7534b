#include "server/rpc/proto_convert.h"

namespace coach {

void ToProto(absl::Time time, google::protobuf::Timestamp* out) {
  const int64_t micros = absl::ToUnixMicros(time);
  // Floor division: a timestamp's nanos are never negative.
  int64_t seconds = micros / 1000000;
  int64_t remainder = micros % 1000000;
  if (remainder < 0) {
    --seconds;
    remainder += 1000000;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(remainder * 1000));
}

void ToProto(const MessageRecord& message, v1::ChatMessage* out) {
  out->set_id(message.id);
  out->set_role(message.role == Role::kAssistant ? v1::ASSISTANT : v1::USER);
  out->set_content(message.content);
  ToProto(message.created_at, out->mutable_created_at());
}

void ToProto(const SessionRecord& session, v1::SessionSummary* out) {
  out->set_id(session.id);
  out->set_title(session.title);
  out->set_last_message(session.last_message);
  out->set_message_count(session.message_count);
  ToProto(session.created_at, out->mutable_created_at());
  ToProto(session.updated_at, out->mutable_updated_at());
}

void ToProto(const SessionRecord& session, v1::HistoryEntry* out) {
  out->set_id(session.id);
  out->set_title(session.title);
  out->set_preview(session.last_message);
  out->set_message_count(session.message_count);
  ToProto(session.created_at, out->mutable_created_at());
  ToProto(session.updated_at, out->mutable_updated_at());
}

void ToProto(const SessionRecord& session, v1::Session* out) {
  out->set_id(session.id);
  out->set_title(session.title);
  ToProto(session.created_at, out->mutable_created_at());
  ToProto(session.updated_at, out->mutable_updated_at());
}

void ToProto(const UserStats& stats, v1::UserStats* out) {
  out->set_total_chats(stats.totals.sessions);
  out->set_total_messages(stats.totals.messages);
  if (stats.remaining_credits.has_value()) {
    out->set_remaining_credits(*stats.remaining_credits);
  }
  out->set_plan(ToProto(stats.plan));
  out->set_status(stats.status == UserStatus::kActive
                      ? v1::ACTIVE
                      : v1::USER_STATUS_UNSPECIFIED);
}

void ToProto(const UsageRecord& usage, v1::Usage* out) {
  out->set_month(usage.month);
  out->set_replies(usage.replies);
  out->set_credits_charged(usage.credits_charged);
  out->set_prompt_tokens(usage.prompt_tokens);
  out->set_completion_tokens(usage.completion_tokens);
  for (const ModelUsageRecord& model : usage.by_model) {
    v1::ModelUsage* m = out->add_by_model();
    m->set_model(model.model);
    m->set_replies(model.replies);
    m->set_prompt_tokens(model.prompt_tokens);
    m->set_completion_tokens(model.completion_tokens);
  }
}

v1::Plan ToProto(Plan plan) {
  switch (plan) {
    case Plan::kFree: return v1::FREE;
    case Plan::kBasic: return v1::BASIC;
    case Plan::kPremium: return v1::PREMIUM;
  }
  return v1::PLAN_UNSPECIFIED;
}

std::optional<Plan> FromProto(v1::Plan plan) {
  switch (plan) {
    case v1::FREE: return Plan::kFree;
    case v1::BASIC: return Plan::kBasic;
    case v1::PREMIUM: return Plan::kPremium;
    default: return std::nullopt;
  }
}

}  // namespace coach
