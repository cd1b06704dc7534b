#include "storage/postgres_store.h"

#include <libpq-fe.h>

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/ids.h"
#include "storage/postgres_schema.h"
#include "storage/record_columns.h"

namespace coach {
namespace {

// SQLSTATEs worth trying the whole transaction again for.
constexpr char kSerializationFailure[] = "40001";
constexpr char kDeadlockDetected[] = "40P01";

// A failed statement, thrown inside this file only (the Store's methods
// catch it and return a Status, as SqliteStore does with SQLiteCpp's).
class PgError : public std::runtime_error {
 public:
  PgError(std::string sqlstate, const std::string& message,
          bool connection_lost)
      : std::runtime_error(message),
        sqlstate_(std::move(sqlstate)),
        connection_lost_(connection_lost) {}
  const std::string& sqlstate() const { return sqlstate_; }
  bool connection_lost() const { return connection_lost_; }
  bool retryable() const {
    return sqlstate_ == kSerializationFailure || sqlstate_ == kDeadlockDetected;
  }

 private:
  std::string sqlstate_;
  bool connection_lost_;
};

// A statement parameter in libpq's text format; nullopt is SQL NULL.
using Param = std::optional<std::string>;
Param Text(absl::string_view text) { return std::string(text); }
Param Int(int64_t value) { return absl::StrCat(value); }
Param Micros(absl::Time t) { return Int(absl::ToUnixMicros(t)); }

// A result's rows, read as text and parsed.
class Rows {
 public:
  explicit Rows(PGresult* result) : result_(result, &PQclear) {}
  int size() const { return PQntuples(result_.get()); }
  // Rows changed by an INSERT, UPDATE or DELETE.
  int affected() const {
    int n = 0;
    return absl::SimpleAtoi(PQcmdTuples(result_.get()), &n) ? n : 0;
  }
  bool IsNull(int row, int column) const {
    return PQgetisnull(result_.get(), row, column) != 0;
  }
  std::string Str(int row, int column) const {
    return std::string(PQgetvalue(result_.get(), row, column),
                       PQgetlength(result_.get(), row, column));
  }
  int64_t Int64(int row, int column) const {
    int64_t value = 0;
    if (!absl::SimpleAtoi(PQgetvalue(result_.get(), row, column), &value)) {
      throw PgError("", "postgres: not an integer", false);
    }
    return value;
  }
  int32_t Int32(int row, int column) const {
    return static_cast<int32_t>(Int64(row, column));
  }
  absl::Time Time(int row, int column) const {
    return absl::FromUnixMicros(Int64(row, column));
  }

