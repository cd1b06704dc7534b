#include "server/app/server_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "base/env_flags.h"

namespace {
// Defaults come from Config itself: one place for every default.
const coach::Config kDefaults;
}  // namespace

ABSL_FLAG(std::string, db_path, kDefaults.db_path,
          "SQLite database file (created if missing). Env: COACH_DB_PATH");
ABSL_FLAG(std::string, grpc_listen, kDefaults.grpc_listen,
          "gRPC listen address. Env: COACH_GRPC_LISTEN");
ABSL_FLAG(int, grpc_max_concurrent_streams,
          kDefaults.grpc_max_concurrent_streams,
          "Concurrent calls per client connection. "
          "Env: COACH_GRPC_MAX_CONCURRENT_STREAMS");
ABSL_FLAG(std::string, admin_token, "",
          "Bearer token for the admin RPCs; empty disables them. "
          "Env: COACH_ADMIN_TOKEN");
ABSL_FLAG(std::string, openai_api_key, "",
          "OpenAI API key; empty: the offline coach answers. Prefer the "
          "environment (a flag shows in `ps`). Env: OPENAI_API_KEY");
ABSL_FLAG(std::string, openai_base_url, kDefaults.openai.base_url,
          "OpenAI-compatible API base URL. Env: OPENAI_BASE_URL");
ABSL_FLAG(std::string, openai_model, kDefaults.openai.model,
          "Chat model. Env: OPENAI_MODEL");
ABSL_FLAG(int, openai_max_tokens, kDefaults.openai.max_tokens,
          "max_tokens of a reply. Env: OPENAI_MAX_TOKENS");
ABSL_FLAG(double, openai_temperature, kDefaults.openai.temperature,
          "Sampling temperature. Env: OPENAI_TEMPERATURE");
ABSL_FLAG(absl::Duration, openai_connect_timeout,
          kDefaults.openai.connect_timeout,
          "Connect timeout. Env: OPENAI_CONNECT_TIMEOUT");
ABSL_FLAG(absl::Duration, openai_timeout, kDefaults.openai.timeout,
          "Whole-reply timeout, retries included. Env: OPENAI_TIMEOUT");
ABSL_FLAG(int, openai_max_retries, kDefaults.openai.max_retries,
          "Retries on connection errors, 408, 409, 429 and 5xx. "
          "Env: OPENAI_MAX_RETRIES");
ABSL_FLAG(absl::Duration, openai_retry_base_delay,
          kDefaults.openai.retry_base_delay,
          "First retry's backoff (doubles each retry). "
          "Env: OPENAI_RETRY_BASE_DELAY");
ABSL_FLAG(absl::Duration, openai_retry_max_delay,
          kDefaults.openai.retry_max_delay,
          "Longest computed backoff. Env: OPENAI_RETRY_MAX_DELAY");
ABSL_FLAG(absl::Duration, openai_max_retry_after,
          kDefaults.openai.max_retry_after,
          "Longest Retry-After honoured. Env: OPENAI_MAX_RETRY_AFTER");
ABSL_FLAG(int, openai_context_tokens, kDefaults.openai.context_token_budget,
          "Token budget of the context sent. Env: OPENAI_CONTEXT_TOKENS");
ABSL_FLAG(int, openai_max_idle_connections,
          kDefaults.openai.max_idle_connections,
          "Idle keep-alive connections kept to the API. "
          "Env: OPENAI_MAX_IDLE_CONNECTIONS");
ABSL_FLAG(int, openai_max_answer_bytes, kDefaults.openai.max_answer_bytes,
          "Largest answer read from the API. Env: OPENAI_MAX_ANSWER_BYTES");
ABSL_FLAG(std::string, openai_proxy, kDefaults.openai.proxy,
          "Egress proxy for the API (http://host:port); empty: direct, "
          "whatever http_proxy says. Env: OPENAI_PROXY");
ABSL_FLAG(int, openai_reply_threads, kDefaults.openai.reply_threads,
          "Threads handing AI replies back to be stored. "
          "Env: OPENAI_REPLY_THREADS");
ABSL_FLAG(int, max_user_id_length, kDefaults.limits.max_user_id_length,
          "Longest userId, in characters. Env: COACH_MAX_USER_ID_LENGTH");
ABSL_FLAG(int, max_session_id_length, kDefaults.limits.max_session_id_length,
          "Longest sessionId accepted. Env: COACH_MAX_SESSION_ID_LENGTH");
ABSL_FLAG(int, max_message_length, kDefaults.limits.max_message_length,
          "Longest message, in characters. Env: COACH_MAX_MESSAGE_LENGTH");
