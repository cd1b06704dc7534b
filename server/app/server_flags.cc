#include "server/app/server_flags.h"

#include <vector>

#include "server/app/coach_setup.h"

namespace coach {
namespace {
constexpr EnumName<AuthMode> kAuthModes[] = {{AuthMode::kNone, "none"},
                                             {AuthMode::kJwt, "jwt"}};
}  // namespace

bool AbslParseFlag(absl::string_view text, AuthMode* mode, std::string* error) {
  return ParseEnumName(text, kAuthModes, mode, error);
}
std::string AbslUnparseFlag(AuthMode mode) {
  return EnumNameOf(mode, kAuthModes);
}

namespace {

// A histogram's bucket bounds: increasing durations.
struct DurationBuckets {
  std::string operator()(const std::vector<std::string>& buckets) const {
    const absl::StatusOr<std::vector<double>> seconds = BucketSeconds(buckets);
    return seconds.ok() ? "" : std::string(seconds.status().message());
  }
};
constexpr DurationBuckets kDurationBuckets;

// Every setting of coach-server, bound to its field of `c`. The default
// shown by --help is the field's value in a default-constructed Config.
std::vector<Setting> ServerSettings(Config& c) {
  OpenAiOptions& ai = c.openai;
  Limits& l = c.limits;
  UserLimits& u = c.user_limits;
  std::vector<Setting> rows = {
      Essential({"db_path", "COACH_DB_PATH", &c.db_path, kNonEmpty,
                 "SQLite database file, created and migrated at start (when "
                 "`COACH_DATABASE_URL` is empty)"}),
      Essential(Secret(
          {"database_url", "COACH_DATABASE_URL", &c.database_url, kAnyValue,
           "PostgreSQL instead of SQLite, for several servers on one "
           "database: a libpq URI `postgresql://user:password@host:5432/db`"
           " (migrated at start; the password is never logged)"})),
      {"postgres_pool_size", "COACH_POSTGRES_POOL_SIZE", &c.postgres_pool_size,
       kPositive,
       "PostgreSQL connections of this server, and threads running the "
       "calls' database work (calls wait for an idle one)"},
      {"postgres_max_attempts", "COACH_POSTGRES_MAX_ATTEMPTS",
       &c.postgres_max_attempts, kPositive,
       "Tries of a PostgreSQL transaction that meets a deadlock or a "
       "serialization failure"},
      {"instance", "COACH_INSTANCE", &c.instance, kAnyValue,
       "This server's stable name (unique among live servers); a restarted "
       "server frees the credit holds of its previous run. Empty: "
       "`<hostname>:<port>`"},
      Essential({"grpc_listen", "COACH_GRPC_LISTEN", &c.grpc_listen, kNonEmpty,
                 "gRPC listen address (`0.0.0.0:50051` to serve other hosts)"}),
      {"grpc_max_concurrent_streams", "COACH_GRPC_MAX_CONCURRENT_STREAMS",
       &c.grpc_max_concurrent_streams, kPositive,
       "Concurrent calls per client connection (the proxy uses one)"},
      {"grpc_keepalive_min_time", "COACH_GRPC_KEEPALIVE_MIN_TIME",
       &c.grpc_keepalive_min_time, kPositive,
       "Clients may send keepalive PINGs this often (with or without calls); "
       "more often is answered GOAWAY `too_many_pings`"},
      Essential(
          {"grpc_tls_cert", "COACH_GRPC_TLS_CERT", &c.grpc_tls_cert, kAnyValue,
           "TLS on the gRPC port: certificate chain (PEM, leaf first), with "
           "`COACH_GRPC_TLS_KEY`; empty: plaintext. Re-read when it changes"}),
      Essential({"grpc_tls_key", "COACH_GRPC_TLS_KEY", &c.grpc_tls_key,
                 kAnyValue,
                 "Private key (PEM) of `COACH_GRPC_TLS_CERT`; never logged"}),
      Essential(
          {"grpc_tls_client_ca", "COACH_GRPC_TLS_CLIENT_CA",
           &c.grpc_tls_client_ca, kAnyValue,
           "Mutual TLS: CA certificates (PEM) a client's certificate must "
           "chain "
           "to; a client without one is refused. Empty: no client certificate "
           "asked"}),
      {"grpc_tls_check_interval", "COACH_GRPC_TLS_CHECK_INTERVAL",
       &c.grpc_tls_check_interval, kPositive,
       "How often the TLS files are looked at for a change (whole seconds, "
       "at least 1s); a new handshake then uses them"},
      Essential(
          Secret({"admin_token", "COACH_ADMIN_TOKEN", &c.admin_token, kAnyValue,
                  "Bearer token of `SetPlan` / `GrantCredits`; empty: they are "
                  "refused"})),
      Essential(
          {"auth", "COACH_AUTH", &c.auth, kAnyValue,
           "`none`: a request's `userId` is taken on trust (any caller can act "
           "as any user); `jwt`: every public RPC needs `Authorization: Bearer "
           "<JWT>`, and the user is the token's"}),
      Essential(Secret({"jwt_secret", "COACH_JWT_SECRET", &c.jwt.hs256_secret,
                        kAnyValue,
                        "HS256 secret of the tokens; empty: HS256 refused"})),
      Essential({"jwt_jwks_file", "COACH_JWT_JWKS_FILE", &c.jwt.jwks_file,
                 kAnyValue,
                 "JWKS file of the RS256/ES256 public keys (by `kid`; re-read "
                 "when it "
                 "changes, and on SIGHUP)"}),
      {"jwt_jwks_check_interval", "COACH_JWT_JWKS_CHECK_INTERVAL",
       &c.jwt.jwks_check_interval, kNonNegative,
       "How often, at most, the JWKS file is looked at for a change; 0: "
       "only at start and on SIGHUP"},
      {"jwt_leeway", "COACH_JWT_LEEWAY", &c.jwt.leeway, kNonNegative,
       "Clock difference allowed with the tokens' issuer: on `exp`, and on "
       "`nbf` and `iat` ahead of this server's clock (further ahead: "
       "refused)"},
      {"jwt_max_lifetime", "COACH_JWT_MAX_LIFETIME", &c.jwt.max_lifetime,
       kPositive,
       "A token whose `exp` is further ahead than this (plus the leeway) is "
       "refused"},
      Essential({"jwt_issuer", "COACH_JWT_ISSUER", &c.jwt.issuer, kAnyValue,
                 "Required `iss`; empty: not checked"}),
      Essential({"jwt_audience", "COACH_JWT_AUDIENCE", &c.jwt.audience,
                 kAnyValue, "Required `aud`; empty: not checked"}),
      {"jwt_user_claim", "COACH_JWT_USER_CLAIM", &c.jwt.user_claim, kNonEmpty,
       "The claim that names the user"},
      {"jwt_admin_scope", "COACH_JWT_ADMIN_SCOPE", &c.jwt_admin_scope,
       kAnyValue,
       "A token with this scope (`scope` or `scp`) may call the admin RPCs "
       "too; empty: only the admin token"},
      Essential(
          Secret({"openai_api_key", "OPENAI_API_KEY", &ai.api_key, kAnyValue,
                  "OpenAI key; empty: the offline coach answers. Never logged, "
                  "stored or returned; prefer the variable (a flag shows in "
                  "`ps`)"})),
      {"openai_base_url", "OPENAI_BASE_URL", &ai.base_url, kNonEmpty,
       "Any OpenAI-compatible API (a gateway, a local model server)"},
      Essential(
          {"openai_model", "OPENAI_MODEL", &ai.model, kNonEmpty, "Chat model"}),
      {"openai_max_tokens", "OPENAI_MAX_TOKENS", &ai.max_tokens, kPositive,
       "`max_tokens` of a reply"},
      {"openai_temperature", "OPENAI_TEMPERATURE", &ai.temperature,
       InRange{0, 2}, "Sampling temperature, 0 to 2"},
      {"openai_connect_timeout", "OPENAI_CONNECT_TIMEOUT", &ai.connect_timeout,
       kPositive, "Per connection attempt"},
      {"openai_timeout", "OPENAI_TIMEOUT", &ai.timeout, kPositive,
       "A whole reply, retries and their waits included (below the proxy's "
       "upstream deadline)"},
      {"openai_max_retries", "OPENAI_MAX_RETRIES", &ai.max_retries,
       kNonNegative,
       "Retries on connection errors, 408, 409, 429 (not "
       "`insufficient_quota`) and 5xx"},
      {"openai_retry_base_delay", "OPENAI_RETRY_BASE_DELAY",
       &ai.retry_base_delay, kNonNegative,
       "First retry's backoff, doubled at each retry, less up to 25% "
       "of jitter"},
      {"openai_retry_max_delay", "OPENAI_RETRY_MAX_DELAY", &ai.retry_max_delay,
       kNonNegative, "Longest computed backoff"},
      {"openai_max_retry_after", "OPENAI_MAX_RETRY_AFTER", &ai.max_retry_after,
       kNonNegative,
       "Longest `Retry-After` honoured; a longer one gets the computed "
       "backoff"},
      {"openai_context_tokens", "OPENAI_CONTEXT_TOKENS",
       &ai.context_token_budget, kPositive,
       "Context budget: system prompt + newest history + the new message"},
      {"openai_max_idle_connections", "OPENAI_MAX_IDLE_CONNECTIONS",
       &ai.max_idle_connections, kNonNegative,
       "Keep-alive connections kept to the API; 0: a new connection per "
       "request"},
      {"openai_max_answer_bytes", "OPENAI_MAX_ANSWER_BYTES",
       &ai.max_answer_bytes, kPositive,
       "Larger answers are abandoned (INTERNAL), not buffered; bounds a "
       "streamed reply's text too"},
      {"openai_max_stream_line_bytes", "OPENAI_MAX_STREAM_LINE_BYTES",
       &ai.max_stream_line_bytes, kPositive,
       "Longest line of a streamed reply (StreamMessage); a longer one ends "
       "the reply (INTERNAL), unbuffered"},
      {"openai_proxy", "OPENAI_PROXY", &ai.proxy, kAnyValue,
       "Egress proxy `http://host:port`; empty: direct (`http_proxy` / "
       "`HTTPS_PROXY` are ignored)"},
      {"offline_stream_delay", "COACH_OFFLINE_STREAM_DELAY",
       &c.offline_stream_delay, kNonNegative,
       "Without an AI provider, the offline coach's streamed pieces (one per "
       "clause) come this far apart; `0`: all at once"},
      Essential(
          {"ai_providers_file", "COACH_AI_PROVIDERS_FILE", &c.ai_providers_file,
           kAnyValue,
           "A JSON array of OpenAI-compatible providers tried in order "
           "(`name`, `baseUrl`, `apiKeyEnv`, `model`, optional `maxTokens`, "
           "`temperature`, `timeout`); empty: the one of the `OPENAI_*` "
           "settings"}),
      {"ai_breaker_failures", "COACH_AI_BREAKER_FAILURES",
       &c.ai_breaker.failures, kPositive,
       "Failures in a row after which a provider is skipped for the "
       "cooldown"},
      {"ai_breaker_cooldown", "COACH_AI_BREAKER_COOLDOWN",
       &c.ai_breaker.cooldown, kPositive,
       "How long a failing provider is skipped; then one request probes it"},
      {"openai_reply_threads", "OPENAI_REPLY_THREADS", &ai.reply_threads,
       kPositive,
       "Threads handing replies back to be stored (off the AI client's I/O "
       "thread)"},
      {"max_user_id_length", "COACH_MAX_USER_ID_LENGTH", &l.max_user_id_length,
       kPositive, "Characters per `userId`"},
      {"max_session_id_length", "COACH_MAX_SESSION_ID_LENGTH",
       &l.max_session_id_length, kPositive, "Characters per `sessionId`"},
      {"max_message_length", "COACH_MAX_MESSAGE_LENGTH", &l.max_message_length,
       kPositive, "Characters (code points) per message"},
      {"max_title_length", "COACH_MAX_TITLE_LENGTH", &l.max_title_length,
       kPositive, "Characters per session title"},
      {"auto_title_length", "COACH_AUTO_TITLE_LENGTH", &l.auto_title_length,
       kPositive, "Characters of the title made from a first message"},
      {"preview_length", "COACH_PREVIEW_LENGTH", &l.preview_length, kPositive,
       "Characters of `lastMessage` / `preview`"},
      {"history_default_limit", "COACH_HISTORY_DEFAULT_LIMIT",
       &l.history_default_limit, kPositive,
       "History `limit` when absent (at most the cap)"},
      {"history_max_limit", "COACH_HISTORY_MAX_LIMIT", &l.history_max_limit,
       kPositive, "Cap on the history's `limit`"},
      {"max_sessions_listed", "COACH_MAX_SESSIONS_LISTED",
       &l.max_sessions_listed, kPositive,
       "Sessions returned by `ListSessions` at most (newest first)"},
      {"max_messages_per_session", "COACH_MAX_MESSAGES_PER_SESSION",
       &l.max_messages_per_session, kPositive,
       "Messages returned by `GetSession` at most (the newest)"},
      {"max_page_size", "COACH_MAX_PAGE_SIZE", &l.max_page_size, kPositive,
       "Rows per page of a paged list at most (a larger `pageSize` is "
       "lowered to it)"},
      Renamed({"context_messages", "COACH_CONTEXT_MESSAGES",
               &l.coach_context_messages, kNonNegative,
               "Previous messages the coach sees as context"},
              "coach_context_messages"),
      {"send_rate_per_minute", "COACH_SEND_RATE_PER_MINUTE",
       &u.send_rate_per_minute, kPositive,
       "Sends per user per minute, any plan (a burst of this many, then one "
       "every 60/N s); beyond: 429 `RATE_LIMITED`"},
      {"max_concurrent_sends_per_user", "COACH_MAX_CONCURRENT_SENDS_PER_USER",
       &u.max_concurrent_sends_per_user, kPositive,
       "Sends of one user in flight at once; beyond: 429 `RATE_LIMITED`"},
      {"session_create_rate_per_minute", "COACH_SESSION_CREATE_RATE_PER_MINUTE",
       &u.session_create_rate_per_minute, kPositive,
       "Sessions a user creates per minute (a send without `sessionId` "
       "counts); beyond: 429 `RATE_LIMITED`"},
      {"max_sessions_per_user", "COACH_MAX_SESSIONS_PER_USER",
       &u.max_sessions_per_user, kPositive,
       "Sessions one user may own (at most `COACH_MAX_SESSIONS_LISTED`); "
       "beyond: 409 `SESSION_LIMIT_REACHED`"},
      Essential({"free_monthly_credits", "COACH_FREE_MONTHLY_CREDITS",
                 &c.plans.free_monthly_credits, kNonNegative,
                 "Monthly credits of the FREE plan (PREMIUM: unlimited)"}),
      Essential({"basic_monthly_credits", "COACH_BASIC_MONTHLY_CREDITS",
                 &c.plans.basic_monthly_credits, kNonNegative,
                 "Monthly credits of the BASIC plan"}),
      {"max_credit_grant", "COACH_MAX_CREDIT_GRANT", &l.max_credit_grant,
       kPositive, "Most credits one `GrantCredits` adds"},
      {"max_credit_balance", "COACH_MAX_CREDIT_BALANCE", &l.max_credit_balance,
       kPositive, "No grant may push a balance past this (400 on `credits`)"},
      {"shutdown_grace", "COACH_SHUTDOWN_GRACE", &c.shutdown_grace,
       kNonNegative, "In-flight calls get this long on SIGTERM/SIGINT"},
      {"credit_reservation_ttl", "COACH_CREDIT_RESERVATION_TTL",
       &c.credit_reservation_ttl, kNonNegative,
       "A send of a server that died stops holding its credit and its place "
       "among the user's concurrent sends after this (sooner if it "
       "restarts); 0: the longest a send can take, `OPENAI_TIMEOUT` + 15s"},
      {"idempotency_ttl", "COACH_IDEMPOTENCY_TTL", &c.idempotency_ttl,
       kPositive,
       "An `Idempotency-Key` and the response replayed to its retries are "
       "kept this long"},
      {"idempotency_purge_interval", "COACH_IDEMPOTENCY_PURGE_INTERVAL",
       &c.idempotency_purge_interval, kPositive,
       "How often expired idempotency keys are deleted (in the background)"},
      {"idempotency_purge_batch", "COACH_IDEMPOTENCY_PURGE_BATCH",
       &c.idempotency_purge_batch, kPositive,
       "Expired idempotency keys deleted per transaction"},
      {"max_idempotency_key_length", "COACH_MAX_IDEMPOTENCY_KEY_LENGTH",
       &l.max_idempotency_key_length, kPositive,
       "Characters per `Idempotency-Key` (printable ASCII); beyond: 400"},
      {"session_retention", "COACH_SESSION_RETENTION", &c.session_retention,
       kNonNegative,
       "Conversations whose last message is older than this are deleted "
       "(e.g. `8760h`: a year); 0: kept until their user deletes them"},
      {"retention_purge_interval", "COACH_RETENTION_PURGE_INTERVAL",
       &c.retention_purge_interval, kPositive,
       "How often conversations past `COACH_SESSION_RETENTION` are deleted "
       "(in the background)"},
      {"memory_release_interval", "COACH_MEMORY_RELEASE_INTERVAL",
       &c.memory_release_interval, kNonNegative,
       "How often the allocator's free pages are given back to the OS (in "
       "the background), so memory comes back after a burst; 0: never"},
      {"retention_purge_batch", "COACH_RETENTION_PURGE_BATCH",
       &c.retention_purge_batch, kPositive,
       "Conversations deleted per retention purge transaction"},
      {"export_page_size", "COACH_EXPORT_PAGE_SIZE", &l.export_page_size,
       kPositive,
       "Sessions or messages a user data export reads at a time (its memory "
       "per call)"},
      {"sqlite_busy_timeout_ms", "COACH_SQLITE_BUSY_TIMEOUT_MS",
       &c.sqlite_busy_timeout_ms, kNonNegative,
       "SQLite busy timeout, in milliseconds"},
      {"sqlite_reader_connections", "COACH_SQLITE_READER_CONNECTIONS",
       &c.sqlite_reader_connections, kPositive,
       "SQLite connections for parallel reads"},
      Essential({"metrics_listen", "COACH_METRICS_LISTEN", &c.metrics_listen,
                 kAnyValue,
                 "HTTP address of `GET /metrics` (Prometheus text), e.g. "
                 "`127.0.0.1:9464`; empty: not served"}),
      {"metrics_rpc_buckets", "COACH_METRICS_RPC_BUCKETS",
       &c.metrics_rpc_buckets, kDurationBuckets,
       "Upper bounds of the RPC latency histogram's buckets (increasing "
       "durations)"},
      {"metrics_ai_buckets", "COACH_METRICS_AI_BUCKETS", &c.metrics_ai_buckets,
       kDurationBuckets,
       "Upper bounds of the AI reply latency histogram's buckets (increasing "
       "durations)"},
  };
  for (Setting& row : LogSettings(c.log)) rows.push_back(std::move(row));
  return rows;
}

// The rules that involve two settings.
absl::Status CrossCheck(const Config& config) {
  // TLS files read and checked now, as gRPC will read them: a typo, a key
  // of another certificate, one of the pair alone stop the start.
  if (!config.grpc_tls_cert.empty() || !config.grpc_tls_key.empty() ||
      !config.grpc_tls_client_ca.empty()) {
    if (absl::StatusOr<std::string> tls = CheckTlsFiles(GrpcTlsOptions(config));
        !tls.ok()) {
      return tls.status();
    }
  }
  // The providers' file, read and checked once at start.
  if (absl::Status providers = AiProviders(config).status(); !providers.ok()) {
    return providers;
  }
  // A hold must outlive the slowest reply, or the credit would be freed
  // while the coach is still writing.
  if (config.credit_reservation_ttl != absl::ZeroDuration() &&
      config.credit_reservation_ttl <= LongestReply(config)) {
    return absl::InvalidArgumentError(
        "--credit_reservation_ttl must be 0 or exceed --openai_timeout "
        "(with --ai_providers_file: the sum of the providers' timeouts; "
        "offline: the longest paced reply, --offline_stream_delay per "
        "piece)");
  }
  // Named by variable first: an installed server's settings are an
  // environment file (packaging/), which sets COACH_AUTH=jwt.
  if (config.auth == AuthMode::kJwt && config.jwt.hs256_secret.empty() &&
      config.jwt.jwks_file.empty()) {
    return absl::InvalidArgumentError(
        "COACH_AUTH=jwt (--auth) needs a key to check tokens with: set "
        "COACH_JWT_SECRET (--jwt_secret, HS256) or COACH_JWT_JWKS_FILE "
        "(--jwt_jwks_file, RS256/ES256)");
  }
  if (config.limits.history_default_limit > config.limits.history_max_limit) {
    return absl::InvalidArgumentError(
        "--history_default_limit must not exceed --history_max_limit");
  }
  // A session past the list's cap would vanish from the user's list.
  if (config.user_limits.max_sessions_per_user >
      config.limits.max_sessions_listed) {
    return absl::InvalidArgumentError(
        "--max_sessions_per_user must not exceed --max_sessions_listed");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<double>> BucketSeconds(
    const std::vector<std::string>& buckets) {
  std::vector<double> seconds;
  for (const std::string& text : buckets) {
    absl::Duration bound;
    if (!absl::ParseDuration(text, &bound) ||
        bound == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(
          "must be durations such as 250ms or 2.5s, separated by commas");
    }
    if (!seconds.empty() && absl::ToDoubleSeconds(bound) <= seconds.back()) {
      return absl::InvalidArgumentError("must be increasing durations");
    }
    seconds.push_back(absl::ToDoubleSeconds(bound));
  }
  return seconds;
}

TlsOptions GrpcTlsOptions(const Config& config) {
  TlsOptions options;
  options.role = TlsRole::kServer;
  options.cert_file = config.grpc_tls_cert;
  options.key_file = config.grpc_tls_key;
  options.ca_file = config.grpc_tls_client_ca;
  options.cert_setting = "COACH_GRPC_TLS_CERT (--grpc_tls_cert)";
  options.key_setting = "COACH_GRPC_TLS_KEY (--grpc_tls_key)";
  options.ca_setting = "COACH_GRPC_TLS_CLIENT_CA (--grpc_tls_client_ca)";
  options.alpn = {"h2"};
  options.check_interval = absl::ZeroDuration();
  return options;
}

absl::StatusOr<Startup<Config>> LoadServerConfig(int argc, char** argv) {
  return LoadSettings<Config>(
      "coach-server",
      "The Coach AI Hub chat backend over gRPC (coach.v1.ChatService, "
      "coach.v1.UserService).",
      argc, argv, ServerSettings, CrossCheck);
}

}  // namespace coach