 private:
  std::unique_ptr<PGresult, decltype(&PQclear)> result_;
};

}  // namespace

class PostgresStore::Connection {
 public:
  explicit Connection(PGconn* conn) : conn_(conn) {
    // libpq prints the server's notices on stderr ("relation already
    // exists, skipping"): nothing a log needs.
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);
  }
  ~Connection() { PQfinish(conn_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  PGconn* get() { return conn_; }
  bool broken() const { return PQstatus(conn_) != CONNECTION_OK; }

  // Reconnects a connection the server dropped. Its prepared statements
  // went with the old session.
  void Reset() {
    PQreset(conn_);
    prepared_.clear();
  }

  // A command without parameters (BEGIN, COMMIT, ROLLBACK).
  void Command(const char* sql) { Check(PQexec(conn_, sql)); }

  // Runs `sql`, prepared on this connection at its first use (keyed by the
  // pointer: every SQL text is a constant of this file), with `params`.
  Rows Run(const char* sql, std::initializer_list<Param> params) {
    return Run(sql, params.begin(), params.size());
  }
  Rows Run(const char* sql, const std::vector<Param>& params) {
    return Run(sql, params.data(), params.size());
  }

 private:
  Rows Run(const char* sql, const Param* params, size_t count) {
    auto it = prepared_.find(sql);
    if (it == prepared_.end()) {
      std::string name = absl::StrCat("coach_", prepared_.size() + 1);
      Check(PQprepare(conn_, name.c_str(), sql, static_cast<int>(count),
                      nullptr));
      it = prepared_.emplace(sql, std::move(name)).first;
    }
    std::vector<const char*> values;
    values.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      values.push_back(params[i].has_value() ? params[i]->c_str() : nullptr);
    }
    return Check(PQexecPrepared(conn_, it->second.c_str(),
                                static_cast<int>(values.size()), values.data(),
                                nullptr, nullptr, /*resultFormat=*/0));
  }

  // The result if the statement succeeded; throws PgError otherwise.
  Rows Check(PGresult* result) {
    Rows rows(result);
    const ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return rows;
    const char* sqlstate = result != nullptr
                               ? PQresultErrorField(result, PG_DIAG_SQLSTATE)
                               : nullptr;
    throw PgError(sqlstate != nullptr ? sqlstate : "", PQerrorMessage(conn_),
                  broken());
  }

  PGconn* conn_;
  std::unordered_map<const char*, std::string> prepared_;
};

namespace {

using Connection = PostgresStore::Connection;

absl::Status ErrorFromException(absl::string_view operation,
                                const std::exception& e) {
  std::string message(e.what());
  // libpq's messages end with a newline.
  while (!message.empty() && message.back() == '\n') message.pop_back();
  if (const auto* pg = dynamic_cast<const PgError*>(&e);
      pg != nullptr && (pg->connection_lost() || pg->retryable())) {
    return absl::UnavailableError(
        absl::StrCat("postgres ", operation, ": ", message));
  }
  return absl::InternalError(
      absl::StrCat("postgres ", operation, ": ", message));
}

// --- Row readers ------------------------------------------------------------

constexpr const char* kUserColumns =
    "id, plan, credits, credit_period, created_at";

UserRecord ReadUser(const Rows& rows, int row) {
  return UserRecord{.id = rows.Str(row, 0),
                    .plan = PlanFromName(rows.Str(row, 1)),
                    .status = UserStatus::kActive,
                    .credits = rows.Int32(row, 2),
                    .credit_period = rows.Str(row, 3),
                    .created_at = rows.Time(row, 4)};
}

constexpr const char* kSessionColumns =
    "id, user_id, title, last_message, message_count, created_at, updated_at";

// kSessionColumns, from column `first` on.
SessionRecord ReadSession(const Rows& rows, int row, int first = 0) {
  return SessionRecord{.id = rows.Str(row, first),
                       .user_id = rows.Str(row, first + 1),
                       .title = rows.Str(row, first + 2),
                       .last_message = rows.Str(row, first + 3),
                       .message_count = rows.Int32(row, first + 4),
                       .created_at = rows.Time(row, first + 5),
                       .updated_at = rows.Time(row, first + 6)};
}

// The columns id, session_id, role, content, created_at, model,
// prompt_tokens, completion_tokens, in that order.
MessageRecord ReadMessage(const Rows& rows, int row) {
  MessageRecord message{.id = rows.Str(row, 0),
                        .session_id = rows.Str(row, 1),
                        .role = RoleFromName(rows.Str(row, 2)),
                        .content = rows.Str(row, 3),
                        .created_at = rows.Time(row, 4),
                        .model = rows.Str(row, 5),  // "" for NULL
                        .usage = std::nullopt};
  if (!rows.IsNull(row, 6)) {
    message.usage = TokenUsage{.prompt_tokens = rows.Int32(row, 6),
                               .completion_tokens = rows.Int32(row, 7)};
  }
  return message;
}

std::optional<SessionRecord> LoadSession(Connection& c,
                                         absl::string_view session_id) {
  static const std::string sql =
      absl::StrCat("SELECT ", kSessionColumns, " FROM sessions WHERE id = $1");
  Rows rows = c.Run(sql.c_str(), {Text(session_id)});
  if (rows.size() == 0) return std::nullopt;
  return ReadSession(rows, 0);
}

// --- Write helpers (called inside a write transaction) ----------------------

// The user row of a write transaction, locked, and its rate state.
struct LockedUser {
  UserRecord user;
  RateState rates;
};

// Creates the user if unknown, locks its row until the transaction ends
// (every decision on its credits, sessions, sends and rates is taken under
// this lock, by whichever server), then applies the monthly refill. A known
// user costs one round trip.
LockedUser LockUser(Connection& c, absl::string_view user_id,
                    const CreditTerms& terms, absl::Time now) {
  static const std::string lock =
      absl::StrCat("SELECT ", kUserColumns,
                   ", send_rate_tat, session_rate_tat FROM users "
                   "WHERE id = $1 FOR UPDATE");
  static const std::string insert = absl::StrCat(
      "INSERT INTO users (id, plan, status, credits, credit_period, "
      "created_at) VALUES ($1, $2, 'ACTIVE', $3, $4, $5) "
      "ON CONFLICT (id) DO NOTHING RETURNING ",
      kUserColumns, ", send_rate_tat, session_rate_tat");
  for (;;) {
    Rows rows = c.Run(lock.c_str(), {Text(user_id)});
    if (rows.size() == 0) {
      // A row this transaction inserts is its own until it ends. Nothing
      // returned: another transaction inserted it meanwhile (and has
      // committed, the insert waited for it): lock it.
      rows = c.Run(insert.c_str(),
                   {Text(user_id), Text(PlanName(terms.new_user_plan)),
                    Int(RefilledCredits(terms, terms.new_user_plan)),
                    Text(terms.period), Micros(now)});
      if (rows.size() == 0) continue;
    }
    LockedUser locked{
        .user = ReadUser(rows, 0),
        .rates = {.send_tat = rows.Time(0, 5), .session_tat = rows.Time(0, 6)}};
    UserRecord& user = locked.user;
    if (user.credit_period != terms.period) {
      user.credits = RefilledCredits(terms, user.plan);
      user.credit_period = terms.period;
      c.Run("UPDATE users SET credits = $2, credit_period = $3 WHERE id = $1",
            {Text(user.id), Int(user.credits), Text(user.credit_period)});
    }
    return locked;
  }
}

UserRecord EnsureUser(Connection& c, absl::string_view user_id,
                      const CreditTerms& terms, absl::Time now) {
  return LockUser(c, user_id, terms, now).user;
}

// The rest of an AdmissionState, read under the user's lock (LockUser) in
// one statement: live sends; the user's sessions when `count_sessions`;
// the session `session_id` names, if any.
AdmissionState ReadAdmissionState(Connection& c, LockedUser locked,
                                  absl::string_view session_id,
                                  bool count_sessions, absl::Time now) {
  static const std::string sql = absl::StrCat(
      "SELECT (SELECT COUNT(*) FROM credit_reservations WHERE user_id = $1 "
      "AND expires_at > $2), CASE WHEN $4::boolean THEN (SELECT COUNT(*) "
      "FROM sessions WHERE user_id = $1) ELSE 0 END, s.",
      absl::StrReplaceAll(kSessionColumns, {{", ", ", s."}}),
      " FROM (SELECT 1) AS one LEFT JOIN sessions AS s ON s.id = $3");
  Rows rows =
      c.Run(sql.c_str(), {Text(locked.user.id), Micros(now), Text(session_id),
                          Text(count_sessions ? "true" : "false")});
  AdmissionState state{.user = std::move(locked.user),
                       .rates = locked.rates,
                       .live_sends = rows.Int32(0, 0),
                       .sessions = rows.Int32(0, 1),
                       .session = std::nullopt};
  if (!rows.IsNull(0, 2)) state.session = ReadSession(rows, 0, 2);
  return state;
}

void WriteRates(Connection& c, absl::string_view user_id,
                const RateState& rates) {
  c.Run(
      "UPDATE users SET send_rate_tat = $2, session_rate_tat = $3 "
      "WHERE id = $1",
      {Text(user_id), Micros(rates.send_tat), Micros(rates.session_tat)});
}

// Inserts `s` unless its user already owns `max_user_sessions` (> 0)
// sessions: false then, and nothing is inserted. Called with the user's row
// locked (LockUser), so two racing inserts at the maximum cannot both pass.
bool InsertSession(Connection& c, const SessionRecord& s,
                   int max_user_sessions) {
  return c.Run(
              "INSERT INTO sessions (id, user_id, title, last_message, "
              "message_count, created_at, updated_at) "
              "SELECT $1, $2, $3, $4, $5, $6, $7 WHERE $8::integer <= 0 OR "
              "(SELECT COUNT(*) FROM sessions WHERE user_id = $2) < "
              "$8::integer",
              {Text(s.id), Text(s.user_id), Text(s.title), Text(s.last_message),
               Int(s.message_count), Micros(s.created_at), Micros(s.updated_at),
               Int(max_user_sessions)})
             .affected() > 0;
}

// The eight columns of `m` an INSERT INTO messages names, in order.
void AppendMessageParams(std::vector<Param>& params, const MessageRecord& m) {
  params.push_back(Text(m.id));
  params.push_back(Text(m.session_id));
  params.push_back(Text(RoleName(m.role)));
  params.push_back(Text(m.content));
  params.push_back(Micros(m.created_at));
  params.push_back(m.model.empty() ? Param() : Text(m.model));
  params.push_back(m.usage.has_value() ? Int(m.usage->prompt_tokens) : Param());
  params.push_back(m.usage.has_value() ? Int(m.usage->completion_tokens)
                                       : Param());
}

// Inserts the two messages of an exchange, `first` first (its seq is the
// smaller), in one statement.
void InsertMessages(Connection& c, const MessageRecord& first,
                    const MessageRecord& second) {
  std::vector<Param> params;
  params.reserve(16);
  AppendMessageParams(params, first);
  AppendMessageParams(params, second);
  c.Run(
      "INSERT INTO messages (id, session_id, role, content, created_at, "
      "model, prompt_tokens, completion_tokens) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8), "
      "($9, $10, $11, $12, $13, $14, $15, $16)",
      params);
}

// Stores the key's final response if `done.claim_id` still holds it
// unfinished; false, and nothing changed, otherwise.
bool CompleteKey(Connection& c, const IdempotencyCompletion& done,
                 std::optional<int32_t> remaining_credits) {
  return c.Run(
              "UPDATE idempotency_keys SET claim = NULL, response = $4, "
              "remaining_credits = $5 WHERE user_id = $1 "
              "AND idempotency_key = $2 AND claim = $3",
              {Text(done.user_id), Text(done.key), Text(done.claim_id),
               Text(done.response),
               remaining_credits.has_value() ? Int(*remaining_credits)
                                             : Param()})
             .affected() > 0;
}

// The usage rows of `rows` (month, model, replies, credits_charged,
// prompt_tokens, completion_tokens, then with `with_user` the user_id),
// grouped by user and month (the rows must come so), one record each.
std::vector<UserUsageRecord> ReadUsage(const Rows& rows, bool with_user) {
  std::vector<UserUsageRecord> out;
  for (int i = 0; i < rows.size(); ++i) {
    const std::string month = rows.Str(i, 0);
    const std::string user = with_user ? rows.Str(i, 6) : "";
    if (out.empty() || out.back().usage.month != month ||
        out.back().user_id != user) {
      out.emplace_back().user_id = user;
      out.back().usage.month = month;
    }
    UsageRecord& usage = out.back().usage;
    ModelUsageRecord model{.model = rows.Str(i, 1),
                           .replies = rows.Int32(i, 2),
                           .prompt_tokens = rows.Int64(i, 4),
                           .completion_tokens = rows.Int64(i, 5)};
    usage.replies += model.replies;
    usage.credits_charged += rows.Int32(i, 3);
    usage.prompt_tokens += model.prompt_tokens;
    usage.completion_tokens += model.completion_tokens;
    usage.by_model.push_back(std::move(model));
  }
  return out;
}

// Claims `claim`'s key for the current run's `owner` (Store's "Idempotency
// keys"). Inside a write transaction, after the user's row lock: every
// transaction takes the user's row, then the key's.
ClaimOutcome ClaimKey(Connection& c, const IdempotencyClaim& claim,
                      const HoldOwner& owner) {
  const std::initializer_list<Param> values = {Text(claim.user_id),
                                               Text(claim.key),
                                               Text(claim.request_hash),
                                               Text(claim.claim_id),
                                               Text(owner.instance),
                                               Text(owner.run),
                                               Micros(claim.claim_expires_at),
                                               Micros(claim.expires_at)};
  const ClaimOutcome claimed{.state = ClaimOutcome::State::kClaimed,
                             .stored = std::nullopt};
  // The primary key decides between servers: an insert racing another
  // waits for it to commit, then does nothing.
  for (int tries = 0; tries < 3; ++tries) {
    if (c.Run("INSERT INTO idempotency_keys (user_id, idempotency_key, "
              "request_hash, claim, instance, run, claim_expires_at, "
              "expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
              "ON CONFLICT (user_id, idempotency_key) DO NOTHING",
              values)
            .affected() > 0) {
      return claimed;
    }
    // Held until this transaction ends.
    Rows rows = c.Run(
        "SELECT request_hash, claim, claim_expires_at, expires_at, "
        "response, remaining_credits FROM idempotency_keys "
        "WHERE user_id = $1 AND idempotency_key = $2 FOR UPDATE",
        {Text(claim.user_id), Text(claim.key)});
    if (rows.size() == 0) continue;  // released meanwhile: insert
    IdempotencyKeyRow row{.request_hash = rows.Str(0, 0),
                          .claim = std::nullopt,
                          .claim_expires_at = rows.Time(0, 2),
                          .expires_at = rows.Time(0, 3),
                          .response = std::nullopt,
                          .remaining_credits = std::nullopt};
    if (!rows.IsNull(0, 1)) row.claim = rows.Str(0, 1);
    if (!rows.IsNull(0, 4)) row.response = rows.Str(0, 4);
    if (!rows.IsNull(0, 5)) row.remaining_credits = rows.Int32(0, 5);
    if (auto held = HeldKeyOutcome(row, claim); held.has_value()) {
      return *held;
    }
    // Expired or abandoned: now this claim's.
    c.Run(
        "UPDATE idempotency_keys SET request_hash = $3, claim = $4, "
        "instance = $5, run = $6, claim_expires_at = $7, "
        "expires_at = $8, response = NULL, remaining_credits = NULL "
        "WHERE user_id = $1 AND idempotency_key = $2",
        values);
    return claimed;
  }
  // Claimed and released three times while this looked: as good as
  // running.
  return ClaimOutcome{.state = ClaimOutcome::State::kInProgress,
                      .stored = std::nullopt};
}

void DeleteClaim(Connection& c, absl::string_view user_id,
                 absl::string_view key, absl::string_view claim_id) {
  c.Run(
      "DELETE FROM idempotency_keys WHERE user_id = $1 "
      "AND idempotency_key = $2 AND claim = $3",
      {Text(user_id), Text(key), Text(claim_id)});
}

// Writes an exchange's session (inserted, or updated as the exchange
// leaves it) and its two messages: the payer (the user whose reservation
// the exchange holds, nullopt without one), whose row is locked first.
// FAILED_PRECONDITION at the user's session limit, NOT_FOUND if the session
// is gone.
absl::StatusOr<std::optional<UserRecord>> WriteExchange(
    Connection& c, const Exchange& exchange) {
  // Locks in one order everywhere, user row then session row, so two
  // commits cannot deadlock on them.
  std::optional<UserRecord> payer;
  if (exchange.reservation.has_value()) {
    payer = EnsureUser(c, exchange.reservation->user_id, exchange.terms,
                       exchange.now);
  }
  if (exchange.new_session.has_value()) {
    if (!payer.has_value() || payer->id != exchange.new_session->user_id) {
      EnsureUser(c, exchange.new_session->user_id, exchange.terms,
                 exchange.now);
    }
    // Inserted as it is after the exchange: one statement.
    if (!InsertSession(c, WithExchange(*exchange.new_session, exchange),
                       exchange.max_user_sessions)) {
      return absl::FailedPreconditionError("session limit reached");
    }
  } else if (c.Run("UPDATE sessions SET last_message = $2, "
                   "message_count = message_count + 2, updated_at = $3 "
                   "WHERE id = $1",
                   {Text(exchange.session_id), Text(exchange.last_message),
                    Micros(exchange.now)})
                 .affected() == 0) {
    return absl::NotFoundError("session not found");
  }
  InsertMessages(c, exchange.user_message, exchange.assistant_message);
  return payer;
}

// Settles the exchange's reservation, charges `payer` a credit unless its
// plan is unlimited, and counts the reply in the usage ledger: the credits
// left after a charge, nullopt without one; RESOURCE_EXHAUSTED if no credit
// is left to charge. Long for its two SQL statements (and their shared
// upsert clause), each kept whole so that it reads as one.
absl::StatusOr<std::optional<int32_t>> ChargeExchange(
    Connection& c, const Exchange& exchange,
    const std::optional<UserRecord>& payer) {
  // The reservation settled, the credit charged (unless the plan is
  // unlimited, perhaps since the send began) and the reply counted in
  // the usage ledger: one statement. The charge is conditional:
  // credits never go below zero, whatever happened to the reservation
  // meanwhile (expired, an admin changed the plan); without it the
  // statement returns no row, and the transaction is rolled back.
  const bool charge =
      payer.has_value() && exchange.terms.AllowanceOf(payer->plan).has_value();
  const MessageRecord& reply = exchange.assistant_message;
  const std::initializer_list<Param> params = {
      Text(payer.has_value() ? payer->id : exchange.user_id),
      exchange.reservation.has_value() ? Int(exchange.reservation->id) : Int(0),
      Text(exchange.terms.period),
      Text(reply.model),
      Int(reply.usage.has_value() ? reply.usage->prompt_tokens : 0),
      Int(reply.usage.has_value() ? reply.usage->completion_tokens : 0),
      Text(exchange.user_id)};
  // The ledger's upsert clause, the same in both statements below.
#define COACH_COUNT_USAGE_CONFLICT                                       \
  " ON CONFLICT (month, user_id, model) DO UPDATE SET "                  \
  "replies = usage.replies + 1, "                                        \
  "credits_charged = usage.credits_charged + EXCLUDED.credits_charged, " \
  "prompt_tokens = usage.prompt_tokens + EXCLUDED.prompt_tokens, "       \
  "completion_tokens = usage.completion_tokens + "                       \
  "EXCLUDED.completion_tokens"
  constexpr const char* charged_sql =
      "WITH settled AS (DELETE FROM credit_reservations WHERE id = $2), "
      "charged AS (UPDATE users SET credits = credits - 1 "
      "WHERE id = $1 AND credits > 0 RETURNING credits), "
      "counted AS (INSERT INTO usage (month, user_id, model, replies, "
      "credits_charged, prompt_tokens, completion_tokens) "
      "SELECT $3::text, $7::text, $4::text, 1, 1, $5::bigint, "
      "$6::bigint FROM charged" COACH_COUNT_USAGE_CONFLICT
      ") SELECT credits FROM charged";
  constexpr const char* free_sql =
      "WITH settled AS (DELETE FROM credit_reservations WHERE id = $2 "
      "AND user_id = $1) INSERT INTO usage (month, user_id, model, replies, "
      "credits_charged, prompt_tokens, completion_tokens) "
      "VALUES ($3, $7, $4, 1, 0, $5, $6)" COACH_COUNT_USAGE_CONFLICT;
#undef COACH_COUNT_USAGE_CONFLICT
  if (charge) {
    Rows charged = c.Run(charged_sql, params);
    if (charged.size() == 0) {
      return absl::ResourceExhaustedError("no credit left to charge");
    }
    return charged.Int32(0, 0);
  }
  c.Run(free_sql, params);
  return std::nullopt;
}

}  // namespace

// --- Opening
// ------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::Open(
    const PostgresOptions& options) {
  if (options.url.empty()) {
    return absl::InvalidArgumentError("postgres: the database URL is empty");
  }
  std::unique_ptr<PostgresStore> store(
      new PostgresStore(std::max(1, options.max_attempts)));
  std::vector<std::unique_ptr<Connection>> connections;
  for (int i = 0; i < std::max(1, options.pool_size); ++i) {
    auto c = std::make_unique<Connection>(PQconnectdb(options.url.c_str()));
    if (c->get() == nullptr) {
      return absl::ResourceExhaustedError("postgres: out of memory");
    }
    if (c->broken()) {
      // libpq's message names the host and port, never the password.
      std::string message = PQerrorMessage(c->get());
      while (!message.empty() && message.back() == '\n') message.pop_back();
      return absl::UnavailableError(absl::StrCat("postgres: ", message));
    }
    if (i == 0) {
      if (absl::Status migrated = MigratePostgresSchema(c->get());
          !migrated.ok()) {
        return migrated;
      }
    }
    connections.push_back(std::move(c));
  }
  absl::MutexLock lock(&store->pool_mu_);
  store->idle_ = std::move(connections);
  return store;
}

