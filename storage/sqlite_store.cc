#include "storage/sqlite_store.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/ids.h"
#include "base/log.h"
#include "storage/record_columns.h"
#include "storage/sqlite_schema.h"

namespace coach {

class SqliteStore::Connection {
 public:
  Connection(const std::string& path, int flags, int busy_timeout_ms)
      : db_(path, flags, busy_timeout_ms) {
    db_.exec("PRAGMA foreign_keys = ON");
    // NORMAL is durable across application crashes in WAL mode; only an OS
    // crash may lose the last commits, never corrupt the file.
    db_.exec("PRAGMA synchronous = NORMAL");
    // Deleted rows' bytes are overwritten with zeros, not left in free
    // pages: erased conversations leave no text in the file (with the WAL
    // checkpointed, see SqliteStore::Checkpoint).
    db_.exec("PRAGMA secure_delete = ON");
  }

  SQLite::Database& db() { return db_; }

  // A cached statement, unbound, reset when the lease ends: a statement left
  // mid-result would keep a read transaction (and a stale snapshot) open.
  class Statement {
   public:
    explicit Statement(SQLite::Statement& statement) : statement_(statement) {}
    ~Statement() { statement_.tryReset(); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    SQLite::Statement* operator->() { return &statement_; }
    SQLite::Statement& operator*() { return statement_; }

   private:
    SQLite::Statement& statement_;
  };

  // Keyed by the pointer: every SQL text is a constant of this file.
  Statement Prepare(const char* sql) {
    std::unique_ptr<SQLite::Statement>& slot = statements_[sql];
    if (slot == nullptr) {
      slot = std::make_unique<SQLite::Statement>(db_, sql);
    } else {
      slot->clearBindings();
    }
    return Statement(*slot);
  }

