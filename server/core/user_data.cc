#include "server/core/user_data.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "server/core/errors.h"
#include "server/core/page_token.h"
#include "server/core/validation.h"
#include "storage/record_columns.h"

namespace coach {
namespace {

using json = nlohmann::ordered_json;

// As the API's JSON prints a Timestamp (protobuf's mapping), at the
// store's precision: UTC, microseconds at most, and 0, 3 or 6 fraction
// digits ("2026-12-07T10:00:00Z", "…:00.250Z", "…:00.250123Z").
std::string Rfc3339(absl::Time t) {
  const int64_t unix_micros = absl::ToUnixMicros(t);  // rounded down
  t = absl::FromUnixMicros(unix_micros);
  const int64_t micros = ((unix_micros % 1000000) + 1000000) % 1000000;
  const char* format = micros == 0          ? "%Y-%m-%dT%H:%M:%SZ"
                       : micros % 1000 == 0 ? "%Y-%m-%dT%H:%M:%E3SZ"
                                            : "%Y-%m-%dT%H:%M:%E6SZ";
  return absl::FormatTime(format, t, absl::UTCTimeZone());
}

// A 64-bit count, as the API's JSON prints one (a string: JavaScript's
// numbers are exact to 2^53 only).
std::string Int64Json(int64_t value) { return absl::StrCat(value); }

// Replace, not throw: every text was checked as UTF-8 when stored, the
// model names (the provider's) were not.
std::string ExportText(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

json UsageJson(const UsageRecord& usage) {
  json by_model = json::array();
  for (const ModelUsageRecord& model : usage.by_model) {
    by_model.push_back(
        {{"model", model.model},
         {"replies", model.replies},
         {"promptTokens", Int64Json(model.prompt_tokens)},
         {"completionTokens", Int64Json(model.completion_tokens)}});
  }
  return {{"month", usage.month},
          {"replies", usage.replies},
          {"creditsCharged", usage.credits_charged},
          {"promptTokens", Int64Json(usage.prompt_tokens)},
          {"completionTokens", Int64Json(usage.completion_tokens)},
          {"byModel", std::move(by_model)}};
}

json ExportMessageJson(const MessageRecord& m) {
  json out = {{"id", m.id},
              {"role", RoleName(m.role)},
              {"content", m.content},
              {"createdAt", Rfc3339(m.created_at)}};
  if (!m.model.empty()) out["model"] = m.model;
  if (m.usage.has_value()) {
    out["promptTokens"] = Int64Json(m.usage->prompt_tokens);
    out["completionTokens"] = Int64Json(m.usage->completion_tokens);
  }
  return out;
}

// The export as a small state machine: the head (account and usage), then
// each session's head, its messages a page at a time, its end, and the end
// of the document. Sessions and messages are walked with the store's
// keyset pages, so a piece is at most one page of messages.
class StoreExport final : public UserExport {
 public:
  StoreExport(Store& store, std::string user_id, std::string head,
              int page_size)
      : store_(store),
        user_id_(std::move(user_id)),
        head_(std::move(head)),
        page_size_(page_size) {}

  absl::StatusOr<std::optional<std::string>> Next() override {
    if (!head_.empty())
      return std::optional<std::string>(std::exchange(head_, ""));
    if (done_) return std::optional<std::string>();
    std::string piece;
    // Messages of the current session, a page at a time.
    if (session_.has_value()) {
      auto page =
          store_.ListMessagesPage(session_->id, after_message_, page_size_);
      if (!page.ok()) return ToPublicError(page.status(), "export messages");
      for (const MessageRecord& m : page->messages) {
        absl::StrAppend(&piece, first_message_ ? "" : ",",
                        ExportText(ExportMessageJson(m)));
        first_message_ = false;
      }
      after_message_ = page->next;
      if (page->next.has_value()) return std::optional<std::string>(piece);
      piece += "]}";
      session_.reset();
    }
    // The next session's head, or the end.
    if (sessions_.empty() && more_sessions_) {
      auto page = store_.ListSessionsPage(user_id_, after_session_, page_size_);
      if (!page.ok()) return ToPublicError(page.status(), "export sessions");
      sessions_ = std::move(page->sessions);
      std::reverse(sessions_.begin(), sessions_.end());  // popped from the back
      after_session_ = page->next;
      more_sessions_ = page->next.has_value();
    }
    if (sessions_.empty()) {
      done_ = true;
      piece += "]}";
      return std::optional<std::string>(piece);
    }
    session_ = std::move(sessions_.back());
    sessions_.pop_back();
    json head = {{"id", session_->id},
                 {"title", session_->title},
                 {"createdAt", Rfc3339(session_->created_at)},
                 {"updatedAt", Rfc3339(session_->updated_at)}};
    std::string text = ExportText(head);
    text.pop_back();  // the closing brace: the messages follow
    absl::StrAppend(&piece, first_session_ ? "" : ",", text, ",\"messages\":[");
    first_session_ = false;
    first_message_ = true;
    after_message_.reset();
    return std::optional<std::string>(piece);
  }

 private:
  Store& store_;
  const std::string user_id_;
  std::string head_;
  const int page_size_;
  // The sessions of the current page not yet exported (next at the back).
  std::vector<SessionRecord> sessions_;
  std::optional<SessionKey> after_session_;
  bool more_sessions_ = true;
  bool first_session_ = true;
  // The session being exported, and where its messages are.
  std::optional<SessionRecord> session_;
  std::optional<int64_t> after_message_;
  bool first_message_ = true;
  bool done_ = false;
};

}  // namespace

UserData::UserData(const CoreConfig& config, Store& store, const Clock& clock)
    : config_(config), store_(store), clock_(clock), credits_(config.plans) {}

absl::StatusOr<std::string> UserData::MonthOf(absl::string_view month) const {
  if (month.empty()) return credits_.TermsAt(clock_.Now()).period;
  absl::Time parsed;
  std::string error;
  if (month.size() != 7 ||
      !absl::ParseTime("%Y-%m", month, absl::UTCTimeZone(), &parsed, &error)) {
    return InvalidArgumentError(
        "month",
        "Le paramètre « month » doit être un mois au format "
        "AAAA-MM (par exemple 2026-12).");
  }
  return std::string(month);
}

absl::StatusOr<UsageRecord> UserData::GetUsage(absl::string_view user_id,
                                               absl::string_view month) {
  COACH_RETURN_IF_ERROR(ValidateUserId(user_id, config_.limits));
  COACH_ASSIGN_OR_RETURN(std::string valid_month, MonthOf(month));
  auto usage = store_.GetUsage(user_id, valid_month);
  if (!usage.ok()) return ToPublicError(usage.status(), "get usage");
  return usage;
}

absl::StatusOr<UsageList> UserData::ListUsage(absl::string_view month,
                                              const PageRequest& page) {
  COACH_ASSIGN_OR_RETURN(std::string valid_month, MonthOf(month));
  COACH_ASSIGN_OR_RETURN(
      int size, ValidatePageSize(page.page_size, config_.limits.max_page_size,
                                 config_.limits));
  std::optional<std::string> after;
  if (!page.page_token.empty()) {
    std::optional<PageCursor> cursor = DecodePageToken(page.page_token);
    std::optional<std::pair<std::string, std::string>> scope;
    if (cursor.has_value() && cursor->list == PagedList::kUsage) {
      scope = ParseUsageScope(cursor->scope);
    }
    if (!scope.has_value() || scope->first != valid_month) {
      return InvalidArgumentError(
          "pageToken",
          "Le paramètre « pageToken » est invalide : utilisez le "
          "« nextPageToken » d'une réponse précédente pour le même mois.");
    }
    after = scope->second;
  }
  auto users = store_.ListUsage(valid_month, after, size);
  if (!users.ok()) return ToPublicError(users.status(), "list usage");
  UsageList list{.users = std::move(users->users), .next_page_token = ""};
  if (users->next.has_value()) {
    list.next_page_token = EncodePageToken(
        PageCursor{.list = PagedList::kUsage,
                   .scope = UsageScope(valid_month, *users->next),
                   .time_micros = 0,
                   .seq = 0});
  }
  return list;
}

absl::StatusOr<std::unique_ptr<UserExport>> UserData::Export(
    absl::string_view user_id) {
  COACH_RETURN_IF_ERROR(ValidateUserId(user_id, config_.limits));
  const absl::Time now = clock_.Now();
  auto user = store_.FindUser(user_id);
  if (!user.ok()) return ToPublicError(user.status(), "export user");
  const UserRecord record =
      user->value_or(UserRecord{.id = std::string(user_id),
                                .plan = credits_.NewUserPlan(),
                                .status = UserStatus::kActive,
                                .credits = 0,
                                .credit_period = "",
                                .created_at = now});
  auto months = store_.ListUserUsage(user_id);
  if (!months.ok()) return ToPublicError(months.status(), "export usage");
  json head = {{"userId", record.id},
               {"exportedAt", Rfc3339(now)},
               {"plan", PlanName(record.plan)},
               {"status", "ACTIVE"}};
  if (std::optional<int32_t> remaining = credits_.RemainingCredits(record, now);
      remaining.has_value()) {
    head["remainingCredits"] = *remaining;
  }
  json usage = json::array();
  for (const UsageRecord& month : *months) usage.push_back(UsageJson(month));
  head["usage"] = std::move(usage);
  std::string text = ExportText(head);
  text.pop_back();  // the closing brace: the sessions follow
  text += ",\"sessions\":[";
  return std::make_unique<StoreExport>(store_, std::string(user_id),
                                       std::move(text),
                                       config_.limits.export_page_size);
}

absl::StatusOr<ErasedData> UserData::Erase(absl::string_view user_id) {
  COACH_RETURN_IF_ERROR(ValidateUserId(user_id, config_.limits));
  auto erased = store_.EraseUserData(user_id);
  if (!erased.ok()) return ToPublicError(erased.status(), "erase user data");
  return erased;
}

absl::StatusOr<int> UserData::PurgeExpiredSessions(int batches) {
  if (config_.session_retention <= absl::ZeroDuration()) return 0;
  const absl::Time cutoff = clock_.Now() - config_.session_retention;
  const int batch = config_.retention_purge_batch;
  int purged = 0;
  for (int i = 0; i < batches; ++i) {
    absl::StatusOr<int> deleted = store_.PurgeSessions(cutoff, batch);
    if (!deleted.ok()) return deleted.status();
    purged += *deleted;
    if (*deleted < batch) break;
  }
  return purged;
}

}  // namespace coach