PostgresStore::PostgresStore(int max_attempts) : max_attempts_(max_attempts) {}
PostgresStore::~PostgresStore() = default;

// --- Connection leasing
// ---------------------------------------------------------

std::unique_ptr<PostgresStore::Connection> PostgresStore::Acquire() {
  absl::MutexLock lock(&pool_mu_);
  pool_mu_.Await(absl::Condition(
      +[](std::vector<std::unique_ptr<Connection>>* idle) {
        return !idle->empty();
      },
      &idle_));
  std::unique_ptr<Connection> c = std::move(idle_.back());
  idle_.pop_back();
  return c;
}

void PostgresStore::Release(std::unique_ptr<Connection> connection) {
  absl::MutexLock lock(&pool_mu_);
  idle_.push_back(std::move(connection));
}

// Borrows a connection for one call; one the server dropped is reconnected
// first (a restarted database costs the calls in flight, not the pool).
class PostgresStore::Lease {
 public:
  explicit Lease(PostgresStore& store)
      : store_(store), connection_(store.Acquire()) {
    if (connection_->broken()) connection_->Reset();
  }
  ~Lease() { store_.Release(std::move(connection_)); }
  Connection& operator*() { return *connection_; }

 private:
  PostgresStore& store_;
  std::unique_ptr<Connection> connection_;
};