 private:
  SQLite::Database db_;
  std::unordered_map<const char*, std::unique_ptr<SQLite::Statement>>
      statements_;
};

namespace {

using Connection = SqliteStore::Connection;

int64_t ToColumn(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromColumn(const SQLite::Column& c) {
  return absl::FromUnixMicros(c.getInt64());
}

// --- Error handling: SQLiteCpp throws; the Store contract returns values. --

absl::Status ErrorFromException(absl::string_view operation,
                                const std::exception& e) {
  if (const auto* sqlite = dynamic_cast<const SQLite::Exception*>(&e);
      sqlite != nullptr && (sqlite->getErrorCode() == SQLITE_BUSY ||
                            sqlite->getErrorCode() == SQLITE_LOCKED)) {
    return absl::UnavailableError(
        absl::StrCat("sqlite ", operation, ": ", e.what()));
  }
  return absl::InternalError(
      absl::StrCat("sqlite ", operation, ": ", e.what()));
}

template <typename Body>
auto Guarded(absl::string_view operation, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::exception& e) {
    return ErrorFromException(operation, e);
  }
}

// --- Row readers ------------------------------------------------------------

constexpr const char* kSelectUser =
    "SELECT id, plan, credits, credit_period, created_at FROM users "
    "WHERE id = ?1";

UserRecord ReadUser(SQLite::Statement& q) {
  UserRecord user;
  user.id = q.getColumn(0).getString();
  user.plan = PlanFromName(q.getColumn(1).getString());
  user.status = UserStatus::kActive;
  user.credits = q.getColumn(2).getInt();
  user.credit_period = q.getColumn(3).getString();
  user.created_at = FromColumn(q.getColumn(4));
  return user;
}

std::optional<UserRecord> LoadUser(Connection& c, absl::string_view user_id) {
  Connection::Statement q = c.Prepare(kSelectUser);
  q->bind(1, std::string(user_id));
  if (!q->executeStep()) return std::nullopt;
  return ReadUser(*q);
}

constexpr const char* kSessionColumns =
    "id, user_id, title, last_message, message_count, created_at, updated_at";

// kSessionColumns, from column `first` on.
SessionRecord ReadSession(SQLite::Statement& q, int first = 0) {
  SessionRecord s;
  s.id = q.getColumn(first).getString();
  s.user_id = q.getColumn(first + 1).getString();
  s.title = q.getColumn(first + 2).getString();
  s.last_message = q.getColumn(first + 3).getString();
  s.message_count = q.getColumn(first + 4).getInt();
  s.created_at = FromColumn(q.getColumn(first + 5));
  s.updated_at = FromColumn(q.getColumn(first + 6));
  return s;
}

std::optional<SessionRecord> LoadSession(Connection& c,
                                         absl::string_view session_id) {
  static const std::string sql =
      absl::StrCat("SELECT ", kSessionColumns, " FROM sessions WHERE id = ?1");
  Connection::Statement q = c.Prepare(sql.c_str());
  q->bind(1, std::string(session_id));
  if (!q->executeStep()) return std::nullopt;
  return ReadSession(*q);
}

// The columns id, session_id, role, content, created_at, model,
// prompt_tokens, completion_tokens, in that order.
MessageRecord ReadMessage(SQLite::Statement& q) {
  MessageRecord message{
      .id = q.getColumn(0).getString(),
      .session_id = q.getColumn(1).getString(),
      .role = RoleFromName(q.getColumn(2).getString()),
      .content = q.getColumn(3).getString(),
      .created_at = FromColumn(q.getColumn(4)),
      .model = q.getColumn(5).getString(),  // "" for NULL
      .usage = std::nullopt,
  };
  if (!q.getColumn(6).isNull()) {
    message.usage = TokenUsage{.prompt_tokens = q.getColumn(6).getInt(),
                               .completion_tokens = q.getColumn(7).getInt()};
  }
  return message;
}

// --- Write helpers (called inside a write transaction) ----------------------

// The user row of a write transaction (the writer's lock covers it) and
// its rate state.
struct LockedUser {
  UserRecord user;
  RateState rates;
};

// Creates the user if unknown, then applies the monthly refill.
LockedUser LockUser(Connection& c, absl::string_view user_id,
                    const CreditTerms& terms, absl::Time now) {
  Connection::Statement insert = c.Prepare(
      "INSERT INTO users (id, plan, status, credits, credit_period, "
      "created_at) "
      "VALUES (?1, ?2, 'ACTIVE', ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING");
  insert->bind(1, std::string(user_id));
  insert->bind(2, PlanName(terms.new_user_plan));
  insert->bind(3, RefilledCredits(terms, terms.new_user_plan));
  insert->bind(4, terms.period);
  insert->bind(5, ToColumn(now));
  insert->exec();

  Connection::Statement q = c.Prepare(
      "SELECT id, plan, credits, credit_period, created_at, send_rate_tat, "
      "session_rate_tat FROM users WHERE id = ?1");
  q->bind(1, std::string(user_id));
  q->executeStep();
  LockedUser locked{.user = ReadUser(*q),
                    .rates = {.send_tat = FromColumn(q->getColumn(5)),
                              .session_tat = FromColumn(q->getColumn(6))}};
  UserRecord& user = locked.user;
  if (user.credit_period != terms.period) {
    user.credits = RefilledCredits(terms, user.plan);
    user.credit_period = terms.period;
    Connection::Statement refill = c.Prepare(
        "UPDATE users SET credits = ?2, credit_period = ?3 WHERE id = ?1");
    refill->bind(1, user.id);
    refill->bind(2, user.credits);
    refill->bind(3, user.credit_period);
    refill->exec();
  }
  return locked;
}

UserRecord EnsureUser(Connection& c, absl::string_view user_id,
                      const CreditTerms& terms, absl::Time now) {
  return LockUser(c, user_id, terms, now).user;
}

// The rest of an AdmissionState, in one statement: live sends; the user's
// sessions when `count_sessions`; the session `session_id` names, if any.
AdmissionState ReadAdmissionState(Connection& c, LockedUser locked,
                                  absl::string_view session_id,
                                  bool count_sessions, absl::Time now) {
  static const std::string sql = absl::StrCat(
      "SELECT (SELECT COUNT(*) FROM credit_reservations WHERE user_id = ?1 "
      "AND expires_at > ?2), CASE WHEN ?4 THEN (SELECT COUNT(*) FROM sessions "
      "WHERE user_id = ?1) ELSE 0 END, s.",
      absl::StrReplaceAll(kSessionColumns, {{", ", ", s."}}),
      " FROM (SELECT 1) AS one LEFT JOIN sessions AS s ON s.id = ?3");
  Connection::Statement q = c.Prepare(sql.c_str());
  q->bind(1, locked.user.id);
  q->bind(2, ToColumn(now));
  q->bind(3, std::string(session_id));
  q->bind(4, count_sessions ? 1 : 0);
  q->executeStep();
  AdmissionState state{.user = std::move(locked.user),
                       .rates = locked.rates,
                       .live_sends = q->getColumn(0).getInt(),
                       .sessions = q->getColumn(1).getInt(),
                       .session = std::nullopt};
  if (!q->getColumn(2).isNull()) state.session = ReadSession(*q, 2);
  return state;
}

void WriteRates(Connection& c, absl::string_view user_id,
                const RateState& rates) {
  Connection::Statement q = c.Prepare(
      "UPDATE users SET send_rate_tat = ?2, session_rate_tat = ?3 "
      "WHERE id = ?1");
  q->bind(1, std::string(user_id));
  q->bind(2, ToColumn(rates.send_tat));
  q->bind(3, ToColumn(rates.session_tat));
  q->exec();
}

// Inserts `s` unless its user already owns `max_user_sessions` (> 0)
// sessions: false then, and nothing is inserted. One conditional statement
// inside the caller's write transaction, so two racing inserts at the
// maximum cannot both pass.
bool InsertSession(Connection& c, const SessionRecord& s,
                   int max_user_sessions) {
  Connection::Statement q = c.Prepare(
      "INSERT INTO sessions (id, user_id, title, last_message, message_count, "
      "created_at, updated_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 "
      "WHERE ?8 <= 0 OR (SELECT COUNT(*) FROM sessions WHERE user_id = ?2) < "
      "?8");
  q->bind(1, s.id);
  q->bind(2, s.user_id);
  q->bind(3, s.title);
  q->bind(4, s.last_message);
  q->bind(5, s.message_count);
  q->bind(6, ToColumn(s.created_at));
  q->bind(7, ToColumn(s.updated_at));
  q->bind(8, max_user_sessions);
  return q->exec() > 0;
}

void InsertMessage(Connection& c, const MessageRecord& m) {
  Connection::Statement q = c.Prepare(
      "INSERT INTO messages (id, session_id, role, content, created_at, "
      "model, prompt_tokens, completion_tokens) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  q->bind(1, m.id);
  q->bind(2, m.session_id);
  q->bind(3, RoleName(m.role));
  q->bind(4, m.content);
  q->bind(5, ToColumn(m.created_at));
  // Unbound parameters are NULL (the statement's bindings were cleared).
  if (!m.model.empty()) q->bind(6, m.model);
  if (m.usage.has_value()) {
    q->bind(7, m.usage->prompt_tokens);
    q->bind(8, m.usage->completion_tokens);
  }
  q->exec();
}

// Settles the exchange's reservation (if any): removes the hold and charges
// the credit into result.remaining_credits. RESOURCE_EXHAUSTED when no
// credit is left to charge.
absl::Status Charge(Connection& c, const Exchange& exchange,
                    ExchangeResult& result) {
  if (!exchange.reservation.has_value()) return absl::OkStatus();
  const CreditReservation& reservation = *exchange.reservation;
  Connection::Statement settle =
      c.Prepare("DELETE FROM credit_reservations WHERE id = ?1");
  settle->bind(1, reservation.id);
  settle->exec();
  const UserRecord user =
      EnsureUser(c, reservation.user_id, exchange.terms, exchange.now);
  // Moved to an unlimited plan while the coach was writing: nothing to
  // charge.
  if (!exchange.terms.AllowanceOf(user.plan).has_value()) {
    return absl::OkStatus();
  }
  // Conditional: credits never go below zero, whatever happened to the
  // reservation meanwhile (expired, an admin changed the plan).
  Connection::Statement charge = c.Prepare(
      "UPDATE users SET credits = credits - 1 "
      "WHERE id = ?1 AND credits > 0 RETURNING credits");
  charge->bind(1, reservation.user_id);
  if (!charge->executeStep()) {
    return absl::ResourceExhaustedError("no credit left to charge");
  }
  result.remaining_credits = charge->getColumn(0).getInt();
  return absl::OkStatus();
}

// Stores the key's final response if `done.claim_id` still holds it
// unfinished; false, and nothing changed, otherwise.
bool CompleteKey(Connection& c, const IdempotencyCompletion& done,
                 std::optional<int32_t> remaining_credits) {
  Connection::Statement q = c.Prepare(
      "UPDATE idempotency_keys SET claim = NULL, response = ?4, "
      "remaining_credits = ?5 "
      "WHERE user_id = ?1 AND idempotency_key = ?2 AND claim = ?3");
  q->bind(1, done.user_id);
  q->bind(2, done.key);
  q->bind(3, done.claim_id);
  q->bind(4, done.response);
  if (remaining_credits.has_value()) q->bind(5, *remaining_credits);
  return q->exec() > 0;
}

// Counts the exchange's reply in the usage ledger (its user, month and
// model), with the credit if `charged`.
void CountUsage(Connection& c, const Exchange& exchange, bool charged) {
  const MessageRecord& reply = exchange.assistant_message;
  Connection::Statement q = c.Prepare(
      "INSERT INTO usage (month, user_id, model, replies, credits_charged, "
      "prompt_tokens, completion_tokens) VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6) "
      "ON CONFLICT (month, user_id, model) DO UPDATE SET "
      "replies = replies + 1, "
      "credits_charged = credits_charged + excluded.credits_charged, "
      "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
      "completion_tokens = completion_tokens + excluded.completion_tokens");
  q->bind(1, exchange.terms.period);
  q->bind(2, exchange.user_id);
  q->bind(3, reply.model);
  q->bind(4, charged ? 1 : 0);
  q->bind(5, static_cast<int64_t>(
                 reply.usage.has_value() ? reply.usage->prompt_tokens : 0));
  q->bind(6, static_cast<int64_t>(
                 reply.usage.has_value() ? reply.usage->completion_tokens : 0));
  q->exec();
}

// The usage rows of `q` (month, model, replies, credits_charged,
// prompt_tokens, completion_tokens, then with `with_user` the user_id),
// grouped by user and month (the rows must come so), one record each.
std::vector<UserUsageRecord> ReadUsage(SQLite::Statement& q, bool with_user) {
  std::vector<UserUsageRecord> out;
  while (q.executeStep()) {
    const std::string month = q.getColumn(0).getString();
    const std::string user = with_user ? q.getColumn(6).getString() : "";
    if (out.empty() || out.back().usage.month != month ||
        out.back().user_id != user) {
      out.emplace_back().user_id = user;
      out.back().usage.month = month;
    }
    UsageRecord& usage = out.back().usage;
    ModelUsageRecord model{.model = q.getColumn(1).getString(),
                           .replies = q.getColumn(2).getInt(),
                           .prompt_tokens = q.getColumn(4).getInt64(),
                           .completion_tokens = q.getColumn(5).getInt64()};
    usage.replies += model.replies;
    usage.credits_charged += q.getColumn(3).getInt();
    usage.prompt_tokens += model.prompt_tokens;
    usage.completion_tokens += model.completion_tokens;
    usage.by_model.push_back(std::move(model));
  }
  return out;
}

// Claims `claim`'s key for the current run's `owner` (Store's "Idempotency
// keys"), inside a write transaction.
ClaimOutcome ClaimKey(Connection& c, const IdempotencyClaim& claim,
                      const HoldOwner& owner) {
  // One writer at a time: the row read here cannot change before the
  // transaction ends.
  Connection::Statement existing = c.Prepare(
      "SELECT request_hash, claim, claim_expires_at, expires_at, "
      "response, remaining_credits FROM idempotency_keys "
      "WHERE user_id = ?1 AND idempotency_key = ?2");
  existing->bind(1, claim.user_id);
  existing->bind(2, claim.key);
  if (existing->executeStep()) {
    IdempotencyKeyRow row{
        .request_hash = existing->getColumn(0).getString(),
        .claim = std::nullopt,
        .claim_expires_at = FromColumn(existing->getColumn(2)),
        .expires_at = FromColumn(existing->getColumn(3)),
        .response = std::nullopt,
        .remaining_credits = std::nullopt};
    if (!existing->getColumn(1).isNull()) {
      row.claim = existing->getColumn(1).getString();
    }
    if (!existing->getColumn(4).isNull()) {
      row.response = existing->getColumn(4).getString();
    }
    if (!existing->getColumn(5).isNull()) {
      row.remaining_credits = existing->getColumn(5).getInt();
    }
    if (auto held = HeldKeyOutcome(row, claim); held.has_value()) {
      return *held;
    }
  }
  // Free, expired or abandoned: now this claim's.
  Connection::Statement take = c.Prepare(
      "INSERT OR REPLACE INTO idempotency_keys (user_id, "
      "idempotency_key, request_hash, claim, instance, run, "
      "claim_expires_at, expires_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  take->bind(1, claim.user_id);
  take->bind(2, claim.key);
  take->bind(3, claim.request_hash);
  take->bind(4, claim.claim_id);
  take->bind(5, owner.instance);
  take->bind(6, owner.run);
  take->bind(7, ToColumn(claim.claim_expires_at));
  take->bind(8, ToColumn(claim.expires_at));
  take->exec();
  return ClaimOutcome{.state = ClaimOutcome::State::kClaimed,
                      .stored = std::nullopt};
}

void DeleteClaim(Connection& c, absl::string_view user_id,
                 absl::string_view key, absl::string_view claim_id) {
  Connection::Statement q = c.Prepare(
      "DELETE FROM idempotency_keys WHERE user_id = ?1 "
      "AND idempotency_key = ?2 AND claim = ?3");
  q->bind(1, std::string(user_id));
  q->bind(2, std::string(key));
  q->bind(3, std::string(claim_id));
  q->exec();
}

}  // namespace

// --- Opening
// ------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const SqliteOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("sqlite: the database path is empty");
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore());
  absl::Status status = Guarded("open", [&]() -> absl::Status {
    auto writer = std::make_unique<Connection>(
        options.path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE,
        options.busy_timeout_ms);
    // WAL lets readers run beside the writer; it is a property of the file.
    writer->db().exec("PRAGMA journal_mode = WAL");
    if (absl::Status migrated = MigrateSchema(writer->db()); !migrated.ok()) {
      return migrated;
    }
    absl::MutexLock write_lock(&store->write_mu_);
    store->writer_ = std::move(writer);
    absl::MutexLock read_lock(&store->readers_mu_);
    for (int i = 0; i < std::max(1, options.reader_connections); ++i) {
      store->idle_readers_.push_back(std::make_unique<Connection>(
          options.path, SQLite::OPEN_READONLY, options.busy_timeout_ms));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return store;
}

SqliteStore::~SqliteStore() = default;

// --- Connection leasing
// ---------------------------------------------------------

std::unique_ptr<SqliteStore::Connection> SqliteStore::AcquireReader() {
  absl::MutexLock lock(&readers_mu_);
  readers_mu_.Await(absl::Condition(
      +[](std::vector<std::unique_ptr<Connection>>* idle) {
        return !idle->empty();
      },
      &idle_readers_));
  std::unique_ptr<Connection> c = std::move(idle_readers_.back());
  idle_readers_.pop_back();
  return c;
}

void SqliteStore::ReleaseReader(std::unique_ptr<Connection> connection) {
  absl::MutexLock lock(&readers_mu_);
  idle_readers_.push_back(std::move(connection));
}

// Borrows a reader connection for one read.
class SqliteStore::ReaderLease {
 public:
  explicit ReaderLease(SqliteStore& store)
      : store_(store), connection_(store.AcquireReader()) {}
  ~ReaderLease() { store_.ReleaseReader(std::move(connection_)); }
  Connection& operator*() { return *connection_; }

 private:
  SqliteStore& store_;
  std::unique_ptr<Connection> connection_;
};

template <typename Body>
auto SqliteStore::Read(absl::string_view operation, Body&& body)
    -> decltype(body(std::declval<Connection&>())) {
  return Guarded(operation,
                 [&]() -> decltype(body(std::declval<Connection&>())) {
                   ReaderLease c(*this);
                   return body(*c);
                 });
}

template <typename Body>
auto SqliteStore::Write(absl::string_view operation, Body&& body)
    -> decltype(body(std::declval<Connection&>())) {
  absl::MutexLock lock(&write_mu_);
  return Guarded(operation, [&]() -> decltype(body(*writer_)) {
    SQLite::Transaction txn(writer_->db(),
                            SQLite::TransactionBehavior::IMMEDIATE);
    auto result = body(*writer_);
    if (result.ok()) {
      txn.commit();
      write_transactions_.fetch_add(1, std::memory_order_relaxed);
    }
    return result;
  });
}

// --- Server runs
// ---------------------------------------------------------------

absl::StatusOr<int> SqliteStore::BeginRun(absl::string_view instance) {
  const HoldOwner owner{.instance = std::string(instance),
                        .run = NewRandomId()};
  absl::StatusOr<int> dropped =
      Write("begin run", [&](Connection& c) -> absl::StatusOr<int> {
        Connection::Statement claims = c.Prepare(
            "DELETE FROM idempotency_keys WHERE instance = ?1 AND run <> ?2 "
            "AND claim IS NOT NULL");
        claims->bind(1, owner.instance);
        claims->bind(2, owner.run);
        claims->exec();
        Connection::Statement q = c.Prepare(
            "DELETE FROM credit_reservations WHERE instance = ?1 AND run <> "
            "?2");
        q->bind(1, owner.instance);
        q->bind(2, owner.run);
        return q->exec();
      });
  if (dropped.ok()) {
    absl::MutexLock lock(&run_mu_);
    owner_ = owner;
  }
  return dropped;
}

HoldOwner SqliteStore::Owner() {
  absl::MutexLock lock(&run_mu_);
  return owner_;
}

// --- Users
// ----------------------------------------------------------------------

absl::StatusOr<std::optional<UserRecord>> SqliteStore::FindUser(
    absl::string_view user_id) {
  return Read("find user",
              [&](Connection& c) -> absl::StatusOr<std::optional<UserRecord>> {
                return LoadUser(c, user_id);
              });
}

absl::StatusOr<UserRecord> SqliteStore::SetPlan(absl::string_view user_id,
                                                Plan plan,
                                                const CreditTerms& terms,
                                                absl::Time now) {
  return Write("set plan", [&](Connection& c) -> absl::StatusOr<UserRecord> {
    UserRecord user = EnsureUser(c, user_id, terms, now);
    user.plan = plan;
    user.credits = RefilledCredits(terms, plan);
    Connection::Statement q =
        c.Prepare("UPDATE users SET plan = ?2, credits = ?3 WHERE id = ?1");
    q->bind(1, user.id);
    q->bind(2, PlanName(plan));
    q->bind(3, user.credits);
    q->exec();
    return user;
  });
}

absl::StatusOr<UserRecord> SqliteStore::AddCredits(absl::string_view user_id,
                                                   int32_t credits,
                                                   int32_t max_balance,
                                                   const CreditTerms& terms,
                                                   absl::Time now) {
  return Write("add credits", [&](Connection& c) -> absl::StatusOr<UserRecord> {
    UserRecord user = EnsureUser(c, user_id, terms, now);
    // The sum is computed by SQLite in 64 bits: it cannot wrap.
    Connection::Statement q = c.Prepare(
        "UPDATE users SET credits = credits + ?2 "
        "WHERE id = ?1 AND credits + ?2 <= ?3 RETURNING credits");
    q->bind(1, user.id);
    q->bind(2, credits);
    q->bind(3, max_balance);
    if (!q->executeStep()) {
      return absl::OutOfRangeError(
          absl::StrCat("balance would exceed ", max_balance));
    }
    user.credits = q->getColumn(0).getInt();
    return user;
  });
}

namespace {
// A user's totals, from the columns `column` and `column + 1`.
UserTotals ReadTotals(SQLite::Statement& q, int column) {
  return UserTotals{.sessions = q.getColumn(column).getInt(),
                    .messages = q.getColumn(column + 1).getInt()};
}
}  // namespace

absl::StatusOr<UserTotals> SqliteStore::CountUserActivity(
    absl::string_view user_id) {
  return Read("count activity",
              [&](Connection& c) -> absl::StatusOr<UserTotals> {
                Connection::Statement q = c.Prepare(
                    "SELECT COUNT(*), COALESCE(SUM(message_count), 0) "
                    "FROM sessions WHERE user_id = ?1");
                q->bind(1, std::string(user_id));
                q->executeStep();
                return ReadTotals(*q, 0);
              });
}

absl::StatusOr<UserActivity> SqliteStore::FindUserActivity(
    absl::string_view user_id) {
  // Always one row: the user's columns (NULL when it has no row), then the
  // totals. One statement is one read transaction: the stats request's
  // lock and unlock of the database, once instead of twice.
  return Read("find user activity",
              [&](Connection& c) -> absl::StatusOr<UserActivity> {
                Connection::Statement q = c.Prepare(
                    "SELECT u.id, u.plan, u.credits, u.credit_period, "
                    "u.created_at, a.sessions, a.messages FROM ("
                    "SELECT COUNT(*) AS sessions, COALESCE(SUM(message_count), "
                    "0) AS messages FROM sessions WHERE user_id = ?1) AS a "
                    "LEFT JOIN users AS u ON u.id = ?1");
                q->bind(1, std::string(user_id));
                q->executeStep();
                UserActivity activity{.user = std::nullopt,
                                      .totals = ReadTotals(*q, 5)};
                if (!q->isColumnNull(0)) activity.user = ReadUser(*q);
                return activity;
              });
}

// --- Credits
// --------------------------------------------------------------------

absl::StatusOr<SendAdmissionResult> SqliteStore::AdmitSend(
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
        WriteRates(c, request.user_id, answer.rates);
        if (!answer.admitted) {
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
        Connection::Statement sweep = c.Prepare(
            "DELETE FROM credit_reservations WHERE user_id = ?1 "
            "AND expires_at <= ?2");
        sweep->bind(1, request.user_id);
        sweep->bind(2, ToColumn(request.now));
        sweep->exec();
        Connection::Statement insert = c.Prepare(
            "INSERT INTO credit_reservations (user_id, expires_at, instance, "
            "run) VALUES (?1, ?2, ?3, ?4)");
        insert->bind(1, request.user_id);
        insert->bind(2, ToColumn(request.expires_at));
        insert->bind(3, owner.instance);
        insert->bind(4, owner.run);
        insert->exec();
        result.reservation = CreditReservation{
            .id = c.db().getLastInsertRowid(), .user_id = request.user_id};
        return result;
      });
}

absl::Status SqliteStore::ReleaseCredit(const CreditReservation& reservation) {
  return Write("release credit", [&](Connection& c) -> absl::Status {
    Connection::Statement q =
        c.Prepare("DELETE FROM credit_reservations WHERE id = ?1");
    q->bind(1, reservation.id);
    q->exec();
    return absl::OkStatus();
  });
}

// --- Sessions and messages
// ------------------------------------------------------------

absl::StatusOr<bool> SqliteStore::CreateSession(const SessionRecord& session,
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

absl::StatusOr<std::optional<SessionRecord>> SqliteStore::FindSession(
    absl::string_view session_id) {
  return Read(
      "find session",
      [&](Connection& c) -> absl::StatusOr<std::optional<SessionRecord>> {
        return LoadSession(c, session_id);
      });
}

absl::StatusOr<std::vector<SessionRecord>> SqliteStore::ListSessions(
    absl::string_view user_id, int limit) {
  static const std::string sql =
      absl::StrCat("SELECT ", kSessionColumns,
                   " FROM sessions WHERE user_id = ?1 "
                   "ORDER BY updated_at DESC, rowid DESC LIMIT ?2");
  return Read("list sessions",
              [&](Connection& c) -> absl::StatusOr<std::vector<SessionRecord>> {
                Connection::Statement q = c.Prepare(sql.c_str());
                q->bind(1, std::string(user_id));
                q->bind(2, limit);
                std::vector<SessionRecord> sessions;
                while (q->executeStep()) sessions.push_back(ReadSession(*q));
                return sessions;
              });
}

absl::StatusOr<std::vector<MessageRecord>> SqliteStore::ListRecentMessages(
    absl::string_view session_id, int limit) {
  return Read("list messages",
              [&](Connection& c) -> absl::StatusOr<std::vector<MessageRecord>> {
                Connection::Statement q = c.Prepare(
                    "SELECT id, session_id, role, content, created_at, model, "
                    "prompt_tokens, completion_tokens FROM ("
                    "  SELECT * FROM messages"
                    "  WHERE session_id = ?1 ORDER BY seq DESC LIMIT ?2"
                    ") ORDER BY seq ASC");
                q->bind(1, std::string(session_id));
                q->bind(2, limit);
                std::vector<MessageRecord> messages;
                while (q->executeStep()) messages.push_back(ReadMessage(*q));
                return messages;
              });
}

absl::StatusOr<SessionPage> SqliteStore::ListSessionsPage(
    absl::string_view user_id, const std::optional<SessionKey>& after,
    int page_size) {
  // One row more than the page: whether another page follows. The index
  // (user_id, updated_at) holds the rowid too, so both read it backwards.
  static const std::string first =
      absl::StrCat("SELECT ", kSessionColumns,
                   ", rowid FROM sessions WHERE user_id = ?1 "
                   "ORDER BY updated_at DESC, rowid DESC LIMIT ?4");
  static const std::string next =
      absl::StrCat("SELECT ", kSessionColumns,
                   ", rowid FROM sessions WHERE user_id = ?1 "
                   "AND (updated_at, rowid) < (?2, ?3) "
                   "ORDER BY updated_at DESC, rowid DESC LIMIT ?4");
  return Read(
      "list sessions page", [&](Connection& c) -> absl::StatusOr<SessionPage> {
        Connection::Statement q =
            c.Prepare(after.has_value() ? next.c_str() : first.c_str());
        q->bind(1, std::string(user_id));
        if (after.has_value()) {
          q->bind(2, ToColumn(after->updated_at));
          q->bind(3, after->seq);
        }
        q->bind(4, page_size + 1);
        SessionPage page;
        SessionKey last;
        while (q->executeStep()) {
          if (static_cast<int>(page.sessions.size()) == page_size) {
            page.next = last;  // one more row exists
            break;
          }
          page.sessions.push_back(ReadSession(*q));
          last = SessionKey{.updated_at = page.sessions.back().updated_at,
                            .seq = q->getColumn(7).getInt64()};
        }
        return page;
      });
}

absl::StatusOr<MessagePage> SqliteStore::ListMessagesPage(
    absl::string_view session_id, std::optional<int64_t> after, int page_size) {
  return Read("list messages page",
              [&](Connection& c) -> absl::StatusOr<MessagePage> {
                Connection::Statement q = c.Prepare(
                    "SELECT id, session_id, role, content, created_at, model, "
                    "prompt_tokens, completion_tokens, seq FROM messages "
                    "WHERE session_id = ?1 AND seq > ?2 ORDER BY seq ASC "
                    "LIMIT ?3");
                q->bind(1, std::string(session_id));
                // seq starts at 1: 0 is before every message.
                q->bind(2, after.value_or(0));
                q->bind(3, page_size + 1);
                MessagePage page;
                int64_t last = 0;
                while (q->executeStep()) {
                  if (static_cast<int>(page.messages.size()) == page_size) {
                    page.next = last;
                    break;
                  }
                  page.messages.push_back(ReadMessage(*q));
                  last = q->getColumn(8).getInt64();
                }
                return page;
              });
}

absl::StatusOr<SessionRecord> SqliteStore::RenameSession(
    absl::string_view session_id, absl::string_view title, absl::Time now) {
  return Write(
      "rename session", [&](Connection& c) -> absl::StatusOr<SessionRecord> {
        Connection::Statement q = c.Prepare(
            "UPDATE sessions SET title = ?2, updated_at = ?3 WHERE id = ?1");
        q->bind(1, std::string(session_id));
        q->bind(2, std::string(title));
        q->bind(3, ToColumn(now));
        if (q->exec() == 0) return absl::NotFoundError("session not found");
        return *LoadSession(c, session_id);
      });
}

absl::Status SqliteStore::DeleteSession(absl::string_view session_id) {
  const absl::Status deleted =
      Write("delete session", [&](Connection& c) -> absl::Status {
        Connection::Statement messages =
            c.Prepare("DELETE FROM messages WHERE session_id = ?1");
        messages->bind(1, std::string(session_id));
        messages->exec();
        Connection::Statement session =
            c.Prepare("DELETE FROM sessions WHERE id = ?1");
        session->bind(1, std::string(session_id));
        if (session->exec() == 0)
          return absl::NotFoundError("session not found");
        return absl::OkStatus();
      });
  if (deleted.ok()) Checkpoint();
  return deleted;
}

absl::StatusOr<ExchangeResult> SqliteStore::CommitExchange(
    const Exchange& exchange) {
  return Write(
      "commit exchange", [&](Connection& c) -> absl::StatusOr<ExchangeResult> {
        if (exchange.new_session.has_value()) {
          EnsureUser(c, exchange.new_session->user_id, exchange.terms,
                     exchange.now);
          // Inserted as it is after the exchange: one statement.
          if (!InsertSession(c, WithExchange(*exchange.new_session, exchange),
                             exchange.max_user_sessions)) {
            return absl::FailedPreconditionError("session limit reached");
          }
        } else {
          Connection::Statement touch = c.Prepare(
              "UPDATE sessions SET last_message = ?2, "
              "message_count = message_count + 2, updated_at = ?3 "
              "WHERE id = ?1");
          touch->bind(1, exchange.session_id);
          touch->bind(2, exchange.last_message);
          touch->bind(3, ToColumn(exchange.now));
          if (touch->exec() == 0) {
            return absl::NotFoundError("session not found");
          }
        }
        InsertMessage(c, exchange.user_message);
        InsertMessage(c, exchange.assistant_message);

        ExchangeResult result;
        if (absl::Status charged = Charge(c, exchange, result); !charged.ok()) {
          return charged;
        }
        CountUsage(c, exchange,
                   /*charged=*/result.remaining_credits.has_value());
        if (exchange.idempotency.has_value() &&
            !CompleteKey(c, *exchange.idempotency, result.remaining_credits)) {
          return absl::AbortedError("idempotency claim lost");
        }
        return result;
      });
}

// --- Idempotency keys
// -------------------------------------------------------------

absl::Status SqliteStore::ReleaseIdempotencyKey(absl::string_view user_id,
                                                absl::string_view key,
                                                absl::string_view claim_id) {
  return Write("release idempotency key", [&](Connection& c) -> absl::Status {
    DeleteClaim(c, user_id, key, claim_id);
    return absl::OkStatus();
  });
}

absl::Status SqliteStore::CompleteIdempotencyKey(absl::string_view user_id,
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

absl::StatusOr<int> SqliteStore::PurgeIdempotencyKeys(absl::Time now,
                                                      int limit) {
  return Write("purge idempotency keys",
               [&](Connection& c) -> absl::StatusOr<int> {
                 // A bounded batch by the expiry index: the writer is held
                 // briefly, and sends queue behind it no longer.
                 Connection::Statement q = c.Prepare(
                     "DELETE FROM idempotency_keys WHERE rowid IN ("
                     "SELECT rowid FROM idempotency_keys "
                     "WHERE expires_at <= ?1 LIMIT ?2)");
                 q->bind(1, ToColumn(now));
                 q->bind(2, limit);
                 return q->exec();
               });
}

// --- Usage
// ------------------------------------------------------------------------

absl::StatusOr<UsageRecord> SqliteStore::GetUsage(absl::string_view user_id,
                                                  absl::string_view month) {
  return Read("get usage", [&](Connection& c) -> absl::StatusOr<UsageRecord> {
    Connection::Statement q = c.Prepare(
        "SELECT month, model, replies, credits_charged, prompt_tokens, "
        "completion_tokens FROM usage WHERE user_id = ?1 AND month = ?2 "
        "ORDER BY replies DESC, model");
    q->bind(1, std::string(user_id));
    q->bind(2, std::string(month));
    std::vector<UserUsageRecord> rows = ReadUsage(*q, /*with_user=*/false);
    if (rows.empty()) {
      UsageRecord none;
      none.month = std::string(month);
      return none;
    }
    return std::move(rows.front().usage);
  });
}

absl::StatusOr<std::vector<UsageRecord>> SqliteStore::ListUserUsage(
    absl::string_view user_id) {
  return Read(
      "list user usage",
      [&](Connection& c) -> absl::StatusOr<std::vector<UsageRecord>> {
        Connection::Statement q = c.Prepare(
            "SELECT month, model, replies, credits_charged, prompt_tokens, "
            "completion_tokens FROM usage WHERE user_id = ?1 "
            "ORDER BY month, replies DESC, model");
        q->bind(1, std::string(user_id));
        std::vector<UsageRecord> months;
        for (UserUsageRecord& row : ReadUsage(*q, /*with_user=*/false)) {
          months.push_back(std::move(row.usage));
        }
        return months;
      });
}

absl::StatusOr<UsagePage> SqliteStore::ListUsage(
    absl::string_view month, const std::optional<std::string>& after,
    int page_size) {
  return Read("list usage", [&](Connection& c) -> absl::StatusOr<UsagePage> {
    // The page's users first (one more: whether another page follows),
    // then their rows, by the primary key (month, user_id, model).
    Connection::Statement q = c.Prepare(
        "SELECT u.month, u.model, u.replies, u.credits_charged, "
        "u.prompt_tokens, u.completion_tokens, u.user_id FROM usage AS u "
        "JOIN (SELECT DISTINCT user_id FROM usage WHERE month = ?1 "
        "AND user_id > ?2 ORDER BY user_id LIMIT ?3) AS page "
        "ON page.user_id = u.user_id WHERE u.month = ?1 "
        "ORDER BY u.user_id, u.replies DESC, u.model");
    q->bind(1, std::string(month));
    q->bind(2, after.value_or(""));
    q->bind(3, page_size + 1);
    // user_id > '' includes every user: ids are never empty.
    std::vector<UserUsageRecord> users = ReadUsage(*q, /*with_user=*/true);
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

absl::StatusOr<ErasedData> SqliteStore::EraseUserData(
    absl::string_view user_id) {
  absl::StatusOr<ErasedData> erased = Write(
      "erase user data", [&](Connection& c) -> absl::StatusOr<ErasedData> {
        const std::string user(user_id);
        Connection::Statement messages = c.Prepare(
            "DELETE FROM messages WHERE session_id IN "
            "(SELECT id FROM sessions WHERE user_id = ?1)");
        messages->bind(1, user);
        ErasedData data{.sessions = 0, .messages = messages->exec()};
        Connection::Statement sessions =
            c.Prepare("DELETE FROM sessions WHERE user_id = ?1");
        sessions->bind(1, user);
        data.sessions = sessions->exec();
        Connection::Statement keys =
            c.Prepare("DELETE FROM idempotency_keys WHERE user_id = ?1");
        keys->bind(1, user);
        keys->exec();
        return data;
      });
  if (erased.ok()) Checkpoint();
  return erased;
}

absl::StatusOr<int> SqliteStore::PurgeSessions(absl::Time cutoff, int limit) {
  absl::StatusOr<int> purged =
      Write("purge sessions", [&](Connection& c) -> absl::StatusOr<int> {
        // The batch's sessions, oldest first by the updated_at index.
        std::vector<std::string> ids;
        Connection::Statement old = c.Prepare(
            "SELECT id FROM sessions WHERE updated_at < ?1 "
            "ORDER BY updated_at LIMIT ?2");
        old->bind(1, ToColumn(cutoff));
        old->bind(2, limit);
        while (old->executeStep()) ids.push_back(old->getColumn(0).getString());
        for (const std::string& id : ids) {
          Connection::Statement messages =
              c.Prepare("DELETE FROM messages WHERE session_id = ?1");
          messages->bind(1, id);
          messages->exec();
          Connection::Statement session =
              c.Prepare("DELETE FROM sessions WHERE id = ?1");
          session->bind(1, id);
          session->exec();
        }
        return static_cast<int>(ids.size());
      });
  if (purged.ok() && *purged > 0) Checkpoint();
  return purged;
}

void SqliteStore::Checkpoint() {
  absl::MutexLock lock(&write_mu_);
  absl::Status done = Guarded("checkpoint", [&]() -> absl::Status {
    // Copies the WAL into the file (whose deleted rows are zeroed) and
    // truncates it, so the WAL's older page images of deleted text go too.
    // Waits (busy timeout) for readers on older snapshots.
    SQLite::Statement q(writer_->db(), "PRAGMA wal_checkpoint(TRUNCATE)");
    if (q.executeStep() && q.getColumn(0).getInt() != 0) {
      return absl::UnavailableError("readers kept the WAL busy");
    }
    return absl::OkStatus();
  });
  if (!done.ok()) {
    // The text is zeroed in the file; the WAL is truncated at the next
    // checkpoint SQLite makes on its own (every 1000 pages).
    LogWarning("sqlite checkpoint after a delete: %s", done.ToString());
  }
}

}  // namespace coach