ABSL_FLAG(int, max_title_length, kDefaults.limits.max_title_length,
          "Longest session title, in characters. Env: COACH_MAX_TITLE_LENGTH");
ABSL_FLAG(int, auto_title_length, kDefaults.limits.auto_title_length,
          "Length of a title made from a first message. "
          "Env: COACH_AUTO_TITLE_LENGTH");
ABSL_FLAG(int, preview_length, kDefaults.limits.preview_length,
          "Length of lastMessage/preview. Env: COACH_PREVIEW_LENGTH");
ABSL_FLAG(int, history_default_limit, kDefaults.limits.history_default_limit,
          "Sessions in the history when no limit is given. "
          "Env: COACH_HISTORY_DEFAULT_LIMIT");
ABSL_FLAG(int, history_max_limit, kDefaults.limits.history_max_limit,
          "Cap on the history's limit. Env: COACH_HISTORY_MAX_LIMIT");
ABSL_FLAG(int, max_sessions_listed, kDefaults.limits.max_sessions_listed,
          "Sessions returned by ListSessions at most. "
          "Env: COACH_MAX_SESSIONS_LISTED");
ABSL_FLAG(int, max_messages_per_session,
          kDefaults.limits.max_messages_per_session,
          "Messages returned by GetSession at most (the newest). "
          "Env: COACH_MAX_MESSAGES_PER_SESSION");
ABSL_FLAG(int, coach_context_messages, kDefaults.limits.coach_context_messages,
          "Previous messages given to the coach as context. "
          "Env: COACH_CONTEXT_MESSAGES");
ABSL_FLAG(int, max_credit_balance, kDefaults.limits.max_credit_balance,
          "Largest credit balance grants may build. "
          "Env: COACH_MAX_CREDIT_BALANCE");
ABSL_FLAG(int, max_credit_grant, kDefaults.limits.max_credit_grant,
          "Most credits one GrantCredits call may add. "
          "Env: COACH_MAX_CREDIT_GRANT");
ABSL_FLAG(int, free_monthly_credits, kDefaults.plans.free_monthly_credits,
          "Monthly credits of the FREE plan. Env: COACH_FREE_MONTHLY_CREDITS");
ABSL_FLAG(int, basic_monthly_credits, kDefaults.plans.basic_monthly_credits,
          "Monthly credits of the BASIC plan. "
          "Env: COACH_BASIC_MONTHLY_CREDITS");
ABSL_FLAG(absl::Duration, shutdown_grace, kDefaults.shutdown_grace,
          "Time in-flight calls get to finish on SIGTERM/SIGINT. "
          "Env: COACH_SHUTDOWN_GRACE");
ABSL_FLAG(absl::Duration, credit_reservation_ttl,
          kDefaults.credit_reservation_ttl,
          "A credit held by a send is freed after this if the server dies "
          "mid-send. Env: COACH_CREDIT_RESERVATION_TTL");
ABSL_FLAG(int, sqlite_busy_timeout_ms, kDefaults.sqlite_busy_timeout_ms,
          "SQLite busy timeout, ms. Env: COACH_SQLITE_BUSY_TIMEOUT_MS");
ABSL_FLAG(int, sqlite_reader_connections, kDefaults.sqlite_reader_connections,
          "SQLite connections for parallel reads. "
          "Env: COACH_SQLITE_READER_CONNECTIONS");