template <typename Body>
auto PostgresStore::Read(absl::string_view operation, Body&& body)
    -> decltype(body(std::declval<Connection&>())) {
  try {
    Lease c(*this);
    return body(*c);
  } catch (const std::exception& e) {
    return ErrorFromException(operation, e);
  }
}

template <typename Body>
auto PostgresStore::Write(absl::string_view operation, Body&& body)
    -> decltype(body(std::declval<Connection&>())) {
  for (int attempt = 1;; ++attempt) {
    Lease c(*this);
    try {
      (*c).Command("BEGIN");
      auto result = body(*c);
      (*c).Command(result.ok() ? "COMMIT" : "ROLLBACK");
      if (result.ok())
        write_transactions_.fetch_add(1, std::memory_order_relaxed);
      return result;
    } catch (const std::exception& e) {
      const auto* pg = dynamic_cast<const PgError*>(&e);
      if (pg == nullptr || !pg->connection_lost()) {
        try {
          (*c).Command("ROLLBACK");
        } catch (const std::exception&) {
          // The connection is broken: the next lease reconnects it.
        }
      }
      if (pg != nullptr && pg->retryable() && attempt < max_attempts_) {
        continue;
      }
      return ErrorFromException(operation, e);
    }
  }
}

// --- Server runs
// ---------------------------------------------------------------

