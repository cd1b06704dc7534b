#include "storage/postgres_schema.h"

#include <libpq-fe.h>

#include <array>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace coach {
namespace {

// The same tables as SQLite's schema (sqlite_schema.cc: its version 3 is
// our 1, its 4 our 2, its 5 our 3, its 6 our 4), in PostgreSQL's types: times
// are UTC microseconds since the Unix epoch (BIGINT), and `seq` identity
// columns give the insertion order that SQLite's rowid gives (lists break ties
// on it). Every session or message insert happens under its user's or session's
// row lock, so `seq` follows commit order where lists read it.
constexpr std::array<absl::string_view, 4> kMigrations = {
    // 1: users, sessions, messages (with model and token usage), credit
    // holds with the server run that owns them.
    R"sql(
CREATE TABLE users (
  id            TEXT PRIMARY KEY,
  plan          TEXT NOT NULL CHECK (plan IN ('FREE', 'BASIC', 'PREMIUM')),
  status        TEXT NOT NULL CHECK (status IN ('ACTIVE')),
  credits       INTEGER NOT NULL CHECK (credits >= 0),
  credit_period TEXT NOT NULL,
  created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
  seq           BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
  id            TEXT PRIMARY KEY,
  user_id       TEXT NOT NULL REFERENCES users (id),
  title         TEXT NOT NULL,
  last_message  TEXT NOT NULL DEFAULT '',
  message_count INTEGER NOT NULL DEFAULT 0 CHECK (message_count >= 0),
  created_at    BIGINT NOT NULL,
  updated_at    BIGINT NOT NULL
);
CREATE INDEX sessions_by_user_updated ON sessions (user_id, updated_at, seq);

CREATE TABLE messages (
  seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id                TEXT NOT NULL UNIQUE,
  session_id        TEXT NOT NULL REFERENCES sessions (id),
  role              TEXT NOT NULL CHECK (role IN ('USER', 'ASSISTANT')),
  content           TEXT NOT NULL,
  created_at        BIGINT NOT NULL,
  model             TEXT,
  prompt_tokens     INTEGER,
  completion_tokens INTEGER
);
CREATE INDEX messages_by_session ON messages (session_id, seq);

CREATE TABLE credit_reservations (
  id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id    TEXT NOT NULL REFERENCES users (id),
  expires_at BIGINT NOT NULL,
  instance   TEXT NOT NULL DEFAULT '',
  run        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX credit_reservations_by_user
  ON credit_reservations (user_id, expires_at);
CREATE INDEX credit_reservations_by_run ON credit_reservations (instance, run);
)sql",
    // 2: idempotency keys, as SQLite's migration 4 (sqlite_schema.cc).
    R"sql(
CREATE TABLE idempotency_keys (
  user_id           TEXT NOT NULL,
  idempotency_key   TEXT NOT NULL,
  request_hash      TEXT NOT NULL,
  claim             TEXT,
  instance          TEXT NOT NULL DEFAULT '',
  run               TEXT NOT NULL DEFAULT '',
  claim_expires_at  BIGINT NOT NULL,
  expires_at        BIGINT NOT NULL,
  response          TEXT,
  remaining_credits INTEGER,
  PRIMARY KEY (user_id, idempotency_key),
  CHECK ((claim IS NULL) = (response IS NOT NULL))
);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
CREATE INDEX idempotency_keys_by_run ON idempotency_keys (instance, run)
  WHERE claim IS NOT NULL;
)sql",
    // 3: the per-user rate limits' state (RateState), on the user's row, as
    // SQLite's migration 5.
    R"sql(
ALTER TABLE users ADD COLUMN send_rate_tat BIGINT NOT NULL DEFAULT 0,
                  ADD COLUMN session_rate_tat BIGINT NOT NULL DEFAULT 0;
)sql",
    // 4: the usage ledger and the retention purge's index, as SQLite's
    // migration 6.
    R"sql(
CREATE TABLE usage (
  month             TEXT NOT NULL,
  user_id           TEXT NOT NULL,
  model             TEXT NOT NULL,
  replies           INTEGER NOT NULL,
  credits_charged   INTEGER NOT NULL,
  prompt_tokens     BIGINT NOT NULL,
  completion_tokens BIGINT NOT NULL,
  PRIMARY KEY (month, user_id, model)
);
CREATE INDEX usage_by_user ON usage (user_id, month);
CREATE INDEX sessions_by_updated ON sessions (updated_at);
)sql",
};

using Result = std::unique_ptr<PGresult, decltype(&PQclear)>;

// Runs `sql` (no parameters); OK if it succeeded, else INTERNAL with the
// server's message.
absl::Status Exec(PGconn* c, const std::string& sql, Result* out = nullptr) {
  Result result(PQexec(c, sql.c_str()), &PQclear);
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return absl::InternalError(
        absl::StrCat("schema migration failed: ", PQerrorMessage(c)));
  }
  if (out != nullptr) *out = std::move(result);
  return absl::OkStatus();
}

absl::Status MigrateLocked(PGconn* c) {
  if (absl::Status s = Exec(c, absl::StrCat("SELECT pg_advisory_xact_lock(",
                                            kPostgresMigrationLockKey, ")"));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Exec(c,
                            "CREATE TABLE IF NOT EXISTS coach_schema ("
                            "version INTEGER NOT NULL)");
      !s.ok()) {
    return s;
  }
  Result rows(nullptr, &PQclear);
  if (absl::Status s = Exec(c, "SELECT version FROM coach_schema", &rows);
      !s.ok()) {
    return s;
  }
  int version = 0;
  if (PQntuples(rows.get()) == 0) {
    if (absl::Status s = Exec(c, "INSERT INTO coach_schema VALUES (0)");
        !s.ok()) {
      return s;
    }
  } else if (!absl::SimpleAtoi(PQgetvalue(rows.get(), 0, 0), &version)) {
    return absl::InternalError("schema migration failed: bad version");
  }
  const int latest = LatestPostgresSchemaVersion();
  if (version > latest) {
    return absl::FailedPreconditionError(
        absl::StrCat("database schema version ", version,
                     " is newer than this build's ", latest));
  }
  for (; version < latest; ++version) {
    if (absl::Status s = Exec(c, std::string(kMigrations[version])); !s.ok()) {
      return s;
    }
  }
  return Exec(c, absl::StrCat("UPDATE coach_schema SET version = ", latest));
}

}  // namespace

int LatestPostgresSchemaVersion() {
  return static_cast<int>(kMigrations.size());
}

absl::Status MigratePostgresSchema(PGconn* connection) {
  if (absl::Status s = Exec(connection, "BEGIN"); !s.ok()) return s;
  absl::Status migrated = MigrateLocked(connection);
  // The lock goes with the transaction, whichever way it ends.
  absl::Status ended = Exec(connection, migrated.ok() ? "COMMIT" : "ROLLBACK");
  return migrated.ok() ? ended : migrated;
}

}  // namespace coach