namespace coach {

absl::StatusOr<Config> LoadServerConfig(int argc, char** argv) {
  const std::vector<EnvFlag> bindings = {
      {"db_path", "COACH_DB_PATH"},
      {"grpc_listen", "COACH_GRPC_LISTEN"},
      {"grpc_max_concurrent_streams", "COACH_GRPC_MAX_CONCURRENT_STREAMS"},
      {"admin_token", "COACH_ADMIN_TOKEN"},
      {"openai_api_key", "OPENAI_API_KEY"},
      {"openai_base_url", "OPENAI_BASE_URL"},
      {"openai_model", "OPENAI_MODEL"},
      {"openai_max_tokens", "OPENAI_MAX_TOKENS"},
      {"openai_temperature", "OPENAI_TEMPERATURE"},
      {"openai_connect_timeout", "OPENAI_CONNECT_TIMEOUT"},
      {"openai_timeout", "OPENAI_TIMEOUT"},
      {"openai_max_retries", "OPENAI_MAX_RETRIES"},
      {"openai_retry_base_delay", "OPENAI_RETRY_BASE_DELAY"},
      {"openai_retry_max_delay", "OPENAI_RETRY_MAX_DELAY"},
      {"openai_max_retry_after", "OPENAI_MAX_RETRY_AFTER"},
      {"openai_context_tokens", "OPENAI_CONTEXT_TOKENS"},
      {"openai_max_idle_connections", "OPENAI_MAX_IDLE_CONNECTIONS"},
      {"openai_max_answer_bytes", "OPENAI_MAX_ANSWER_BYTES"},
      {"openai_proxy", "OPENAI_PROXY"},
      {"openai_reply_threads", "OPENAI_REPLY_THREADS"},
      {"max_user_id_length", "COACH_MAX_USER_ID_LENGTH"},
      {"max_session_id_length", "COACH_MAX_SESSION_ID_LENGTH"},
      {"max_message_length", "COACH_MAX_MESSAGE_LENGTH"},
      {"max_title_length", "COACH_MAX_TITLE_LENGTH"},
      {"auto_title_length", "COACH_AUTO_TITLE_LENGTH"},
      {"preview_length", "COACH_PREVIEW_LENGTH"},
      {"history_default_limit", "COACH_HISTORY_DEFAULT_LIMIT"},
      {"history_max_limit", "COACH_HISTORY_MAX_LIMIT"},
      {"max_sessions_listed", "COACH_MAX_SESSIONS_LISTED"},
      {"max_messages_per_session", "COACH_MAX_MESSAGES_PER_SESSION"},
      {"coach_context_messages", "COACH_CONTEXT_MESSAGES"},
      {"max_credit_grant", "COACH_MAX_CREDIT_GRANT"},
      {"max_credit_balance", "COACH_MAX_CREDIT_BALANCE"},
      {"free_monthly_credits", "COACH_FREE_MONTHLY_CREDITS"},
      {"basic_monthly_credits", "COACH_BASIC_MONTHLY_CREDITS"},
      {"shutdown_grace", "COACH_SHUTDOWN_GRACE"},
      {"credit_reservation_ttl", "COACH_CREDIT_RESERVATION_TTL"},
      {"sqlite_busy_timeout_ms", "COACH_SQLITE_BUSY_TIMEOUT_MS"},
      {"sqlite_reader_connections", "COACH_SQLITE_READER_CONNECTIONS"},
  };
  if (absl::Status parsed = ParseFlagsAndEnvironment(argc, argv, bindings);
      !parsed.ok()) {
    return parsed;
  }
  Config config;
  config.db_path = absl::GetFlag(FLAGS_db_path);
  config.grpc_listen = absl::GetFlag(FLAGS_grpc_listen);
  config.grpc_max_concurrent_streams =
      absl::GetFlag(FLAGS_grpc_max_concurrent_streams);
  config.admin_token = absl::GetFlag(FLAGS_admin_token);
  OpenAiOptions& openai = config.openai;
  openai.api_key = absl::GetFlag(FLAGS_openai_api_key);
  openai.base_url = absl::GetFlag(FLAGS_openai_base_url);
  openai.model = absl::GetFlag(FLAGS_openai_model);
  openai.max_tokens = absl::GetFlag(FLAGS_openai_max_tokens);
  openai.temperature = absl::GetFlag(FLAGS_openai_temperature);
  openai.connect_timeout = absl::GetFlag(FLAGS_openai_connect_timeout);
  openai.timeout = absl::GetFlag(FLAGS_openai_timeout);
  openai.max_retries = absl::GetFlag(FLAGS_openai_max_retries);
  openai.retry_base_delay = absl::GetFlag(FLAGS_openai_retry_base_delay);
  openai.retry_max_delay = absl::GetFlag(FLAGS_openai_retry_max_delay);
  openai.max_retry_after = absl::GetFlag(FLAGS_openai_max_retry_after);
  openai.context_token_budget = absl::GetFlag(FLAGS_openai_context_tokens);
  openai.max_idle_connections =
      absl::GetFlag(FLAGS_openai_max_idle_connections);
  openai.max_answer_bytes = absl::GetFlag(FLAGS_openai_max_answer_bytes);
  openai.proxy = absl::GetFlag(FLAGS_openai_proxy);
  openai.reply_threads = absl::GetFlag(FLAGS_openai_reply_threads);
  Limits& limits = config.limits;
  limits.max_user_id_length = absl::GetFlag(FLAGS_max_user_id_length);
  limits.max_session_id_length = absl::GetFlag(FLAGS_max_session_id_length);
  limits.max_message_length = absl::GetFlag(FLAGS_max_message_length);
  limits.max_title_length = absl::GetFlag(FLAGS_max_title_length);
  limits.auto_title_length = absl::GetFlag(FLAGS_auto_title_length);
  limits.preview_length = absl::GetFlag(FLAGS_preview_length);
  limits.history_default_limit = absl::GetFlag(FLAGS_history_default_limit);
  limits.history_max_limit = absl::GetFlag(FLAGS_history_max_limit);
  limits.max_sessions_listed = absl::GetFlag(FLAGS_max_sessions_listed);
  limits.max_messages_per_session =
      absl::GetFlag(FLAGS_max_messages_per_session);
  limits.coach_context_messages = absl::GetFlag(FLAGS_coach_context_messages);
  limits.max_credit_grant = absl::GetFlag(FLAGS_max_credit_grant);
  limits.max_credit_balance = absl::GetFlag(FLAGS_max_credit_balance);
  config.plans.free_monthly_credits = absl::GetFlag(FLAGS_free_monthly_credits);
  config.plans.basic_monthly_credits =
      absl::GetFlag(FLAGS_basic_monthly_credits);
  config.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  config.credit_reservation_ttl = absl::GetFlag(FLAGS_credit_reservation_ttl);
  config.sqlite_busy_timeout_ms = absl::GetFlag(FLAGS_sqlite_busy_timeout_ms);
  config.sqlite_reader_connections =
      absl::GetFlag(FLAGS_sqlite_reader_connections);
  if (absl::Status valid = CheckConfig(config); !valid.ok()) return valid;
  return config;
}

absl::Status CheckConfig(const Config& config) {
  const Limits& l = config.limits;
  const std::pair<const char*, int> positive[] = {
      {"max_user_id_length", l.max_user_id_length},
      {"max_session_id_length", l.max_session_id_length},
      {"max_message_length", l.max_message_length},
      {"max_title_length", l.max_title_length},
      {"auto_title_length", l.auto_title_length},
      {"preview_length", l.preview_length},
      {"history_default_limit", l.history_default_limit},
      {"history_max_limit", l.history_max_limit},
      {"max_sessions_listed", l.max_sessions_listed},
      {"max_messages_per_session", l.max_messages_per_session},
      {"max_credit_grant", l.max_credit_grant},
      {"max_credit_balance", l.max_credit_balance},
      {"sqlite_reader_connections", config.sqlite_reader_connections},
      {"grpc_max_concurrent_streams", config.grpc_max_concurrent_streams},
  };
  for (const auto& [name, value] : positive) {
    if (value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " must be positive"));
    }
  }
  if (l.coach_context_messages < 0 || config.plans.free_monthly_credits < 0 ||
      config.plans.basic_monthly_credits < 0 ||
      config.sqlite_busy_timeout_ms < 0) {
    return absl::InvalidArgumentError(
        "context, credit and timeout settings must not be negative");
  }
  // A hold that expires at once would hold nothing: sends beyond the
  // balance would reach the coach before being refused.
  if (config.credit_reservation_ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--credit_reservation_ttl must be positive");
  }
  const OpenAiOptions& ai = config.openai;
  if (ai.max_tokens <= 0 || ai.context_token_budget <= 0 ||
      ai.max_retries < 0 || ai.max_idle_connections < 0 ||
      ai.max_answer_bytes <= 0 || ai.reply_threads <= 0 ||
      ai.temperature < 0 || ai.temperature > 2 ||
      ai.timeout <= absl::ZeroDuration() ||
      ai.connect_timeout <= absl::ZeroDuration() ||
      ai.retry_base_delay < absl::ZeroDuration() ||
      ai.retry_max_delay < absl::ZeroDuration() ||
      ai.max_retry_after < absl::ZeroDuration() || ai.model.empty() ||
      ai.base_url.empty()) {
    return absl::InvalidArgumentError(
        "OpenAI settings: tokens and timeouts must be positive, retries not "
        "negative, temperature in [0, 2], model and base URL set");
  }
  // A hold must outlive the slowest reply, or the credit would be freed
  // while the coach is still writing.
  if (config.credit_reservation_ttl <= ai.timeout) {
    return absl::InvalidArgumentError(
        "--credit_reservation_ttl must exceed --openai_timeout");
  }
  if (config.shutdown_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--shutdown_grace must not be negative");
  }
  if (l.history_default_limit > l.history_max_limit) {
    return absl::InvalidArgumentError(
        "--history_default_limit must not exceed --history_max_limit");
  }
  if (config.db_path.empty() || config.grpc_listen.empty()) {
    return absl::InvalidArgumentError("--db_path and --grpc_listen are required");
  }
  return absl::OkStatus();
}

}  // namespace coach