absl::StatusOr<int> PostgresStore::BeginRun(absl::string_view instance) {
  const HoldOwner owner{.instance = std::string(instance),
                        .run = NewRandomId()};
  absl::StatusOr<int> dropped =
      Write("begin run", [&](Connection& c) -> absl::StatusOr<int> {
        c.Run(
            "DELETE FROM idempotency_keys WHERE instance = $1 "
            "AND run <> $2 AND claim IS NOT NULL",
            {Text(owner.instance), Text(owner.run)});
        return c
            .Run(
                "DELETE FROM credit_reservations "
                "WHERE instance = $1 AND run <> $2",
                {Text(owner.instance), Text(owner.run)})
            .affected();
      });
  if (dropped.ok()) {
    absl::MutexLock lock(&run_mu_);
    owner_ = owner;
  }
  return dropped;
}

HoldOwner PostgresStore::Owner() {
  absl::MutexLock lock(&run_mu_);
  return owner_;
}

// --- Users
// ----------------------------------------------------------------------

absl::StatusOr<std::optional<UserRecord>> PostgresStore::FindUser(
    absl::string_view user_id) {
  return Read("find user",
              [&](Connection& c) -> absl::StatusOr<std::optional<UserRecord>> {
                static const std::string sql = absl::StrCat(
                    "SELECT ", kUserColumns, " FROM users WHERE id = $1");
                Rows rows = c.Run(sql.c_str(), {Text(user_id)});
                if (rows.size() == 0) return std::nullopt;
                return ReadUser(rows, 0);
              });
}

absl::StatusOr<UserRecord> PostgresStore::SetPlan(absl::string_view user_id,
                                                  Plan plan,
                                                  const CreditTerms& terms,
                                                  absl::Time now) {
  return Write("set plan", [&](Connection& c) -> absl::StatusOr<UserRecord> {
    UserRecord user = EnsureUser(c, user_id, terms, now);
    user.plan = plan;
    user.credits = RefilledCredits(terms, plan);
    c.Run("UPDATE users SET plan = $2, credits = $3 WHERE id = $1",
          {Text(user.id), Text(PlanName(plan)), Int(user.credits)});
    return user;
  });
}

