// CoreConfig: the settings of the rules (input limits, plans, credit holds),
// with their defaults. coach-server's whole configuration (server/app/
// server_config.h) extends it; server/app/server_flags.cc exposes each
// setting as a flag and an environment variable, so nothing in the rules
// hard-codes a limit or a plan.
#ifndef COACH_SERVER_CORE_CONFIG_H_
#define COACH_SERVER_CORE_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace coach {

// Input limits. Lengths count characters (Unicode code points), as a user
// would, not bytes.
struct Limits {
  int max_user_id_length = 128;
  int max_session_id_length = 64;
  int max_message_length = 4000;
  int max_title_length = 200;
  // A session started by a send is titled from its first message, cut here.
  int auto_title_length = 60;
  // `lastMessage` and `preview` are the last message, cut here.
  int preview_length = 120;
  // GetHistory's `limit` when absent, and its cap.
  int history_default_limit = 50;
  int history_max_limit = 100;
  // ListSessions returns at most this many sessions (newest first).
  int max_sessions_listed = 500;
  // GetSession returns at most this many messages (the newest).
  int max_messages_per_session = 1000;
  // A paged list (`pageSize`/`pageToken`: ListSessions, GetSession's
  // messages, GetHistory) returns at most this many rows per page; a larger
  // pageSize is lowered to it (AIP-158).
  int max_page_size = 1000;
  // How many of the newest messages the coach sees as context.
  int coach_context_messages = 20;
  // GrantCredits adds at most this many credits at once (a typo guard).
  int max_credit_grant = 10000;
  // No balance grows past this, however many grants add up: it stays far
  // inside the 32-bit counts of the API.
  int max_credit_balance = 1000000;
  // An Idempotency-Key is 1 to this many printable ASCII characters.
  int max_idempotency_key_length = 255;
  // A user data export reads sessions and messages this many at a time
  // (its memory per call is about one such page).
  int export_page_size = 200;
};

// Monthly credits per plan; PREMIUM is unlimited.
struct PlanCredits {
  int32_t free_monthly_credits = 5;
  int32_t basic_monthly_credits = 50;
};

// What one user may consume, whatever the plan (PREMIUM's unlimited credits
// are not unlimited speed). Decided in the store, under the user's row
// lock (Store::AdmitSend): they hold for every coach-server sharing the
// database.
struct UserLimits {
  // Sends per user per minute: a bucket of this many sends refilled evenly
  // over a minute (so a burst of this many, then one every 60/N s).
  int send_rate_per_minute = 20;
  // Sends of one user in flight at once (the coach writing).
  int max_concurrent_sends_per_user = 2;
  // Sessions created per user per minute, by CreateSession or by a send
  // without sessionId; a bucket as for sends.
  int session_create_rate_per_minute = 10;
  // Sessions one user may own. Equal to Limits::max_sessions_listed by
  // default, so that no session is ever pushed out of the capped list.
  int max_sessions_per_user = 500;
};

struct CoreConfig {
  Limits limits;
  UserLimits user_limits;
  PlanCredits plans;
  // A credit reserved for a send is released after this even if the server
  // died mid-send. Longer than any coach reply may take.
  absl::Duration credit_reservation_ttl = absl::Minutes(5);
  // A send's idempotency key, and the response replayed to its retries, are
  // kept this long (then the key may run a new send).
  absl::Duration idempotency_ttl = absl::Hours(24);
  // Expired keys deleted per purge transaction (Chat::PurgeExpiredKeys).
  int idempotency_purge_batch = 1000;
  // Conversations last updated longer ago than this are deleted
  // (UserData::PurgeExpiredSessions); zero: kept until deleted.
  absl::Duration session_retention = absl::ZeroDuration();
  // Sessions deleted per retention purge transaction.
  int retention_purge_batch = 500;
};

}  // namespace coach

#endif  // COACH_SERVER_CORE_CONFIG_H_
