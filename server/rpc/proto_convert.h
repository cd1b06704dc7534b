// Conversions between the domain's records and the coach.v1 messages. Pure
// data mapping: no rule is decided here.
#ifndef COACH_SERVER_RPC_PROTO_CONVERT_H_
#define COACH_SERVER_RPC_PROTO_CONVERT_H_

#include <optional>

#include "absl/time/time.h"
#include "coach/v1/chat.pb.h"
#include "coach/v1/user.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "server/core/accounts.h"
#include "server/core/chat.h"

namespace coach {

void ToProto(absl::Time time, google::protobuf::Timestamp* out);
void ToProto(const MessageRecord& message, v1::ChatMessage* out);
void ToProto(const SessionRecord& session, v1::SessionSummary* out);
void ToProto(const SessionRecord& session, v1::HistoryEntry* out);
// The session without messages (fill them with ToProto per message).
void ToProto(const SessionRecord& session, v1::Session* out);
void ToProto(const UserStats& stats, v1::UserStats* out);
void ToProto(const UsageRecord& usage, v1::Usage* out);

v1::Plan ToProto(Plan plan);
// nullopt for PLAN_UNSPECIFIED and unknown values.
std::optional<Plan> FromProto(v1::Plan plan);

}  // namespace coach

#endif  // COACH_SERVER_RPC_PROTO_CONVERT_H_