absl::StatusOr<UserRecord> PostgresStore::AddCredits(absl::string_view user_id,
                                                     int32_t credits,
                                                     int32_t max_balance,
                                                     const CreditTerms& terms,
                                                     absl::Time now) {
  return Write("add credits", [&](Connection& c) -> absl::StatusOr<UserRecord> {
    UserRecord user = EnsureUser(c, user_id, terms, now);
    // The comparison is in 64 bits: it cannot overflow.
    Rows rows = c.Run(
        "UPDATE users SET credits = credits + $2::integer WHERE id = $1 "
        "AND credits::bigint + $2::bigint <= $3::bigint RETURNING credits",
        {Text(user.id), Int(credits), Int(max_balance)});
    if (rows.size() == 0) {
      return absl::OutOfRangeError(
          absl::StrCat("balance would exceed ", max_balance));
    }
    user.credits = rows.Int32(0, 0);
    return user;
  });
}

absl::StatusOr<UserTotals> PostgresStore::CountUserActivity(
    absl::string_view user_id) {
  return Read("count activity",
              [&](Connection& c) -> absl::StatusOr<UserTotals> {
                Rows rows = c.Run(
                    "SELECT COUNT(*), COALESCE(SUM(message_count), 0) "
                    "FROM sessions WHERE user_id = $1",
                    {Text(user_id)});
                return UserTotals{.sessions = rows.Int32(0, 0),
                                  .messages = rows.Int32(0, 1)};
              });
}

absl::StatusOr<UserActivity> PostgresStore::FindUserActivity(
    absl::string_view user_id) {
  return Read(
      "find user activity", [&](Connection& c) -> absl::StatusOr<UserActivity> {
        // Always one row: the user's columns (NULL when it has no row), then
        // the totals. One statement: one round trip, one snapshot.
        Rows rows = c.Run(
            "SELECT u.id, u.plan, u.credits, u.credit_period, u.created_at, "
            "a.sessions, a.messages FROM (SELECT COUNT(*) AS sessions, "
            "COALESCE(SUM(message_count), 0) AS messages FROM sessions "
            "WHERE user_id = $1) AS a LEFT JOIN users AS u ON u.id = $1",
            {Text(user_id)});
        UserActivity activity{.user = std::nullopt,
                              .totals = {.sessions = rows.Int32(0, 5),
                                         .messages = rows.Int32(0, 6)}};
        if (!rows.IsNull(0, 0)) activity.user = ReadUser(rows, 0);
        return activity;
      });
}

// --- Credits
// --------------------------------------------------------------------

absl::StatusOr<SendAdmissionResult> PostgresStore::AdmitSend(
    const SendAdmissionRequest& request, AdmissionRule decide) {
  const HoldOwner owner = Owner();
  return Write(
      "admit send", [&](Connection& c) -> absl::StatusOr<SendAdmissionResult> {
        LockedUser locked =
            LockUser(c, request.user_id, request.terms, request.now);
        SendAdmissionResult result{
            .claim = {.state = ClaimOutcome::State::kClaimed,
                      .stored = std::nullopt},
            .reservation = std::nullopt};
        if (request.claim.has_value()) {
          result.claim = ClaimKey(c, *request.claim, owner);
          if (result.claim.state != ClaimOutcome::State::kClaimed) {
            return result;
          }
        }
        const Admission answer = decide(ReadAdmissionState(
            c, std::move(locked), request.session_id,
            /*count_sessions=*/request.session_id.empty(), request.now));
        if (!answer.admitted) {
          WriteRates(c, request.user_id, answer.rates);
          if (const auto& claim = request.claim; claim.has_value()) {
            if (answer.key_response.has_value()) {
              CompleteKey(
                  c,
                  IdempotencyCompletion{.user_id = claim->user_id,
                                        .key = claim->key,
                                        .claim_id = claim->claim_id,
                                        .response = *answer.key_response},
                  std::nullopt);
            } else {
              DeleteClaim(c, claim->user_id, claim->key, claim->claim_id);
            }
          }
          return result;
        }
        // The rates, the user's expired reservations swept, the new one:
        // one round trip.
        Rows inserted = c.Run(
            "WITH rates AS (UPDATE users SET send_rate_tat = $5, "
            "session_rate_tat = $6 WHERE id = $1), swept AS (DELETE FROM "
            "credit_reservations WHERE user_id = $1 AND expires_at <= $7) "
            "INSERT INTO credit_reservations (user_id, expires_at, instance, "
            "run) VALUES ($1, $2, $3, $4) RETURNING id",
            {Text(request.user_id), Micros(request.expires_at),
             Text(owner.instance), Text(owner.run),
             Micros(answer.rates.send_tat), Micros(answer.rates.session_tat),
             Micros(request.now)});
        result.reservation = CreditReservation{.id = inserted.Int64(0, 0),
                                               .user_id = request.user_id};
        return result;
      });
}

absl::Status PostgresStore::ReleaseCredit(
    const CreditReservation& reservation) {
  return Write("release credit", [&](Connection& c) -> absl::Status {
    c.Run("DELETE FROM credit_reservations WHERE id = $1",
          {Int(reservation.id)});
    return absl::OkStatus();
  });
}

// --- Sessions and messages
// ------------------------------------------------------------

absl::StatusOr<bool> PostgresStore::CreateSession(const SessionRecord& session,
                                                  const CreditTerms& terms,
                                                  absl::Time now,
                                                  AdmissionRule decide) {
  return Write("create session", [&](Connection& c) -> absl::StatusOr<bool> {
    const Admission answer = decide(ReadAdmissionState(
        c, LockUser(c, session.user_id, terms, now), /*session_id=*/"",
        /*count_sessions=*/true, now));
    WriteRates(c, session.user_id, answer.rates);
    if (answer.admitted) InsertSession(c, session, /*max_user_sessions=*/0);
    return answer.admitted;
  });
}

absl::StatusOr<std::optional<SessionRecord>> PostgresStore::FindSession(
    absl::string_view session_id) {
  return Read(
      "find session",
      [&](Connection& c) -> absl::StatusOr<std::optional<SessionRecord>> {
        return LoadSession(c, session_id);
      });
}

absl::StatusOr<std::vector<SessionRecord>> PostgresStore::ListSessions(
    absl::string_view user_id, int limit) {
  static const std::string sql =
      absl::StrCat("SELECT ", kSessionColumns,
                   " FROM sessions WHERE user_id = $1 "
                   "ORDER BY updated_at DESC, seq DESC LIMIT $2");
  return Read("list sessions",
              [&](Connection& c) -> absl::StatusOr<std::vector<SessionRecord>> {
                Rows rows = c.Run(sql.c_str(), {Text(user_id), Int(limit)});
                std::vector<SessionRecord> sessions;
                for (int i = 0; i < rows.size(); ++i) {
                  sessions.push_back(ReadSession(rows, i));
                }
                return sessions;
              });
}

absl::StatusOr<std::vector<MessageRecord>> PostgresStore::ListRecentMessages(
    absl::string_view session_id, int limit) {
  return Read("list messages",
              [&](Connection& c) -> absl::StatusOr<std::vector<MessageRecord>> {
                Rows rows = c.Run(
                    "SELECT id, session_id, role, content, created_at, model, "
                    "prompt_tokens, completion_tokens FROM ("
                    "  SELECT * FROM messages"
                    "  WHERE session_id = $1 ORDER BY seq DESC LIMIT $2"
                    ") AS newest ORDER BY seq ASC",
                    {Text(session_id), Int(limit)});
                std::vector<MessageRecord> messages;
                for (int i = 0; i < rows.size(); ++i) {
                  messages.push_back(ReadMessage(rows, i));
                }
                return messages;
              });
}

absl::StatusOr<SessionPage> PostgresStore::ListSessionsPage(
    absl::string_view user_id, const std::optional<SessionKey>& after,
    int page_size) {
  // One row more than the page: whether another page follows. Both are an
  // index range of sessions_by_user_updated (user_id, updated_at, seq).
  static const std::string first =
      absl::StrCat("SELECT ", kSessionColumns,
                   ", seq FROM sessions WHERE user_id = $1 "
                   "ORDER BY updated_at DESC, seq DESC LIMIT $2");
  static const std::string next =
      absl::StrCat("SELECT ", kSessionColumns,
                   ", seq FROM sessions WHERE user_id = $1 "
                   "AND (updated_at, seq) < ($3, $4) "
                   "ORDER BY updated_at DESC, seq DESC LIMIT $2");
  return Read(
      "list sessions page", [&](Connection& c) -> absl::StatusOr<SessionPage> {
        Rows rows =
            after.has_value()
                ? c.Run(next.c_str(),
                        {Text(user_id), Int(page_size + 1),
                         Micros(after->updated_at), Int(after->seq)})
                : c.Run(first.c_str(), {Text(user_id), Int(page_size + 1)});
        SessionPage page;
        const int returned = std::min(rows.size(), page_size);
        for (int i = 0; i < returned; ++i) {
          page.sessions.push_back(ReadSession(rows, i));
        }
        if (rows.size() > page_size) {
          page.next = SessionKey{.updated_at = page.sessions.back().updated_at,
                                 .seq = rows.Int64(returned - 1, 7)};
        }
        return page;
      });
}

absl::StatusOr<MessagePage> PostgresStore::ListMessagesPage(
    absl::string_view session_id, std::optional<int64_t> after, int page_size) {
  return Read(
      "list messages page", [&](Connection& c) -> absl::StatusOr<MessagePage> {
        // Identity columns start at 1: 0 is before every message.
        Rows rows = c.Run(
            "SELECT id, session_id, role, content, created_at, model, "
            "prompt_tokens, completion_tokens, seq FROM messages "
            "WHERE session_id = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3",
            {Text(session_id), Int(after.value_or(0)), Int(page_size + 1)});
        MessagePage page;
        const int returned = std::min(rows.size(), page_size);
        for (int i = 0; i < returned; ++i) {
          page.messages.push_back(ReadMessage(rows, i));
        }
        if (rows.size() > page_size) page.next = rows.Int64(returned - 1, 8);
        return page;
      });
}

absl::StatusOr<SessionRecord> PostgresStore::RenameSession(
    absl::string_view session_id, absl::string_view title, absl::Time now) {
  return Write(
      "rename session", [&](Connection& c) -> absl::StatusOr<SessionRecord> {
        static const std::string sql = absl::StrCat(
            "UPDATE sessions SET title = $2, updated_at = $3 WHERE id = $1 "
            "RETURNING ",
            kSessionColumns);
        Rows rows =
            c.Run(sql.c_str(), {Text(session_id), Text(title), Micros(now)});
        if (rows.size() == 0) return absl::NotFoundError("session not found");
        return ReadSession(rows, 0);
      });
}

absl::Status PostgresStore::DeleteSession(absl::string_view session_id) {
  return Write("delete session", [&](Connection& c) -> absl::Status {
    // The session's row first: a commit adding messages to it (which
    // updates that row first) finishes before, or waits until after.
    if (c.Run("SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE",
              {Text(session_id)})
            .size() == 0) {
      return absl::NotFoundError("session not found");
    }
    c.Run("DELETE FROM messages WHERE session_id = $1", {Text(session_id)});
    c.Run("DELETE FROM sessions WHERE id = $1", {Text(session_id)});
    return absl::OkStatus();
  });
}

absl::StatusOr<ExchangeResult> PostgresStore::CommitExchange(
    const Exchange& exchange) {
  return Write(
      "commit exchange", [&](Connection& c) -> absl::StatusOr<ExchangeResult> {
        absl::StatusOr<std::optional<UserRecord>> payer =
            WriteExchange(c, exchange);
        if (!payer.ok()) return payer.status();
        absl::StatusOr<std::optional<int32_t>> remaining =
            ChargeExchange(c, exchange, *payer);
        if (!remaining.ok()) return remaining.status();
        ExchangeResult result;
        result.remaining_credits = *remaining;
        if (exchange.idempotency.has_value() &&
            !CompleteKey(c, *exchange.idempotency, result.remaining_credits)) {
          return absl::AbortedError("idempotency claim lost");
        }
        return result;
      });
}

// --- Idempotency keys
// -------------------------------------------------------------

absl::Status PostgresStore::ReleaseIdempotencyKey(absl::string_view user_id,
                                                  absl::string_view key,
                                                  absl::string_view claim_id) {
  return Write("release idempotency key", [&](Connection& c) -> absl::Status {
    DeleteClaim(c, user_id, key, claim_id);
    return absl::OkStatus();
  });
}

absl::Status PostgresStore::CompleteIdempotencyKey(absl::string_view user_id,
                                                   absl::string_view key,
                                                   absl::string_view claim_id,
                                                   absl::string_view response) {
  return Write("complete idempotency key", [&](Connection& c) -> absl::Status {
    const IdempotencyCompletion done{.user_id = std::string(user_id),
                                     .key = std::string(key),
                                     .claim_id = std::string(claim_id),
                                     .response = std::string(response)};
    if (!CompleteKey(c, done, std::nullopt)) {
      return absl::AbortedError("idempotency claim lost");
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<int> PostgresStore::PurgeIdempotencyKeys(absl::Time now,
                                                        int limit) {
  return Write("purge idempotency keys",
               [&](Connection& c) -> absl::StatusOr<int> {
                 // A bounded batch by the expiry index; rows a send holds
                 // (or another server purges) are skipped, not waited for.
                 return c
                     .Run(
                         "DELETE FROM idempotency_keys WHERE (user_id, "
                         "idempotency_key) IN (SELECT user_id, "
                         "idempotency_key FROM idempotency_keys "
                         "WHERE expires_at <= $1 LIMIT $2 "
                         "FOR UPDATE SKIP LOCKED)",
                         {Micros(now), Int(limit)})
                     .affected();
               });
}

// --- Usage
// ------------------------------------------------------------------------

absl::StatusOr<UsageRecord> PostgresStore::GetUsage(absl::string_view user_id,
                                                    absl::string_view month) {
  return Read("get usage", [&](Connection& c) -> absl::StatusOr<UsageRecord> {
    Rows rows = c.Run(
        "SELECT month, model, replies, credits_charged, prompt_tokens, "
        "completion_tokens FROM usage WHERE user_id = $1 AND month = $2 "
        "ORDER BY replies DESC, model",
        {Text(user_id), Text(month)});
    std::vector<UserUsageRecord> usage = ReadUsage(rows, /*with_user=*/false);
    if (usage.empty()) {
      UsageRecord none;
      none.month = std::string(month);
      return none;
    }
    return std::move(usage.front().usage);
  });
}

absl::StatusOr<std::vector<UsageRecord>> PostgresStore::ListUserUsage(
    absl::string_view user_id) {
  return Read(
      "list user usage",
      [&](Connection& c) -> absl::StatusOr<std::vector<UsageRecord>> {
        Rows rows = c.Run(
            "SELECT month, model, replies, credits_charged, prompt_tokens, "
            "completion_tokens FROM usage WHERE user_id = $1 "
            "ORDER BY month, replies DESC, model",
            {Text(user_id)});
        std::vector<UsageRecord> months;
        for (UserUsageRecord& row : ReadUsage(rows, /*with_user=*/false)) {
          months.push_back(std::move(row.usage));
        }
        return months;
      });
}

absl::StatusOr<UsagePage> PostgresStore::ListUsage(
    absl::string_view month, const std::optional<std::string>& after,
    int page_size) {
  return Read("list usage", [&](Connection& c) -> absl::StatusOr<UsagePage> {
    // The page's users first (one more: whether another page follows), by
    // the primary key (month, user_id, model), then their rows. user_id >
    // '' includes every user: ids are never empty. COLLATE "C": the same
    // byte order as SQLite's, whatever the database's locale.
    Rows rows = c.Run(
        "SELECT u.month, u.model, u.replies, u.credits_charged, "
        "u.prompt_tokens, u.completion_tokens, u.user_id FROM usage AS u "
        "JOIN (SELECT DISTINCT user_id COLLATE \"C\" AS user_id FROM usage "
        "WHERE month = $1 AND user_id COLLATE \"C\" > $2 ORDER BY 1 "
        "LIMIT $3) AS page ON page.user_id = u.user_id WHERE u.month = $1 "
        "ORDER BY u.user_id COLLATE \"C\", u.replies DESC, u.model",
        {Text(month), Text(after.value_or("")), Int(page_size + 1)});
    std::vector<UserUsageRecord> users = ReadUsage(rows, /*with_user=*/true);
    UsagePage page;
    if (static_cast<int>(users.size()) > page_size) {
      users.resize(static_cast<size_t>(page_size));
      page.next = users.back().user_id;
    }
    page.users = std::move(users);
    return page;
  });
}

// --- Users' data rights
// --------------------------------------------------------------

absl::StatusOr<ErasedData> PostgresStore::EraseUserData(
    absl::string_view user_id) {
  return Write(
      "erase user data", [&](Connection& c) -> absl::StatusOr<ErasedData> {
        // The user's row first, as every writer does: a send committing
        // meanwhile finishes before, or waits and finds its session gone.
        c.Run("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", {Text(user_id)});
        ErasedData data;
        data.messages = c.Run(
                             "DELETE FROM messages WHERE session_id IN "
                             "(SELECT id FROM sessions WHERE user_id = $1)",
                             {Text(user_id)})
                            .affected();
        data.sessions =
            c.Run("DELETE FROM sessions WHERE user_id = $1", {Text(user_id)})
                .affected();
        c.Run("DELETE FROM idempotency_keys WHERE user_id = $1",
              {Text(user_id)});
        return data;
      });
}

absl::StatusOr<int> PostgresStore::PurgeSessions(absl::Time cutoff, int limit) {
  return Write("purge sessions", [&](Connection& c) -> absl::StatusOr<int> {
    // A bounded batch by the updated_at index; sessions a send holds (its
    // commit updates the row) are skipped, not waited for.
    return c
        .Run(
            "WITH old AS (SELECT id FROM sessions WHERE updated_at < $1 "
            "ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED), "
            "gone AS (DELETE FROM messages WHERE session_id IN "
            "(SELECT id FROM old)) "
            "DELETE FROM sessions WHERE id IN (SELECT id FROM old)",
            {Micros(cutoff), Int(limit)})
        .affected();
  });
}

}  // namespace coach
